"""The foundation: mmcv's ops (compiled, or ours on torchvision) and registry scopes (the light import and the env report are checked in
a fresh process in tests/integration/test_fresh_process.py)."""
import pytest
import torch
from mmengine.registry import DefaultScope

from convnext_dense.models import ConvNeXt


def test_mmcv_compiled_ops_run():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    pooled = RoIAlign(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(features, rois)
    assert pooled.shape == (1, 1, 2, 2)
    # The 4x4 ramp averaged over each 2x2 quadrant.
    assert torch.allclose(pooled.flatten(), torch.tensor([2.5, 4.5, 10.5, 12.5]))


def test_roi_features_of_our_backbone_match_torchvision():
    # mmcv 2.1.0's compiled RoIAlign indexes its input as contiguous NCHW: given channels_last-strided maps it
    # returns wrong features without an error (checked below, so the trap stays visible); ours on torchvision
    # reads them right. Our backbone hands NCHW callers contiguous maps, and mmdet's RoI extractor then matches
    # torchvision's roi_align with either.
    import torchvision
    from mmcv.ops import RoIAlign

    from convnext_dense.mmcv_ops import COMPILED, ext_provider
    torch.manual_seed(0)
    model = ConvNeXt(dict(depths=(1, 1, 1, 1), channels=(8, 16, 32, 64))).eval()
    rois = torch.tensor([[0.0, 4.0, 6.0, 40.0, 30.0], [1.0, 20.0, 2.0, 60.0, 60.0]])
    roi_align = RoIAlign(output_size=7, spatial_scale=1 / 4, sampling_ratio=0, aligned=True)
    with torch.no_grad():
        stride4 = model(torch.randn(2, 3, 64, 64))[0]
        expected = torchvision.ops.roi_align(stride4, rois, 7, 1 / 4, 0, aligned=True)
        torch.testing.assert_close(roi_align(stride4, rois), expected, atol=1e-5, rtol=1e-5)
        misread = roi_align(stride4.contiguous(memory_format=torch.channels_last), rois)
    if ext_provider()[0] == COMPILED:
        assert (misread - expected).abs().max() > 0.1, 'mmcv RoIAlign handles channels_last now: update the comments'
    else:
        torch.testing.assert_close(misread, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_resolves_from_downstream_default_scope(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        backbone = MODELS.build(dict(type='convnext_dense.ConvNeXt', arch='atto', out_indices=(1, 3)))
    assert isinstance(backbone, ConvNeXt)
    assert backbone.out_channels == (80, 320)


def test_optimizer_constructor_resolves_from_mmdet_scope():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from convnext_dense.engine import LearningRateDecayOptimizerConstructor
    with DefaultScope.overwrite_default_scope('mmdet'):
        found = OPTIM_WRAPPER_CONSTRUCTORS.get('convnext_dense.LearningRateDecayOptimizerConstructor')
    assert found is LearningRateDecayOptimizerConstructor
