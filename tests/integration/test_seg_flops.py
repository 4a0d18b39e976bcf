"""Segmentor FLOPs / params in the paper's convention (counting T only: bigger models take minutes on a CPU)."""
import json
from pathlib import Path

import pytest
from mmengine.config import Config

import mmseg  # noqa: F401  (a missing mmseg must fail the suite, not skip it)

from convnext_dense.analysis.seg_flops import default_shape, segmentor_complexity
from convnext_dense.cli import flops as get_flops

REPO_ROOT = Path(__file__).resolve().parents[2]
SEG = REPO_ROOT / 'configs' / 'seg'


@pytest.fixture(scope='module')
def tiny_counts():
    return segmentor_complexity(Config.fromfile(str(SEG / 'upernet_convnext_t_512_160k.py')))


def test_upernet_t_matches_paper_within_one_percent(tiny_counts):
    assert tiny_counts['shape'] == (512, 2048)
    assert tiny_counts['paper_params'] == 60e6 and tiny_counts['paper_flops'] == 939e9
    assert abs(tiny_counts['flops'] - 939e9) / 939e9 < 0.01, tiny_counts['flops']
    assert abs(tiny_counts['params'] - 60e6) / 60e6 < 0.01, tiny_counts['params']


def test_backbone_is_the_expected_part(tiny_counts):
    # ConvNeXt-T: 28.6M params with its classifier; without it (768*1000 + 1000 + final norm) about 27.8M.
    assert 27.5e6 < tiny_counts['backbone_params'] < 28.1e6
    # 4.5 GFLOPs at 224x224 scale with the pixel count (1-2% off for the per-stage output norms and no head).
    expected = 4.47e9 * 512 * 2048 / 224 ** 2
    assert abs(tiny_counts['backbone_flops'] - expected) / expected < 0.03
    assert tiny_counts['backbone_flops'] < tiny_counts['flops']


def test_default_shapes_follow_the_crop():
    assert default_shape(Config.fromfile(str(SEG / 'upernet_convnext_b_512_160k.py'))) == (512, 2048)
    assert default_shape(Config.fromfile(str(SEG / 'upernet_convnext_xl_in22k_640_160k.py'))) == (640, 2560)


def test_cli_json_for_a_non_paper_shape(capsys):
    # A small shape keeps this fast; the FLOPs of convolutions scale with the pixel count.
    assert get_flops.main([str(SEG / 'upernet_convnext_t_512_160k.py'), '--shape', '128', '256', '--json']) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result['shape'] == [128, 256]
    assert result['paper_flops'] == 939e9  # still the paper's config, even at another shape
    # 1/32 of the pixels; only the PPM's pooled 1x1 convs (a few MFLOPs) do not scale with them.
    assert abs(result['flops'] - 939e9 / 32) / (939e9 / 32) < 0.01


def test_unknown_config_has_no_paper_numbers(tmp_path):
    cfg_file = tmp_path / 'my_upernet.py'
    cfg_file.write_text(f"_base_ = ['{SEG / 'upernet_convnext_t_512_160k.py'}']\n")
    result = segmentor_complexity(Config.fromfile(str(cfg_file)), (64, 64))
    assert result['paper_params'] is None and result['paper_flops'] is None
    assert result['shape'] == (64, 64) and result['flops'] > 0
