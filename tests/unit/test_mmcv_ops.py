"""convnext_dense's ``mmcv._ext`` ops against independent references, and against mmcv's compiled ops where a
compiled mmcv is installed.

The references are written here from the definitions, not from any kernel: RoIAlign as the average of bilinear
samples on a regular grid in each bin (Detectron2's pixel model), greedy NMS and soft-NMS (Bodla et al.) as
textbook loops in float64.
"""
import ast
import importlib
import math
from importlib.machinery import PathFinder
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from convnext_dense.errors import ConvNeXtDenseError
from convnext_dense.mmcv_ops import ext
from convnext_dense.mmcv_ops.unavailable import UNAVAILABLE, MmcvOpUnavailableError

IMAGE = (96, 128)  # H, W of the image the boxes live in
METHODS = {'naive': 0, 'linear': 1, 'gaussian': 2}


# ---------------------------------------------------------------------------------------------- references
def bilinear(feature: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """C x len(y) values of ``feature`` (C x H x W) at pixel-model points: zero beyond one pixel outside the
    map, the border value between there and the border."""
    height, width = feature.shape[-2:]
    outside = (y < -1) | (y > height) | (x < -1) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.floor().long(), x.floor().long()
    y = torch.where(y0 >= height - 1, torch.full_like(y, height - 1), y)
    x = torch.where(x0 >= width - 1, torch.full_like(x, width - 1), x)
    y0, x0 = y0.clamp(max=height - 1), x0.clamp(max=width - 1)
    y1, x1 = (y0 + 1).clamp(max=height - 1), (x0 + 1).clamp(max=width - 1)
    ly, lx = y - y0, x - x0
    value = (feature[:, y0, x0] * (1 - ly) * (1 - lx) + feature[:, y0, x1] * (1 - ly) * lx
             + feature[:, y1, x0] * ly * (1 - lx) + feature[:, y1, x1] * ly * lx)
    return torch.where(outside, torch.zeros_like(value), value)


def reference_roi_align(features, rois, size, scale, sampling_ratio, aligned):
    """RoIAlign as the mean of a grid of bilinear samples per bin, one RoI at a time, differentiable."""
    outputs = []
    for roi in rois:
        x1, y1, x2, y2 = (roi[1:] * scale - (0.5 if aligned else 0.0)).tolist()
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        grid_h = sampling_ratio or math.ceil(roi_h / size)
        grid_w = sampling_ratio or math.ceil(roi_w / size)
        if grid_h * grid_w == 0:
            outputs.append(features.new_zeros(features.shape[1], size, size))
            continue
        ys = y1 + (torch.arange(size * grid_h, dtype=torch.float64) + 0.5) * roi_h / (size * grid_h)
        xs = x1 + (torch.arange(size * grid_w, dtype=torch.float64) + 0.5) * roi_w / (size * grid_w)
        y, x = torch.meshgrid(ys, xs, indexing='ij')
        samples = bilinear(features[int(roi[0])], y.flatten(), x.flatten())
        samples = samples.reshape(-1, size, grid_h, size, grid_w)
        outputs.append(samples.mean(dim=(2, 4)))
    return torch.stack(outputs)


def iou(a, b, offset=0):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + offset)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + offset)
    area = lambda box: (box[2] - box[0] + offset) * (box[3] - box[1] + offset)  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def reference_nms(boxes, scores, threshold, offset=0):
    boxes, scores = boxes.double().tolist(), scores.double().tolist()
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[j], offset) <= threshold for j in keep):
            keep.append(i)
    return keep


def reference_soft_nms(boxes, scores, threshold, sigma, min_score, method):
    """Picks as ``[(index, score)]`` in pick order: take the best, decay the others by their IoU with it,
    drop those below ``min_score``, repeat."""
    boxes = boxes.double().tolist()
    remaining = dict(enumerate(scores.double().tolist()))
    picks = []
    while remaining:
        best = max(remaining, key=remaining.get)
        picks.append((best, remaining.pop(best)))
        for j in list(remaining):
            overlap = iou(boxes[best], boxes[j])
            if method == 'gaussian':
                remaining[j] *= math.exp(-overlap * overlap / sigma)
            elif overlap >= threshold:
                remaining[j] *= 0.0 if method == 'naive' else 1.0 - overlap
            if remaining[j] < min_score:
                del remaining[j]
    return picks


# ---------------------------------------------------------------------------------------------- inputs
def random_boxes(count, generator, margin=24.0):
    """Boxes of 2-60 px anywhere in the image and up to ``margin`` px beyond its border."""
    height, width = IMAGE
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width + 2 * margin, height + 2 * margin])
    corner -= margin
    size = 2 + torch.rand(count, 2, generator=generator) * 58
    return torch.cat((corner, corner + size), dim=1)


def random_rois(count, batch, generator):
    indices = torch.randint(batch, (count, 1), generator=generator).float()
    return torch.cat((indices, random_boxes(count, generator)), dim=1)


def clustered_boxes(count, generator):
    """Boxes jittered around a few objects, so that many overlap (what NMS sees from an RPN)."""
    centres = random_boxes(max(count // 8, 1), generator, margin=0.0)
    boxes = centres[torch.randint(centres.shape[0], (count,), generator=generator)]
    return boxes + torch.randn(count, 4, generator=generator) * 3


def compiled_ext():
    """mmcv's compiled ``_ext``; skips the test where mmcv is installed without it."""
    mmcv = pytest.importorskip('mmcv')
    if PathFinder.find_spec('_ext', mmcv.__path__) is None:
        pytest.skip('no compiled mmcv installed (mmcv-lite)')
    import mmcv._ext as compiled
    assert compiled.__file__ != ext.__file__
    return compiled


def use_our_ext(monkeypatch, op_module: str) -> None:
    """Points ``mmcv.ops.<op_module>`` at our ops, whichever ``_ext`` this mmcv has."""
    monkeypatch.setattr(importlib.import_module(f'mmcv.ops.{op_module}'), 'ext_module', SimpleNamespace(**ext.OPS))


def call_roi_align(module, features, rois, size, scale, sampling_ratio, aligned):
    output = features.new_zeros(rois.shape[0], features.shape[1], size, size)
    empty = features.new_zeros(0)
    module.roi_align_forward(features, rois, output, empty, empty, aligned_height=size, aligned_width=size,
                             spatial_scale=scale, sampling_ratio=sampling_ratio, pool_mode=1, aligned=aligned)
    return output


def call_roi_align_backward(module, grad, rois, shape, scale, sampling_ratio, aligned):
    grad_input = grad.new_zeros(shape)
    empty = grad.new_zeros(0)
    module.roi_align_backward(grad, rois, empty, empty, grad_input, aligned_height=grad.shape[-1],
                              aligned_width=grad.shape[-1], spatial_scale=scale, sampling_ratio=sampling_ratio,
                              pool_mode=1, aligned=aligned)
    return grad_input


# ---------------------------------------------------------------------------------------------- RoIAlign
@pytest.mark.parametrize('scale', (1 / 4, 1 / 8, 1 / 16, 1 / 32))
@pytest.mark.parametrize('sampling_ratio', (0, 2))
@pytest.mark.parametrize('aligned', (True, False))
def test_roi_align_forward_and_gradient_match_the_reference(scale, sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(int(1 / scale) + 7 * sampling_ratio + aligned)
    shape = (2, 3, math.ceil(IMAGE[0] * scale), math.ceil(IMAGE[1] * scale))
    features = torch.randn(shape, generator=generator)
    rois = random_rois(24, 2, generator)
    size = 7 if sampling_ratio else 14

    output = call_roi_align(ext, features, rois, size, scale, sampling_ratio, aligned)
    leaf = features.double().requires_grad_()
    expected = reference_roi_align(leaf, rois.double(), size, scale, sampling_ratio, aligned)
    torch.testing.assert_close(output.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    assert expected.abs().sum() > 0  # the boxes do cover the map

    grad = torch.randn(output.shape, generator=generator)
    grad_input = call_roi_align_backward(ext, grad, rois, shape, scale, sampling_ratio, aligned)
    expected.backward(grad.double())
    torch.testing.assert_close(grad_input.double(), leaf.grad, rtol=1e-5, atol=1e-5)


def test_roi_align_reads_channels_last_maps_by_their_layout():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, 8, 24, 32, generator=generator)
    rois = random_rois(10, 1, generator)
    contiguous = call_roi_align(ext, features, rois, 7, 1 / 4, 0, True)
    channels_last = call_roi_align(ext, features.contiguous(memory_format=torch.channels_last), rois, 7, 1 / 4, 0,
                                   True)
    torch.testing.assert_close(channels_last, contiguous)


def test_roi_align_max_pooling_is_one_line_error():
    features = torch.zeros(1, 1, 8, 8)
    with pytest.raises(MmcvOpUnavailableError) as raised:
        ext.roi_align_forward(features, torch.tensor([[0.0, 0, 0, 4, 4]]), torch.zeros(1, 1, 2, 2),
                              torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), aligned_height=2, aligned_width=2,
                              spatial_scale=1.0, sampling_ratio=0, pool_mode=0, aligned=True)
    message = str(raised.value)
    assert '\n' not in message and "pool_mode='max'" in message and 'MMCV=full make setup' in message


def test_mmcv_roi_align_module_runs_on_our_ext(monkeypatch):
    """mmcv's own RoIAlign module (as mmdet builds it) with our ``_ext``: forward and autograd."""
    from mmcv.ops import RoIAlign
    use_our_ext(monkeypatch, 'roi_align')
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(2, 4, 24, 32, generator=generator, dtype=torch.float64)
    rois = random_rois(12, 2, generator).double()
    output = RoIAlign(7, spatial_scale=1 / 4, sampling_ratio=0)(features, rois)
    torch.testing.assert_close(output, reference_roi_align(features, rois, 7, 1 / 4, 0, True))
    small = features[:1, :1, :6, :8].clone().requires_grad_()  # a 24 x 32 px image at stride 4
    boxes = torch.tensor([[0, 2, 3, 20, 17], [0, -4, -2, 10, 9], [0, 12, 8, 30, 26]], dtype=torch.float64)
    assert RoIAlign(3, 1 / 4, 2)(small, boxes).abs().min() > 0
    assert torch.autograd.gradcheck(lambda f: RoIAlign(3, 1 / 4, 2)(f, boxes), small)


# ---------------------------------------------------------------------------------------------- NMS
@pytest.mark.parametrize('count', (0, 1, 60, 500))
@pytest.mark.parametrize('offset', (0, 1))
def test_nms_matches_the_textbook(count, offset):
    generator = torch.Generator().manual_seed(count + offset)
    boxes, scores = clustered_boxes(count, generator), torch.rand(count, generator=generator)
    keep = ext.nms(boxes, scores, iou_threshold=0.5, offset=offset)
    assert keep.dtype == torch.long
    assert keep.tolist() == reference_nms(boxes, scores, 0.5, offset)
    if count > 1:
        assert 0 < len(keep) < count  # the case suppresses some boxes and keeps some


def test_batched_nms_matches_the_textbook_per_class(monkeypatch):
    from mmcv.ops import batched_nms
    use_our_ext(monkeypatch, 'nms')
    generator = torch.Generator().manual_seed(5)
    boxes, scores = clustered_boxes(300, generator), torch.rand(300, generator=generator)
    labels = torch.randint(3, (300,), generator=generator)
    dets, keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.6))
    expected = []
    for label in range(3):
        index = torch.nonzero(labels == label).flatten()
        expected += index[reference_nms(boxes[index], scores[index], 0.6)].tolist()
    assert sorted(keep.tolist()) == sorted(expected)
    assert dets[:, 4].tolist() == sorted(dets[:, 4].tolist(), reverse=True)


# ---------------------------------------------------------------------------------------------- soft-NMS
@pytest.mark.parametrize('method', sorted(METHODS))
def test_soft_nms_matches_the_textbook(method):
    generator = torch.Generator().manual_seed(METHODS[method])
    boxes, scores = clustered_boxes(200, generator), torch.rand(200, generator=generator)
    dets = boxes.new_empty(200, 5)
    keep = ext.softnms(boxes, scores, dets, iou_threshold=0.3, sigma=0.5, min_score=0.05,
                       method=METHODS[method], offset=0)
    expected = reference_soft_nms(boxes, scores, 0.3, 0.5, 0.05, method)
    assert keep.tolist() == [index for index, _ in expected]
    torch.testing.assert_close(dets[:len(keep), 4].double(), torch.tensor([s for _, s in expected],
                                                                        dtype=torch.float64), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dets[:len(keep), :4], boxes[keep])
    assert len(expected) < 200  # some dropped
    assert any(s < scores[i] for i, s in expected) != (method == 'naive')  # naive drops, the others decay


def test_mmcv_soft_nms_runs_on_our_ext(monkeypatch):
    from mmcv.ops import soft_nms
    use_our_ext(monkeypatch, 'nms')
    generator = torch.Generator().manual_seed(6)
    boxes, scores = clustered_boxes(80, generator), torch.rand(80, generator=generator)
    dets, keep = soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=1e-3, method='gaussian')
    expected = reference_soft_nms(boxes, scores, 0.3, 0.5, 1e-3, 'gaussian')
    assert keep.tolist() == [index for index, _ in expected] and dets.shape == (len(expected), 5)


def test_empty_soft_nms():
    assert ext.softnms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5)).numel() == 0


# ---------------------------------------------------------------------------------------------- every name
def load_ext_names():
    """Every name mmcv's ``mmcv/ops/*.py`` ask ``_ext`` for, read from the installed mmcv's source."""
    mmcv = pytest.importorskip('mmcv')
    names = set()
    for path in (Path(mmcv.__file__).parent / 'ops').glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'load_ext':
                names.update(ast.literal_eval(node.args[1]))
    return names


def test_ext_answers_every_name_mmcv_asks_for():
    names = load_ext_names()
    assert len(names) > 100 and {'roi_align_forward', 'nms', 'softnms', 'deform_conv_forward'} <= names
    assert names <= set(ext.OPS), sorted(names - set(ext.OPS))
    assert not [name for name in ext.OPS if name.startswith('_')]


def test_unavailable_op_is_one_line_naming_op_part_and_fix():
    with pytest.raises(MmcvOpUnavailableError) as raised:
        ext.OPS['modulated_deform_conv_forward'](torch.zeros(1))
    message = str(raised.value)
    assert isinstance(raised.value, ConvNeXtDenseError) and isinstance(raised.value, NotImplementedError)
    assert '\n' not in message
    assert message.startswith('mmcv op modulated_deform_conv_forward (modulated deformable convolutions')
    assert 'MMCV=full make setup' in message
    assert all(used_by for _, used_by in UNAVAILABLE.values())


def test_compiler_queries_answer_without_raising():
    assert 'torchvision' in ext.OPS['get_compiler_version']()
    assert ext.OPS['get_compiling_cuda_version']() == 'not available'


# ---------------------------------------------------------------------------------------------- compiled mmcv
@pytest.mark.parametrize('sampling_ratio', (0, 2))
@pytest.mark.parametrize('aligned', (True, False))
def test_roi_align_equals_compiled_mmcv(sampling_ratio, aligned):
    compiled = compiled_ext()
    generator = torch.Generator().manual_seed(11)
    for scale in (1 / 4, 1 / 32):
        shape = (2, 16, math.ceil(IMAGE[0] * scale), math.ceil(IMAGE[1] * scale))
        features = torch.randn(shape, generator=generator)
        rois = random_rois(64, 2, generator)
        ours = call_roi_align(ext, features, rois, 7, scale, sampling_ratio, aligned)
        theirs = call_roi_align(compiled, features, rois, 7, scale, sampling_ratio, aligned)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        grad = torch.randn(ours.shape, generator=generator)
        torch.testing.assert_close(call_roi_align_backward(ext, grad, rois, shape, scale, sampling_ratio, aligned),
                                   call_roi_align_backward(compiled, grad, rois, shape, scale, sampling_ratio,
                                                           aligned), rtol=0, atol=1e-5)


@pytest.mark.parametrize('offset', (0, 1))
@pytest.mark.parametrize('ties', (False, True))
def test_nms_equals_compiled_mmcv(offset, ties):
    """The same kept indices, also where scores tie (as an RPN's do early in training)."""
    compiled = compiled_ext()
    generator = torch.Generator().manual_seed(12)
    boxes, scores = clustered_boxes(1000, generator), torch.rand(1000, generator=generator)
    if ties:
        scores = (scores * 4).round() / 4
    assert torch.equal(ext.nms(boxes, scores, iou_threshold=0.7, offset=offset),
                       compiled.nms(boxes, scores, iou_threshold=0.7, offset=offset))


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('ties', (False, True))
def test_soft_nms_equals_compiled_mmcv(method, ties):
    """Equal picks, scores and order, also where scores tie (mmcv's swaps decide the order there)."""
    compiled = compiled_ext()
    generator = torch.Generator().manual_seed(13 + METHODS[method])
    boxes, scores = clustered_boxes(300, generator), torch.rand(300, generator=generator)
    if ties:
        scores = (scores * 4).round() / 4
    results = []
    for module in (ext, compiled):
        dets = boxes.new_zeros(300, 5)
        keep = module.softnms(boxes, scores, dets, iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                              method=METHODS[method], offset=0)
        results.append((keep, dets[:len(keep)]))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)
