"""ONNX export (convnext_dense/deploy/): ONNX Runtime's outputs against PyTorch's, fp32 on the CPU.

A 1-block-per-stage ConvNeXt, a slim UperNet and a slim Mask R-CNN keep each export to a few seconds. Shapes
are small and one is not a multiple of 32.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from convnext_dense.deploy.export import export_backbone, export_model, model_task  # noqa: E402
from convnext_dense.deploy.preprocess import AdaptiveAvgPool2dExport  # noqa: E402
from convnext_dense.errors import ConvNeXtDenseError, DeployError  # noqa: E402
from convnext_dense.models import ConvNeXt  # noqa: E402

TINY_ARCH = dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 128))
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
SEG_CLASSES = ('background', 'a', 'b', 'c')
SEG_MODEL = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=MEAN, std=STD, bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255),
    backbone=dict(type='convnext_dense.ConvNeXt', arch=TINY_ARCH, layer_scale_init_value=1.0),
    decode_head=dict(type='UPerHead', in_channels=(16, 32, 64, 128), in_index=(0, 1, 2, 3),
                     pool_scales=(1, 2, 3, 6), channels=16, dropout_ratio=0.1, num_classes=len(SEG_CLASSES),
                     norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type='FCNHead', in_channels=64, in_index=2, channels=8, num_convs=1, concat_input=False,
                        num_classes=len(SEG_CLASSES), norm_cfg=dict(type='BN', requires_grad=True),
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
SIZES = ((64, 96), (72, 100))


def build_segmentor(**test_cfg) -> nn.Module:
    """The slim UperNet with random weights and non-trivial BN statistics, in eval mode."""
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(ConfigDict(dict(SEG_MODEL, test_cfg=dict(SEG_MODEL['test_cfg'], **test_cfg))))
    model.init_weights()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def build_detector(score_thr: float = 0.0) -> nn.Module:
    """The demo Mask R-CNN on a 1-block-per-stage ConvNeXt, random weights, every detection kept."""
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    import convnext_dense
    from convnext_dense.config import load_config
    cfg = load_config('demo/mask_rcnn_convnext_shapes')
    model_cfg = Config(dict(model=cfg.model.to_dict())).model
    model_cfg.backbone.arch = TINY_ARCH
    model_cfg.neck.in_channels = list(TINY_ARCH['channels'])
    model_cfg.test_cfg.rcnn.score_thr = score_thr
    assert convnext_dense  # registered
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(model_cfg.to_dict()))
    model.init_weights()
    return model.eval()


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def batch_of(images, shape=None):
    """The graphs' inputs: images top-left in one array (of ``shape``, else the largest), their sizes."""
    height, width = shape or (max(i.shape[0] for i in images), max(i.shape[1] for i in images))
    batch = np.zeros((len(images), height, width, 3), dtype=np.uint8)
    for k, image in enumerate(images):
        batch[k, :image.shape[0], :image.shape[1]] = image
    return dict(image=batch, image_size=np.array([i.shape[:2] for i in images], dtype=np.int64))


def mmseg_logits(model: nn.Module, rgb: np.ndarray) -> torch.Tensor:
    """The segmentor's own test path (data preprocessor, inference, postprocess) on an RGB image."""
    from mmseg.structures import SegDataSample
    bgr = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1])).permute(2, 0, 1)
    shape = rgb.shape[:2]
    sample = SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[bgr], data_samples=[sample]))[0]
    return result.seg_logits.data


def test_backbone_matches_pytorch_at_two_sizes(tmp_path):
    backbone = ConvNeXt(arch=TINY_ARCH, layer_scale_init_value=1.0)
    backbone.init_weights()
    backbone.eval()
    path = export_backbone(backbone, tmp_path / 'backbone.onnx', shape=(64, 64), dynamic=True)
    runtime = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [o.name for o in runtime.get_outputs()] == ['out0', 'out1', 'out2', 'out3']
    for batch, (height, width) in zip((2, 1), SIZES):
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = backbone(x)
        got = runtime.run(None, {'input': x.numpy()})
        for stage, (e, g) in enumerate(zip(expected, got)):
            assert g.shape == tuple(e.shape)
            assert np.abs(g - e.numpy()).max() < 1e-4, f'stage {stage} at {height}x{width}'


def test_segmentor_matches_mmseg_at_two_sizes(tmp_path):
    model = build_segmentor()
    meta = dict(classes=SEG_CLASSES, palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)])
    path = export_model(model, tmp_path / 'seg.onnx', shape=(64, 64), dynamic=True, dataset_meta=meta)
    runtime = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for seed, (height, width) in enumerate(SIZES):
        image = random_image(height, width, seed)
        expected = mmseg_logits(model, image)
        logits, labels = runtime.run(None, batch_of([image]))
        assert logits.shape == (1, len(SEG_CLASSES), height, width)
        assert np.abs(logits[0] - expected.numpy()).max() < 1e-4
        top2 = np.sort(logits[0], axis=0)[-2:]
        decided = top2[1] - top2[0] > 1e-3  # pixels where 1e-4 of noise cannot flip the argmax
        assert (labels[0] == expected.argmax(0).numpy())[decided].all()


def test_static_file_computes_a_smaller_image_as_the_dynamic_one(tmp_path):
    """A static file takes an image smaller than its shape and keeps only its padded extent: same logits."""
    model = build_segmentor()
    static = ort.InferenceSession(str(export_model(model, tmp_path / 'static.onnx', shape=(96, 128))))
    dynamic = ort.InferenceSession(str(export_model(model, tmp_path / 'dynamic.onnx', shape=(64, 64),
                                                    dynamic=True)))
    image = random_image(50, 70, seed=4)
    got, _ = static.run(None, batch_of([image], shape=(96, 128)))
    want, _ = dynamic.run(None, batch_of([image]))
    assert got.shape == want.shape == (1, len(SEG_CLASSES), 50, 70)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(want[0], mmseg_logits(model, image).numpy(), atol=1e-4)


def test_sliding_window_needs_a_static_shape_and_matches_mmseg(tmp_path):
    model = build_segmentor(mode='slide', crop_size=(64, 64), stride=(40, 40))
    with pytest.raises(DeployError, match="mode='slide'.*static --shape"):
        export_model(model, tmp_path / 'slide.onnx', shape=(64, 96), dynamic=True)
    runtime = ort.InferenceSession(str(export_model(model, tmp_path / 'slide.onnx', shape=(64, 96))))
    image = random_image(64, 96, seed=2)
    logits, _ = runtime.run(None, batch_of([image]))
    np.testing.assert_allclose(logits[0], mmseg_logits(model, image).numpy(), atol=1e-4)


def test_batched_segmentor_equals_single_calls(tmp_path):
    model = build_segmentor()
    runtime = ort.InferenceSession(str(export_model(model, tmp_path / 'seg.onnx', shape=(64, 96), dynamic=True)))
    images = [random_image(64, 96, seed) for seed in range(3)]
    batched, labels = runtime.run(None, batch_of(images))
    assert batched.shape[0] == labels.shape[0] == 3
    for k, image in enumerate(images):
        single, _ = runtime.run(None, batch_of([image]))
        np.testing.assert_allclose(batched[k], single[0], atol=1e-5)


def test_batched_detector_equals_single_calls(tmp_path):
    detector = build_detector()
    batched = ort.InferenceSession(str(export_model(detector, tmp_path / 'b2.onnx', shape=(64, 96), batch_size=2)))
    single = ort.InferenceSession(str(export_model(detector, tmp_path / 'b1.onnx', shape=(64, 96))))
    names = [o.name for o in batched.get_outputs()]
    assert names == ['boxes', 'scores', 'labels', 'mask_probs', 'image_index']
    images = [random_image(64, 96, seed) for seed in (5, 6)]
    outputs = dict(zip(names, batched.run(None, batch_of(images))))
    for k, image in enumerate(images):
        alone = dict(zip(names, single.run(None, batch_of([image]))))
        assert len(alone['boxes']) > 0 and (alone['image_index'] == 0).all()
        mine = outputs['image_index'] == k
        for name in ('boxes', 'scores', 'mask_probs'):
            np.testing.assert_allclose(outputs[name][mine], alone[name], atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(outputs['labels'][mine], alone['labels'])


def test_metadata_holds_task_classes_palette_and_preprocessing(tmp_path):
    import onnx
    model = build_segmentor()
    meta = dict(classes=SEG_CLASSES, palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)])
    path = export_model(model, tmp_path / 'seg.onnx', shape=(64, 64), dataset_meta=meta,
                        resize=dict(scale=[96, 64], keep_ratio=True), batch_size=2)
    props = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert props['task'] == 'seg'
    assert props['classes'] == list(SEG_CLASSES)
    assert props['palette'][1] == [255, 0, 0]
    assert props['input_shape'] == [64, 64] and props['batch_size'] == 2
    assert props['preprocess']['mean'] == pytest.approx(MEAN)
    assert props['preprocess']['to_bgr'] is False  # trained with bgr_to_rgb: fed RGB as it is
    assert props['preprocess']['resize'] == dict(scale=[96, 64], keep_ratio=True)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert all(node.domain in ('', 'ai.onnx') for node in onnx.load(str(path)).graph.node), ops


@pytest.mark.parametrize('size', [(7, 7), (12, 9), (2, 3), (16, 16)])
@pytest.mark.parametrize('bins', [1, 2, 3, 6])
def test_adaptive_pool_matches_torch(size, bins):
    x = torch.randn(2, 4, *size)
    expected = nn.AdaptiveAvgPool2d(bins)(x)
    assert torch.allclose(AdaptiveAvgPool2dExport(bins)(x), expected, atol=1e-6)


def test_low_opset_is_refused_with_the_fix(tmp_path):
    backbone = ConvNeXt(arch=TINY_ARCH).eval()
    with pytest.raises(DeployError, match=r'--opset 13: .*opset >= 16.*pass --opset 17'):
        export_backbone(backbone, tmp_path / 'b.onnx', opset=13)
    assert not (tmp_path / 'b.onnx').exists()


def test_a_model_that_cannot_be_exported_is_named():
    with pytest.raises(ConvNeXtDenseError, match=r'cannot export Linear: .*--what backbone'):
        model_task(nn.Linear(2, 2))
