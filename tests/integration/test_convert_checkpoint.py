"""The convert command: writes our layout (a backbone, optionally prefixed, or a whole model), prints what it
did, refuses bad input."""
import json
import os

import pytest
import torch
from conftest import FIXTURES

from convnext_dense.cli.main import main as cli_main
from convnext_dense.io import safe_torch_load
from convnext_dense.models import ConvNeXt

LAYOUTS = json.loads((FIXTURES / 'convnext_checkpoint_layouts.json').read_text())


def run_convert(argv) -> int:
    """``convnext-dense convert ARGV`` in this process; returns the exit status."""
    return cli_main(['convert', *argv])


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
    assert run_convert([str(src), str(dst), '--arch', 'tiny']) == 0
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
    assert run_convert([str(src), str(dst), '--prefix', 'backbone']) == 0
    state_dict = safe_torch_load(str(dst))['state_dict']
    assert all(key.startswith('backbone.') for key in state_dict)
    assert torch.equal(state_dict['backbone.stages.0.0.gamma'], source['stages.0.blocks.0.gamma'])


def test_wrong_arch_writes_nothing(tmp_path, timm_tiny, capsys):
    src, _ = timm_tiny
    dst = tmp_path / 'small.pth'
    assert run_convert([str(src), str(dst), '--arch', 'base']) == 2
    error = capsys.readouterr().err
    assert f'error: checkpoint {src} (SRC) does not fit --arch base: ' in error
    assert "the checkpoint seems to be arch 'tiny'" in error
    assert 'downsample_layers.0.0.weight checkpoint [96, 3, 4, 4] vs model [128, 3, 4, 4]' in error
    assert not dst.exists()


def test_refuses_to_overwrite_the_source_and_names_a_missing_source(tmp_path, timm_tiny, capsys):
    src, _ = timm_tiny
    before = src.read_bytes()
    assert run_convert([str(src), str(src)]) == 2
    assert 'is the source file' in capsys.readouterr().err
    assert src.read_bytes() == before
    assert run_convert([str(tmp_path / 'nope.pth'), str(tmp_path / 'x.pth')]) == 2
    assert 'nope.pth' in capsys.readouterr().err


@pytest.fixture
def mmpretrain_detector(tmp_path):
    """A whole detector as mmdet 3.x saves one built with mmpretrain's ConvNeXt-T: backbone with output norms,
    an FPN-like neck and a head, ``meta`` with the dataset's classes."""
    generator = torch.Generator().manual_seed(0)
    state_dict = {k: torch.randn(s, generator=generator) for k, s in LAYOUTS['mmpretrain/tiny'].items()
                  if k.startswith('backbone.') and not k.startswith('backbone.norm3.')}
    for i, channels in enumerate((96, 192, 384, 768)):
        state_dict[f'backbone.norm{i}.weight'] = torch.rand(channels, generator=generator)
        state_dict[f'backbone.norm{i}.bias'] = torch.randn(channels, generator=generator)
        state_dict[f'neck.lateral_convs.{i}.conv.weight'] = torch.randn(16, channels, 1, 1, generator=generator)
    state_dict['rpn_head.rpn_cls.weight'] = torch.randn(3, 16, 1, 1, generator=generator)
    path = tmp_path / 'mask_rcnn_mmpretrain.pth'
    torch.save({'meta': {'dataset_meta': {'classes': ('a', 'b')}, 'epoch': 36}, 'state_dict': state_dict,
                'optimizer': {'state': {}, 'param_groups': []}}, path)
    return path, state_dict


def test_whole_model_keeps_neck_heads_and_meta_and_renames_the_backbone(tmp_path, mmpretrain_detector, capsys):
    src, source = mmpretrain_detector
    dst = tmp_path / 'mask_rcnn_ours.pth'
    assert run_convert([str(src), str(dst), '--whole-model', '--arch', 'tiny']) == 0
    printed = capsys.readouterr().out
    assert "backbone backbone.* in mmpretrain names" in printed and "arch 'tiny'" in printed
    assert f'wrote {len(source)} tensors' in printed and ': 186 backbone, 5 others kept' in printed
    assert 'renamed 108 keys' in printed  # 18 blocks x (depthwise_conv, pointwise_conv1, pointwise_conv2) x 2
    assert '  backbone.stages.0.0.depthwise_conv.weight -> backbone.stages.0.0.dwconv.weight' in printed

    written = safe_torch_load(str(dst))
    assert set(written) == {'meta', 'state_dict'}  # the optimizer state is not shipped
    assert written['meta']['dataset_meta'] == {'classes': ('a', 'b')}
    assert written['meta']['converted_from'] == 'mmpretrain'
    state_dict = written['state_dict']
    assert torch.equal(state_dict['backbone.stages.2.8.pwconv2.weight'],
                       source['backbone.stages.2.8.pointwise_conv2.weight'])
    assert torch.equal(state_dict['backbone.norm3.bias'], source['backbone.norm3.bias'])
    assert torch.equal(state_dict['neck.lateral_convs.3.conv.weight'], source['neck.lateral_convs.3.conv.weight'])
    assert not any('depthwise_conv' in k for k in state_dict)
    model = ConvNeXt('tiny', layer_scale_init_value=1.0)
    model.load_state_dict({k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')})


def test_whole_model_without_a_convnext_backbone_is_refused(tmp_path, capsys):
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(4, 3, 7, 7), 'neck.w': torch.zeros(1)}}, src)
    assert run_convert([str(src), str(tmp_path / 'x.pth'), '--whole-model']) == 2
    error = capsys.readouterr().err
    assert "has no ConvNeXt backbone under 'backbone.'" in error and '--backbone-prefix' in error
    assert not (tmp_path / 'x.pth').exists()


def test_backbone_mode_says_when_neck_and_heads_were_dropped(tmp_path, mmpretrain_detector, capsys):
    src, _ = mmpretrain_detector
    assert run_convert([str(src), str(tmp_path / 'backbone.pth'), '--prefix', 'backbone.']) == 0
    printed = capsys.readouterr().out
    assert 'tensors outside the backbone (neck.*' in printed and '--whole-model keeps neck and heads' in printed


def test_converts_to_a_publishers_layout_as_its_files_hold_it(tmp_path, timm_tiny, capsys):
    """``--to torchvision`` writes a bare state dict that torchvision's own convnext_tiny loads; a
    ``.safetensors`` DST is written in that format, meta in its header."""
    import torchvision
    src, source = timm_tiny
    dst = tmp_path / 'convnext_tiny_torchvision.pth'
    assert run_convert([str(src), str(dst), '--to', 'torchvision']) == 0
    printed = capsys.readouterr().out
    assert 'wrote 178 tensors' in printed and 'in the torchvision layout' in printed
    assert 'has no place for them' not in printed  # a timm file has no output norms to leave out
    reference = torchvision.models.convnext_tiny(weights=None)
    missing, unexpected = reference.load_state_dict(safe_torch_load(str(dst)), strict=False)
    assert set(missing) == {k for k in reference.state_dict() if k.startswith('classifier.')} and unexpected == []
    assert torch.equal(reference.features[5][8].layer_scale.flatten(), source['stages.2.blocks.8.gamma'])

    safetensors_dst = tmp_path / 'model.safetensors'
    assert run_convert([str(dst), str(safetensors_dst), '--to', 'transformers', '--arch', 'tiny']) == 0
    from safetensors import safe_open
    with safe_open(str(safetensors_dst), framework='pt') as f:
        assert f.metadata()['converted_from'] == 'torchvision' and f.metadata()['layout'] == 'transformers'
        assert torch.equal(f.get_tensor('encoder.stages.2.layers.8.pwconv1.weight'),
                           source['stages.2.blocks.8.mlp.fc1.weight'])


def test_converts_a_hub_name_from_the_cache_with_the_network_off(tmp_path, timm_tiny):
    """HF_HUB_CACHE and HF_HUB_OFFLINE=1, as a user sets them, in a fresh process: the cached file converts."""
    import hashlib
    import os
    import subprocess
    import sys

    from convnext_dense.checkpoint.formats import write_safetensors
    _, source = timm_tiny
    repo = tmp_path / 'hub' / 'models--timm--convnext_tiny.dinov3_lvd1689m'
    commit = hashlib.sha1(b'dinov3').hexdigest()
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    (repo / 'snapshots' / commit).mkdir(parents=True)
    write_safetensors(source, str(repo / 'snapshots' / commit / 'model.safetensors'))
    dst = tmp_path / 'dinov3_tiny.pth'
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / 'hub'), HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'convnext_dense', 'convert',
                             'hf-hub:timm/convnext_tiny.dinov3_lvd1689m', str(dst), '--arch', 'tiny'],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'hf-hub:timm/convnext_tiny.dinov3_lvd1689m: timm layout' in result.stdout
    written = safe_torch_load(str(dst))
    assert written['meta']['source'] == 'hf-hub:timm/convnext_tiny.dinov3_lvd1689m'
    assert torch.equal(written['state_dict']['stages.3.2.gamma'], source['stages.3.blocks.2.gamma'])

    missing = subprocess.run([sys.executable, '-m', 'convnext_dense', 'convert', 'hf-hub:timm/convnext_base.fb_in1k',
                              str(tmp_path / 'x.pth')], capture_output=True, text=True, timeout=300, env=env)
    assert missing.returncode == 2 and 'HF_HUB_OFFLINE is set' in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
