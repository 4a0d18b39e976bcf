"""Full mmengine training checkpoints load again on torch >= 2.6; code-running pickles are refused."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint

from convnext_dense.compat import safe_torch_load


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        outputs = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((outputs.squeeze(-1) - labels) ** 2).mean())
        return outputs


class ToyDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index), 1.0]), labels=torch.tensor(float(index) * 0.5))


def _runner(work_dir, max_iters, resume=False, load_from=None):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, load_from=load_from, randomness=dict(seed=0), default_scope='mmengine')


def test_training_checkpoint_resumes_with_message_hub_and_numpy(tmp_path):
    runner = _runner(tmp_path, max_iters=2)
    runner.message_hub.update_info('numpy_value', np.float64(1.5))
    runner.message_hub.update_info('numpy_array', np.arange(3, dtype=np.int64))
    runner.train()
    checkpoint_path = tmp_path / 'iter_2.pth'
    assert checkpoint_path.is_file()

    raw = safe_torch_load(str(checkpoint_path))
    assert {'meta', 'state_dict', 'optimizer', 'message_hub', 'param_schedulers'} <= set(raw)

    resumed = _runner(tmp_path, max_iters=4, resume=True, load_from=str(checkpoint_path))
    resumed.train()
    assert resumed.iter == 4
    assert resumed.message_hub.get_info('numpy_value') == 1.5
    assert (tmp_path / 'iter_4.pth').is_file()

    model = ToyModel()
    load_checkpoint(model, str(tmp_path / 'iter_4.pth'))  # mmengine's public path, as tools/test.py uses
    assert torch.equal(model.linear.weight, resumed.model.linear.weight)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / 'pwned'
    crafted = tmp_path / 'evil.pth'
    with open(crafted, 'wb') as f:
        pickle.dump({'state_dict': _Marker(str(marker))}, f)
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
