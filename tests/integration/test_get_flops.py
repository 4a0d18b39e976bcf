"""Detection params and FLOPs in the paper's convention (the segmentors' are in test_seg_flops.py).

Only the ConvNeXt-T detectors are counted here (a CPU forward at 1280x800 each); the larger ones are
checked with the CLI, see convnext_dense/analysis/det_flops.py.
"""
import json
from pathlib import Path

import pytest
from mmengine.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DET = REPO_ROOT / 'configs' / 'det'


@pytest.mark.parametrize('stem, params, flops', [
    ('mask_rcnn_convnext_t_3x', 48e6, 262e9),
    ('cascade_convnext_t_3x', 86e6, 741e9),
])
def test_tiny_detectors_match_paper(stem, params, flops):
    from convnext_dense.analysis.det_flops import detector_complexity
    result = detector_complexity(Config.fromfile(str(DET / f'{stem}.py')))
    assert (result['paper_params'], result['paper_flops']) == (params, flops)
    assert result['params'] == pytest.approx(params, rel=0.01)
    assert result['flops'] == pytest.approx(flops, rel=0.01)
    assert result['shape'] == (800, 1280)
    # Backbone at 1280x800: the paper's 4.5G at 224x224 scaled by the pixel count, less the classifier.
    assert result['backbone_flops'] == pytest.approx(4.47e9 * 1280 * 800 / 224 ** 2, rel=0.02)
    assert 27e6 < result['backbone_params'] < 28.5e6


def test_cli_json_prints_plain_numbers(capsys):
    from convnext_dense.cli import flops as get_flops
    assert get_flops.main([str(DET / 'mask_rcnn_convnext_t_3x.py'), '--shape', '320', '512', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['shape'] == [320, 512]
    assert (result['paper_params'], result['paper_flops']) == (48e6, None)  # the paper's FLOPs are at 800x1280
    assert all(isinstance(result[key], (int, float)) for key in ('params', 'flops', 'backbone_flops'))
    # Heads see the same 1000 / 100 proposals at any size, so only the dense part shrinks with the image.
    assert 0 < result['backbone_flops'] < result['flops'] < 262e9
