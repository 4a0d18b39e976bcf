"""INT8 quantization of exported files (convnext_dense/deploy/quantize.py): the QDQ graph runs, stays near fp32.

The bounds are twice the largest error measured on these models (random weights, shapes scenes): relative
feature error 0.036-0.060 for the atto backbone over three seeds; for the slim UperNet, relative logits error
0.03-0.06 and 98-100 % of pixels labelled as fp32 labels them.
"""
import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')

from convnext_dense.datasets.shapes import make_scene  # noqa: E402
from convnext_dense.deploy.export import export_backbone, export_model  # noqa: E402
from convnext_dense.deploy.predictor import OnnxPredictor  # noqa: E402
from convnext_dense.deploy.quantize import backbone_inputs, quantize_onnx  # noqa: E402
from convnext_dense.errors import DeployError  # noqa: E402
from convnext_dense.models import ConvNeXt  # noqa: E402
from test_deploy_export import SEG_CLASSES, build_segmentor  # noqa: E402

PREPROCESS = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_bgr=False)
MAX_FEATURE_ERROR = 0.12
MAX_LOGITS_ERROR = 0.12
MIN_LABEL_AGREEMENT = 0.95


def scenes(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [make_scene(rng, (64, 64), max_objects=3, radius_range=(6.0, 14.0))[0] for _ in range(count)]


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    from PIL import Image
    folder = tmp_path_factory.mktemp('calib')
    for i, image in enumerate(scenes(8, seed=0)):
        Image.fromarray(image).save(folder / f'{i}.png')
    return folder


@pytest.fixture(scope='module')
def backbone_files(tmp_path_factory, calib_dir):
    folder = tmp_path_factory.mktemp('backbone')
    torch.manual_seed(0)
    backbone = ConvNeXt(arch='atto', layer_scale_init_value=1.0).eval()
    fp32 = export_backbone(backbone, folder / 'backbone.onnx', shape=(64, 64), preprocess=PREPROCESS)
    return fp32, quantize_onnx(fp32, folder / 'backbone_int8.onnx', calib_dir)


def relative_error(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.linalg.norm(other - reference) / np.linalg.norm(reference))


def test_backbone_int8_quantizes_conv_and_matmul_and_stays_near_fp32(backbone_files):
    fp32, int8 = backbone_files
    graph = onnx.load(str(int8)).graph
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    quantized = {node.op_type for node in graph.node
                 if node.op_type in ('Conv', 'MatMul') and produced_by.get(node.input[0]) == 'DequantizeLinear'
                 and produced_by.get(node.input[1]) == 'DequantizeLinear'}
    assert quantized == {'Conv', 'MatMul'}
    image = backbone_inputs(scenes(1, seed=1), dict(input_shape=[64, 64], preprocess=PREPROCESS), 1)
    expected = ort.InferenceSession(str(fp32)).run(None, image)
    got = ort.InferenceSession(str(int8)).run(None, image)
    errors = [relative_error(e, g) for e, g in zip(expected, got)]
    assert len(errors) == 4 and max(errors) < MAX_FEATURE_ERROR, errors
    assert 0 < min(errors)  # the file really computes in INT8


def test_int8_file_keeps_the_metadata_and_says_how_it_was_calibrated(backbone_files):
    fp32, int8 = backbone_files
    before = {p.key: json.loads(p.value) for p in onnx.load(str(fp32)).metadata_props}
    after = {p.key: json.loads(p.value) for p in onnx.load(str(int8)).metadata_props}
    assert {key: after[key] for key in before} == before
    assert after['quantization']['images'] == 8 and after['quantization']['method'] == 'minmax'
    assert after['quantization']['reduce_range'] is True and after['quantization']['quantized_nodes'] > 0


def test_int8_segmentor_runs_through_the_predictor_near_fp32(tmp_path, calib_dir):
    fp32 = export_model(build_segmentor(), tmp_path / 'seg.onnx', shape=(64, 64),
                        dataset_meta=dict(classes=SEG_CLASSES, palette=[(0, 0, 0)] * len(SEG_CLASSES)))
    int8 = quantize_onnx(fp32, tmp_path / 'seg_int8.onnx', calib_dir, max_images=4)
    float_predictor, int8_predictor = OnnxPredictor(fp32), OnnxPredictor(int8)
    for image in scenes(3, seed=2):
        expected, got = float_predictor(image), int8_predictor(image)
        agreement = (expected.pred_sem_seg.data == got.pred_sem_seg.data).float().mean().item()
        assert agreement >= MIN_LABEL_AGREEMENT
        assert relative_error(expected.seg_logits.data.numpy(), got.seg_logits.data.numpy()) < MAX_LOGITS_ERROR


def test_bad_calibration_folders_and_files_are_refused_in_one_line(tmp_path, backbone_files, calib_dir):
    fp32, int8 = backbone_files
    out = tmp_path / 'out.onnx'
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'plain.onnx').write_bytes(b'not a model')
    cases = [((fp32, out, tmp_path / 'missing'), 'no such folder'),
             ((fp32, out, tmp_path / 'empty'), 'no images'),
             ((tmp_path / 'nothing.onnx', out, calib_dir), 'no such file'),
             ((tmp_path / 'plain.onnx', out, calib_dir), 'not an ONNX file'),
             ((int8, out, calib_dir), 'already quantized')]
    for arguments, message in cases:
        with pytest.raises(DeployError, match=message) as error:
            quantize_onnx(*arguments)
        assert '\n' not in str(error.value)
    stripped = onnx.load(str(fp32))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / 'foreign.onnx'))
    with pytest.raises(DeployError, match='not written by convnext-dense export'):
        quantize_onnx(tmp_path / 'foreign.onnx', out, calib_dir)
    assert not out.exists() and not list(tmp_path.glob('.quantize-*'))


def test_int8_detector_runs_through_the_predictor_with_float_post_processing(tmp_path, calib_dir):
    from test_deploy_export import build_detector
    fp32 = export_model(build_detector(), tmp_path / 'det.onnx', shape=(64, 96),
                        dataset_meta=dict(classes=('circle', 'square', 'triangle', 'star', 'ring')))
    int8 = quantize_onnx(fp32, tmp_path / 'det_int8.onnx', calib_dir, max_images=2)
    graph = onnx.load(str(int8)).graph
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    post = [node for node in graph.node if node.op_type in ('NonMaxSuppression', 'TopK')]
    assert post and all(produced_by.get(name) != 'DequantizeLinear' for node in post for name in node.input)
    assert any(node.op_type == 'Conv' and produced_by.get(node.input[1]) == 'DequantizeLinear' for node in graph.node)
    image = scenes(1, seed=3)[0]
    expected, got = OnnxPredictor(fp32)(image), OnnxPredictor(int8)(image)
    assert len(got.pred_instances) > 0 and got.pred_instances.masks.shape[1:] == image.shape[:2]
    assert len(got.pred_instances) == len(expected.pred_instances)


def test_matmul_only_leaves_the_convolutions_float_and_bad_settings_are_refused(tmp_path, backbone_files, calib_dir):
    fp32, _ = backbone_files
    int8 = quantize_onnx(fp32, tmp_path / 'matmul.onnx', calib_dir, max_images=2, op_types=('MatMul',))
    graph = onnx.load(str(int8)).graph
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    reads_int8 = {node.op_type for node in graph.node
                  if node.op_type in ('Conv', 'MatMul') and produced_by.get(node.input[1]) == 'DequantizeLinear'}
    assert 'MatMul' in reads_int8 and 'Conv' not in reads_int8
    props = {p.key: json.loads(p.value) for p in onnx.load(str(int8)).metadata_props}
    assert props['quantization']['operators'] == ['MatMul']
    for settings in (dict(weight_type='int4'), dict(op_types=('Relu',)), dict(op_types=())):
        with pytest.raises(DeployError, match='choose the weights among int8, uint8'):
            quantize_onnx(fp32, tmp_path / 'bad.onnx', calib_dir, **settings)
    assert not (tmp_path / 'bad.onnx').exists()
