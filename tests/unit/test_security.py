"""Weights from outside are loaded with ``weights_only=True``: a pickle that would run code is refused
without running it, wherever such a file can enter (security).

The crafted files would create a marker directory when unpickled by plain ``pickle``/``torch.load``;
every test asserts the marker does not exist afterwards. Both on-disk formats are covered: torch's zip
format (``torch.save``) and the legacy raw pickle (``pickle.dump``), which ``torch.load`` also reads. The
refusal must name the blocked callable (``posix.mkdir``), i.e. it is refused for what it would run. The command line in a fresh process is checked in
tests/integration/test_fresh_process.py.
"""
import pickle

import pytest
import torch
from conftest import RunsCodeWhenUnpickled

from convnext_dense import checkpoint as checkpoint_module
from convnext_dense import runtime  # noqa: F401  (mmengine's local loader: the patched one)
from convnext_dense.cli.main import main as cli_main
from convnext_dense.io import safe_torch_load
from convnext_dense.models import ConvNeXt


@pytest.fixture(params=['torch_zip', 'raw_pickle'])
def crafted(request, tmp_path):
    """(crafted checkpoint path, marker path) with a state dict whose one value runs code."""
    marker = tmp_path / 'marker_dir'
    payload = {'state_dict': {'downsample_layers.0.0.weight': RunsCodeWhenUnpickled(str(marker))}}
    path = tmp_path / f'evil_{request.param}.pth'
    if request.param == 'torch_zip':
        torch.save(payload, path)
    else:
        with open(path, 'wb') as handle:
            pickle.dump(payload, handle, protocol=2)  # torch.load's own protocol: it reaches the GLOBAL
    return path, marker


def test_the_crafted_file_really_runs_code_without_weights_only(crafted):
    """The control: an unsafe load does create the marker, so its absence elsewhere means something."""
    path, marker = crafted
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:  # a raw pickle is not a torch file: refused only after unpickling ran the code
        pass
    assert marker.is_dir()


def test_pretrained_weights_refuse_it(crafted):
    path, marker = crafted
    model = ConvNeXt(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 128)),
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(RuntimeError, match=f'could not load checkpoint {path}: .*GLOBAL posix.mkdir .*refused for safety'):
        model.init_weights()
    assert not marker.exists()


def test_pretrained_weights_are_read_with_weights_only(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', recording_load)
    path = tmp_path / 'ok.pth'
    model = ConvNeXt(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 128)))
    real_state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(real_state, path)
    checkpoint_module.load_pretrained(model, str(path))
    assert calls == [True]


def test_convert_checkpoint_refuses_it(crafted, tmp_path, capsys):
    path, marker = crafted
    dst = tmp_path / 'converted.pth'
    assert cli_main(['convert', str(path), str(dst)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f'error: could not load checkpoint {path}: Trying to load '
                              f'unsupported GLOBAL posix.mkdir whose module posix is blocked. ')
    assert '\n' not in message
    assert not marker.exists() and not dst.exists()


def test_safe_loader_of_training_checkpoints_refuses_it(crafted):
    """mmengine's local loader (resume, tools/test.py, load_from) goes through the same safe load."""
    from mmengine.runner.checkpoint import CheckpointLoader
    path, marker = crafted
    with pytest.raises(RuntimeError, match='GLOBAL posix.mkdir'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    with pytest.raises(RuntimeError, match='refused for safety'):
        safe_torch_load(str(path))
    assert not marker.exists()
