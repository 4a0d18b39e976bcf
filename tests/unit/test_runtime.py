"""The mmengine patches of ``convnext_dense.runtime``: full mmengine training checkpoints load again on
torch >= 2.6, code-running pickles are refused, checkpoints are written atomically."""
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import RunsCodeWhenUnpickled
from mmengine.runner import load_checkpoint

from convnext_dense.io import safe_torch_load
from convnext_dense.runtime import AtomicLocalBackend
from toy_runner import ToyModel, toy_runner


def test_training_checkpoint_resumes_with_message_hub_and_numpy(tmp_path):
    runner = toy_runner(tmp_path, max_iters=2)
    runner.message_hub.update_info('numpy_value', np.float64(1.5))
    runner.message_hub.update_info('numpy_array', np.arange(3, dtype=np.int64))
    runner.train()
    checkpoint_path = tmp_path / 'iter_2.pth'
    assert checkpoint_path.is_file()

    raw = safe_torch_load(str(checkpoint_path))
    assert {'meta', 'state_dict', 'optimizer', 'message_hub', 'param_schedulers'} <= set(raw)

    resumed = toy_runner(tmp_path, max_iters=4, resume=True, load_from=str(checkpoint_path))
    resumed.train()
    assert resumed.iter == 4
    assert resumed.message_hub.get_info('numpy_value') == 1.5
    assert (tmp_path / 'iter_4.pth').is_file()

    model = ToyModel()
    load_checkpoint(model, str(tmp_path / 'iter_4.pth'))  # mmengine's public path, as tools/test.py uses
    assert torch.equal(model.linear.weight, resumed.model.linear.weight)


def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / 'pwned'
    crafted = tmp_path / 'evil.pth'
    with open(crafted, 'wb') as f:
        pickle.dump({'state_dict': RunsCodeWhenUnpickled(str(marker))}, f)
    with pytest.raises(RuntimeError, match='evil.pth'):
        safe_torch_load(str(crafted))
    assert not marker.exists()


def test_not_a_checkpoint_names_the_file(tmp_path):
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(os.urandom(256))
    with pytest.raises(RuntimeError, match='junk.pth'):
        safe_torch_load(str(junk))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        safe_torch_load(str(tmp_path / 'missing.pth'))


class _SneakyGetattr:
    def __reduce__(self):
        return (getattr, (np.ndarray, 'tofile'))


def test_getattr_is_only_allowed_for_history_buffer_methods(tmp_path):
    crafted = tmp_path / 'sneaky.pth'
    torch.save({'message_hub': _SneakyGetattr()}, crafted)
    with pytest.raises(RuntimeError, match='sneaky.pth'):
        safe_torch_load(str(crafted))


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from mmengine.fileio import get_file_backend
    target = tmp_path / 'ckpt' / 'iter_2.pth'
    backend = get_file_backend(str(target))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'complete', target)

    def killed_mid_write(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for a kill between writing and renaming

    monkeypatch.setattr(os, 'replace', killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'partial', target)
    assert target.read_bytes() == b'complete'
    assert sorted(p.name for p in target.parent.iterdir()) == ['iter_2.pth']  # no temporary left


def test_checkpoint_save_removes_temporaries_a_killed_save_left(tmp_path):
    from mmengine.fileio import put
    stale = tmp_path / '.iter_4.pth.k2j8s1x0.tmp'  # what atomic_write leaves when killed before its rename
    stale.write_bytes(b'half a checkpoint')
    other = tmp_path / '.scalars.json.a1b2c3d4.tmp'  # not a checkpoint's: another writer may own it
    other.write_bytes(b'{}')
    put(b'weights', tmp_path / 'iter_6.pth')
    assert not stale.exists() and other.exists()
    assert (tmp_path / 'iter_6.pth').read_bytes() == b'weights'
