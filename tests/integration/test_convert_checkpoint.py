"""tools/convert_checkpoint.py: writes our layout (optionally prefixed), prints what it did, refuses bad input."""
import json
import os

import pytest
import torch
from conftest import FIXTURES

import convert_checkpoint
from convnext_dense.io import safe_torch_load
from convnext_dense.models import ConvNeXt

LAYOUTS = json.loads((FIXTURES / 'convnext_checkpoint_layouts.json').read_text())


@pytest.fixture
def timm_tiny(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state_dict = {k: torch.randn(s, generator=generator) for k, s in LAYOUTS['timm/tiny'].items()}
    path = tmp_path / 'timm_tiny.pth'
    torch.save(state_dict, path)
    return path, state_dict


def test_converts_timm_to_our_layout_and_reports(tmp_path, timm_tiny, capsys):
    src, source = timm_tiny
    dst = tmp_path / 'out' / 'ours.pth'
    assert convert_checkpoint.main([str(src), str(dst), '--arch', 'tiny']) == 0
    printed = capsys.readouterr().out
    assert 'timm layout' in printed and "arch 'tiny'" in printed
    assert f'wrote {len(source) - 4} tensors' in printed
    assert 'renamed 178 keys' in printed and '  stem.0.weight -> downsample_layers.0.0.weight' in printed
    assert 'ignored (classifier head / final norm / not backbone): head.norm.{weight,bias}' in printed
    assert 'leftover (unrecognised, not written): none' in printed

    written = safe_torch_load(str(dst))
    assert written['meta']['converted_from'] == 'timm'
    assert torch.equal(written['state_dict']['stages.2.5.pwconv2.weight'], source['stages.2.blocks.5.mlp.fc2.weight'])
    assert [name for name in os.listdir(dst.parent)] == ['ours.pth']  # no temporary file left behind
    model = ConvNeXt('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.downsample_layers[0][0].weight, source['stem.0.weight'])


def test_prefix_makes_an_mmdet_ready_file(tmp_path, timm_tiny):
    src, source = timm_tiny
    dst = tmp_path / 'backbone.pth'
    assert convert_checkpoint.main([str(src), str(dst), '--prefix', 'backbone']) == 0
    state_dict = safe_torch_load(str(dst))['state_dict']
    assert all(key.startswith('backbone.') for key in state_dict)
    assert torch.equal(state_dict['backbone.stages.0.0.gamma'], source['stages.0.blocks.0.gamma'])


def test_wrong_arch_writes_nothing(tmp_path, timm_tiny, capsys):
    src, _ = timm_tiny
    dst = tmp_path / 'small.pth'
    assert convert_checkpoint.main([str(src), str(dst), '--arch', 'base']) == 1
    error = capsys.readouterr().err
    assert "does not fit --arch base: it seems to be arch 'tiny'" in error
    assert 'downsample_layers.0.0.weight [96, 3, 4, 4] vs [128, 3, 4, 4]' in error
    assert not dst.exists()


def test_refuses_to_overwrite_the_source_and_names_a_missing_source(tmp_path, timm_tiny, capsys):
    src, _ = timm_tiny
    before = src.read_bytes()
    assert convert_checkpoint.main([str(src), str(src)]) == 2
    assert 'is the source file' in capsys.readouterr().err
    assert src.read_bytes() == before
    assert convert_checkpoint.main([str(tmp_path / 'nope.pth'), str(tmp_path / 'x.pth')]) == 2
    assert 'nope.pth' in capsys.readouterr().err
