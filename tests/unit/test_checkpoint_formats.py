"""Checkpoint files: safetensors (by name or by header) and torch pickles read the same, through init_cfg too;
bad files and a missing package give one line naming the file or the command."""
import sys

import pytest
import torch

from convnext_dense.checkpoint import formats, from_ours
from convnext_dense.errors import CheckpointError, MissingDependencyError
from convnext_dense.models import ConvNeXt

SMALL_ARCH = dict(depths=(1, 1, 2, 1), channels=(8, 12, 16, 20))


@pytest.fixture
def timm_weights():
    torch.manual_seed(3)
    ours = ConvNeXt(SMALL_ARCH).state_dict()
    return {k: torch.randn_like(v) for k, v in from_ours(ours, 'timm').items()}


@pytest.mark.parametrize('name', ['model.safetensors', 'renamed.pth'])
def test_safetensors_file_is_read_by_name_or_by_header(tmp_path, timm_weights, name):
    path = tmp_path / name
    formats.write_safetensors(timm_weights, str(path), metadata={'format': 'pt', 'epoch': 3})
    assert formats.is_safetensors(str(path))
    loaded = formats.read_weights_file(str(path))
    assert loaded.keys() == timm_weights.keys()
    assert all(torch.equal(loaded[k], v) for k, v in timm_weights.items())
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as f:
        assert f.metadata() == {'format': 'pt', 'epoch': '3'}
    assert [p.name for p in tmp_path.iterdir()] == [name]  # written atomically: no temporary left


def test_torch_pickles_are_not_taken_for_safetensors(tmp_path, timm_weights):
    path = tmp_path / 'pytorch_model.bin'
    torch.save(timm_weights, path)
    assert not formats.is_safetensors(str(path))
    assert formats.read_weights_file(str(path)).keys() == timm_weights.keys()
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert not formats.is_safetensors(str(empty))


def test_init_cfg_loads_a_safetensors_file_value_exact(tmp_path, timm_weights):
    path = tmp_path / 'model.safetensors'
    formats.write_safetensors(timm_weights, str(path))
    model = ConvNeXt(SMALL_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.stages[2][1].pwconv2.weight, timm_weights['stages.2.blocks.1.mlp.fc2.weight'])
    assert torch.equal(model.downsample_layers[0][0].weight, timm_weights['stem.0.weight'])


def test_shared_tensors_are_written_once_per_name(tmp_path):
    """The official DINOv3 files hold ``norm`` and ``norms.3``: one module under two names."""
    shared = torch.randn(8)
    path = tmp_path / 'shared.safetensors'
    formats.write_safetensors({'norm.weight': shared, 'norms.3.weight': shared}, str(path))
    loaded = formats.read_safetensors(str(path))
    assert torch.equal(loaded['norm.weight'], loaded['norms.3.weight'])


def test_truncated_safetensors_file_names_the_file_in_one_line(tmp_path, timm_weights):
    path = tmp_path / 'model.safetensors'
    formats.write_safetensors(timm_weights, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as error:
        formats.read_weights_file(str(path))
    assert str(path) in str(error.value) and '\n' not in str(error.value)


def test_missing_safetensors_package_names_the_pip_command(tmp_path, monkeypatch, timm_weights):
    path = tmp_path / 'model.safetensors'
    formats.write_safetensors(timm_weights, str(path))
    monkeypatch.setitem(sys.modules, 'safetensors', None)  # import safetensors raises ImportError
    with pytest.raises(MissingDependencyError) as error:
        formats.read_weights_file(str(path))
    assert 'pip install safetensors' in str(error.value) and "convnext_dense[hub]" in str(error.value)


def test_map_location_names_the_device_safetensors_reads_to():
    assert formats._map_device('cpu') == 'cpu'
    assert formats._map_device(torch.device('cpu')) == 'cpu'
    assert formats._map_device(lambda storage, location: storage) == 'cpu'
