"""``hf-hub:ORG/NAME[@REVISION]`` checkpoints: resolved through huggingface_hub's cache with the network off,
and one line for a missing package, a gated or missing repository and an uncached file offline."""
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
from conftest import FIXTURES

from convnext_dense.checkpoint import hub
from convnext_dense.checkpoint.formats import write_safetensors
from convnext_dense.errors import (CheckpointAccessError, CheckpointNotFoundError, ConfigError,
                                   MissingDependencyError)
from convnext_dense.models import ConvNeXt, load_pretrained

LAYOUTS = json.loads((FIXTURES / 'convnext_checkpoint_layouts.json').read_text())
DINOV3_TINY = 'hf-hub:timm/convnext_tiny.dinov3_lvd1689m'


def prefill_hub_cache(cache: Path, repo_id: str, files: Dict[str, bytes], ref: str = 'main') -> str:
    """Writes files into a Hugging Face cache folder as huggingface_hub lays it out after a download:
    ``models--ORG--NAME/{blobs/<sha256>, refs/<ref> (the commit), snapshots/<commit>/<file> -> blob}``.

    Returns:
        The commit hash of the snapshot.
    """
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    commit = hashlib.sha1(' '.join([repo_id, *sorted(files)]).encode()).hexdigest()
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / ref).write_text(commit)
    for name, data in files.items():
        blob = repo / 'blobs' / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / 'snapshots' / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path('..') / '..' / 'blobs' / blob.name)
    return commit


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache with the network off, as HF_HUB_CACHE and HF_HUB_OFFLINE=1 set them (the
    package reads both when imported, hence its constants are set here)."""
    from huggingface_hub import constants
    cache = tmp_path / 'hf_cache'
    cache.mkdir()
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return cache


def safetensors_bytes(tensors: Dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    path = tmp_path / 'written.safetensors'
    write_safetensors(tensors, str(path))
    return path.read_bytes()


def dinov3_timm_tiny() -> Dict[str, torch.Tensor]:
    """timm's ConvNeXt-T names and shapes, as timm's DINOv3 file holds them (no classifier: num_classes=0)."""
    generator = torch.Generator().manual_seed(7)
    return {key: torch.randn(shape, generator=generator) for key, shape in LAYOUTS['timm/tiny'].items()
            if not key.startswith('head.fc.')}


@pytest.mark.parametrize('source,expected', [
    ('hf-hub:timm/convnext_tiny.dinov3_lvd1689m', ('timm/convnext_tiny.dinov3_lvd1689m', None)),
    ('hf-hub:facebook/convnext-tiny-224@v1.0', ('facebook/convnext-tiny-224', 'v1.0')),
    ('hf_hub:laion/CLIP-convnext_base_w-laion2B-s13B-b82K', ('laion/CLIP-convnext_base_w-laion2B-s13B-b82K', None)),
])
def test_hub_names_parse(source, expected):
    assert hub.is_hub_name(source)
    assert hub.parse_hub_name(source) == expected


@pytest.mark.parametrize('source', ['hf-hub:convnext_tiny', 'hf-hub:a/b/c', 'hf-hub:timm/x@', 'hf-hub:'])
def test_malformed_hub_names_say_the_form(source):
    with pytest.raises(ConfigError, match='hf-hub:ORG/NAME'):
        hub.parse_hub_name(source)
    assert not hub.is_hub_name('/models/convnext_tiny.pth')


def test_init_cfg_hub_name_loads_from_the_cache_with_the_network_off(tmp_path, offline_cache):
    weights = dinov3_timm_tiny()
    prefill_hub_cache(offline_cache, 'timm/convnext_tiny.dinov3_lvd1689m',
                      {'model.safetensors': safetensors_bytes(weights, tmp_path), 'config.json': b'{}'})
    model = ConvNeXt('tiny', init_cfg=dict(type='Pretrained', checkpoint=DINOV3_TINY))
    model.init_weights()
    for ours, theirs in [(model.downsample_layers[0][0].weight, 'stem.0.weight'),
                         (model.stages[2][8].pwconv1.weight, 'stages.2.blocks.8.mlp.fc1.weight'),
                         (model.stages[3][2].gamma, 'stages.3.blocks.2.gamma'),
                         (model.downsample_layers[3][1].bias, 'stages.3.downsample.1.bias')]:
        assert torch.equal(ours, weights[theirs]), theirs
    report = load_pretrained(ConvNeXt('tiny'), DINOV3_TINY)
    assert report.layout == 'timm' and report.source == DINOV3_TINY
    assert set(report.ignored) == {'head.norm.weight', 'head.norm.bias'} and report.missing == []


def test_revision_and_the_next_weight_file(tmp_path, offline_cache):
    """``@REVISION`` picks a snapshot; a repository with only ``pytorch_model.bin`` is read from that."""
    weights = dinov3_timm_tiny()
    path = tmp_path / 'pytorch_model.bin'
    torch.save(weights, path)
    commit = prefill_hub_cache(offline_cache, 'facebook/convnext-mirror', {'pytorch_model.bin': path.read_bytes()},
                               ref='v1')
    resolved = hub.resolve_hub_name(f'hf-hub:facebook/convnext-mirror@{commit}')
    assert resolved.endswith(f'{commit}/pytorch_model.bin')
    assert hub.resolve_hub_name('hf-hub:facebook/convnext-mirror@v1') == resolved


def test_uncached_file_offline_names_the_cache_and_the_fallback(offline_cache):
    with pytest.raises(CheckpointNotFoundError) as error:
        load_pretrained(ConvNeXt('atto'), DINOV3_TINY)
    message = str(error.value)
    assert DINOV3_TINY in message and str(offline_cache) in message and 'HF_HUB_OFFLINE is set' in message
    assert 'pass the file path' in message and '\n' not in message


class _GatedRepo:
    """Raises huggingface_hub's errors as its downloads do, without a server (their constructors want an HTTP
    response: built here without one)."""

    def __init__(self, error_name: str) -> None:
        from huggingface_hub import errors
        base = getattr(errors, error_name)
        self.error = type(error_name, (base,), {'__init__': lambda self: Exception.__init__(self, '403 gated')})

    def __call__(self, repo_id: str, filename: str, **kwargs) -> str:
        raise self.error()


def test_gated_repository_says_how_to_accept_the_licence(monkeypatch, offline_cache):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', _GatedRepo('GatedRepoError'))
    model = ConvNeXt('tiny', init_cfg=dict(type='Pretrained', checkpoint=DINOV3_TINY))
    with pytest.raises(CheckpointAccessError) as error:
        model.init_weights()
    message = str(error.value)
    assert 'gated' in message and 'accept the licence' in message
    assert 'https://huggingface.co/timm/convnext_tiny.dinov3_lvd1689m' in message and 'HF_TOKEN' in message
    assert '\n' not in message and isinstance(error.value, PermissionError)


def test_missing_repository_is_one_line(monkeypatch, offline_cache):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', _GatedRepo('RepositoryNotFoundError'))
    with pytest.raises(CheckpointNotFoundError, match=r'no repository timm/convnext_tiny\.dinov3_lvd1689m on the '):
        hub.resolve_hub_name(DINOV3_TINY)


def test_missing_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # import huggingface_hub raises ImportError
    with pytest.raises(MissingDependencyError) as error:
        ConvNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=DINOV3_TINY)).init_weights()
    assert "pip install 'convnext_dense[hub]'" in str(error.value) and '\n' not in str(error.value)
