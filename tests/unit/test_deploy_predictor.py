"""The ONNX Runtime predictor (convnext_dense/deploy/predictor.py): same samples as the PyTorch path."""
import numpy as np
import pytest
import torch

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from convnext_dense.deploy.export import export_backbone, export_model  # noqa: E402
from convnext_dense.deploy.predictor import OnnxPredictor, paste_masks  # noqa: E402
from convnext_dense.errors import DeployError  # noqa: E402
from convnext_dense.models import ConvNeXt  # noqa: E402
from test_deploy_export import SEG_CLASSES, TINY_ARCH, build_segmentor, random_image  # noqa: E402

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
RESIZE = dict(scale=[80, 48], keep_ratio=True)


@pytest.fixture(scope='module')
def segmentor():
    return build_segmentor()


@pytest.fixture(scope='module')
def static_file(segmentor, tmp_path_factory):
    """The segmentor exported for images up to 80 x 80 after the test Resize (both orientations), 2 per call."""
    return export_model(segmentor, tmp_path_factory.mktemp('static') / 'seg.onnx', shape=(80, 80),
                        dataset_meta=dict(classes=SEG_CLASSES, palette=PALETTE), resize=RESIZE, batch_size=2)


def mmseg_sample(model, rgb: np.ndarray, resize=None):
    """mmseg's test path on an RGB image: the pipeline's Resize (mmcv), the data preprocessor, predict."""
    from mmcv.transforms import Resize
    from mmseg.structures import SegDataSample
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    resized = Resize(scale=tuple(resize['scale']), keep_ratio=resize['keep_ratio'])(dict(img=bgr))['img'] \
        if resize else bgr
    sample = SegDataSample(metainfo=dict(ori_shape=rgb.shape[:2], img_shape=resized.shape[:2]))
    with torch.no_grad():
        return model.test_step(dict(inputs=[torch.from_numpy(resized).permute(2, 0, 1)], data_samples=[sample]))[0]


def assert_same_segmentation(got, expected):
    assert got.img_shape == expected.img_shape
    assert got.pred_sem_seg.data.shape == expected.pred_sem_seg.data.shape
    assert got.pred_sem_seg.data.dtype == torch.int64
    assert (got.seg_logits.data - expected.seg_logits.data).abs().max() < 1e-4
    top2 = expected.seg_logits.data.topk(2, dim=0).values
    decided = top2[0] - top2[1] > 1e-3  # pixels where 1e-4 of noise cannot flip the argmax
    assert (got.pred_sem_seg.data == expected.pred_sem_seg.data)[decided[None]].all()


def test_seg_predictor_matches_mmseg_with_the_test_resize(tmp_path, segmentor):
    path = export_model(segmentor, tmp_path / 'seg.onnx', shape=(48, 64), dynamic=True,
                        dataset_meta=dict(classes=SEG_CLASSES, palette=PALETTE), resize=RESIZE)
    predictor = OnnxPredictor(path)
    assert predictor.task == 'seg' and predictor.batch_size == 1
    assert predictor.dataset_meta == dict(classes=SEG_CLASSES, palette=PALETTE)
    image = random_image(90, 130, seed=3)  # resized to 48 x 69 by the stored Resize, predicted at 90 x 130
    got, expected = predictor(image), mmseg_sample(segmentor, image, RESIZE)
    assert got.img_shape == (48, 69) and got.pred_sem_seg.data.shape == (1, 90, 130)
    assert_same_segmentation(got, expected)


@pytest.mark.parametrize('height, width', [(90, 130), (120, 120), (130, 90)])
def test_static_file_takes_every_aspect_ratio_the_test_resize_gives(static_file, segmentor, height, width):
    """Landscape, square and portrait photos fit an 80 x 80 file under Resize(scale=(80, 48), keep_ratio)."""
    image = random_image(height, width, seed=height)
    got = OnnxPredictor(static_file).predict([image])[0]
    assert_same_segmentation(got, mmseg_sample(segmentor, image, RESIZE))


def test_a_batch_call_equals_single_calls(static_file):
    predictor = OnnxPredictor(static_file)
    assert predictor.batch_size == 2
    # Three calls: 2 images; 1 and a blank (mmseg runs a test batch unpadded, so sizes are not mixed); 1 again.
    images = [random_image(90, 130, seed) for seed in range(2)] + [random_image(130, 90, 2), random_image(90, 130, 3)]
    assert [len(call) for call in predictor._calls(images)] == [2, 1, 1]
    batched = predictor.predict(images)
    assert len(batched) == 4
    for image, sample in zip(images, batched):
        alone = predictor.predict([image])[0]
        torch.testing.assert_close(sample.seg_logits.data, alone.seg_logits.data, atol=1e-5, rtol=0)
    with pytest.raises(DeployError, match=r'takes batches of 2 images .*pass --batch-size 2, or re-export with '
                                          r'--batch 4'):
        OnnxPredictor(static_file, batch_size=4)


def test_static_file_refuses_a_larger_image_and_says_how_to_fix(tmp_path, segmentor):
    path = export_model(segmentor, tmp_path / 'seg.onnx', shape=(64, 64), dataset_meta=dict(classes=SEG_CLASSES))
    predictor = OnnxPredictor(path)
    assert predictor(random_image(64, 48)).pred_sem_seg.data.shape == (1, 64, 48)
    with pytest.raises(DeployError, match=r'takes images up to 64x64 \(exported with a static shape\), this one is '
                                          r'64x96; re-export with --shape 64 96 or --dynamic-shape'):
        predictor(random_image(64, 96))


def test_bad_inputs_and_files_are_named(tmp_path, segmentor):
    backbone = export_backbone(ConvNeXt(arch=TINY_ARCH).eval(), tmp_path / 'backbone.onnx', shape=(64, 64))
    with pytest.raises(DeployError, match='holds a backbone.*--what model'):
        OnnxPredictor(backbone)
    with pytest.raises(DeployError, match='no such file'):
        OnnxPredictor(tmp_path / 'missing.onnx')
    predictor = OnnxPredictor(export_model(segmentor, tmp_path / 'seg.onnx', shape=(64, 64), dynamic=True))
    with pytest.raises(DeployError, match='uint8'):
        predictor(random_image(64, 64).astype(np.float32))
    with pytest.raises(DeployError, match='H x W x 3'):
        predictor(random_image(64, 64)[..., 0])


def test_paste_masks_equals_mmdet_mask_head():
    """The Python step equals FCNMaskHead's own pasting (rescale to the original image, threshold)."""
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmengine.config import ConfigDict
    head = FCNMaskHead(num_convs=0, in_channels=4, conv_out_channels=4, num_classes=3)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, 28, 28, generator=generator) * 3
    labels = torch.tensor([0, 2, 1, 1, 0])
    boxes = torch.tensor([[3.5, 4.0, 40.2, 30.1], [0.0, 0.0, 63.0, 47.0], [10.0, 12.0, 12.5, 13.0],
                          [20.0, 5.0, 58.0, 44.0], [1.0, 30.0, 30.0, 47.9]])
    meta = dict(scale_factor=(0.8, 0.75), ori_shape=(64, 80))
    expected = head._predict_by_feat_single(logits, boxes.clone(), labels, meta,
                                            ConfigDict(mask_thr_binary=0.5), rescale=True)
    probs = logits.sigmoid()[torch.arange(5), labels]
    got = paste_masks(probs, boxes / torch.tensor([[0.8, 0.75, 0.8, 0.75]]), 64, 80, threshold=0.5)
    assert got.dtype == torch.bool and got.shape == (5, 64, 80)
    assert torch.equal(got, expected)
    assert paste_masks(probs[:0], boxes[:0], 64, 80).shape == (0, 64, 80)  # an image without detections
