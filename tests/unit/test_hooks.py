"""FiniteLossHook stops at the first non-finite loss, before that state is checkpointed."""
import pytest
import torch

from convnext_dense.engine import FiniteLossHook, NonFiniteLossError
from toy_runner import ToyModel, toy_runner


class NaNAfterThreeSteps(ToyModel):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, inputs, labels, mode='tensor'):
        outputs = super().forward(inputs, labels, mode)
        if mode == 'loss':
            self.calls += 1
            if self.calls >= 3:
                outputs = dict(loss=outputs['loss'] * torch.tensor(float('nan')))
        return outputs


def test_nan_loss_stops_naming_the_iteration_and_saves_nothing_after_it(tmp_path):
    runner = toy_runner(tmp_path, max_iters=6, model=NaNAfterThreeSteps(),
                        custom_hooks=[dict(type='convnext_dense.FiniteLossHook')])
    with pytest.raises(NonFiniteLossError, match=r'loss is nan at iteration 3 \(epoch 1\)'):
        runner.train()
    assert (tmp_path / 'iter_2.pth').is_file()
    assert not (tmp_path / 'iter_4.pth').exists()


def test_finite_losses_pass(tmp_path):
    runner = toy_runner(tmp_path, max_iters=2, custom_hooks=[FiniteLossHook()])
    runner.train()
    assert runner.iter == 2
