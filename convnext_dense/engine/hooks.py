"""Training hooks registered in the ``convnext_dense`` scope."""
import math
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook

from convnext_dense.errors import RunError
from convnext_dense.registry import HOOKS


class NonFiniteLossError(RunError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the iteration and the batch."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops training at the first NaN or infinite loss, naming the iteration, the loss terms and images.

    Stopping (rather than skipping the step) is deliberate: a NaN loss almost always means a learning
    rate, data or numerics problem that later steps will not repair, and the hook runs before the
    checkpoint hook, so the broken weights are never saved and ``--resume`` starts from the last good
    checkpoint. With AMP the loss scaler still skips steps whose *gradients* overflow in fp16, as usual.

    Args:
        interval: Check every ``interval`` iterations (1 checks all; the check costs one sync).
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW) and LoggerHook (BELOW_NORMAL)

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or 'loss' not in outputs or not self.every_n_train_iters(runner, self.interval):
            return
        loss = _to_float(outputs['loss'])
        if math.isfinite(loss):
            return
        terms = ', '.join(f'{name}={_to_float(value):.4g}' for name, value in outputs.items()
                          if name.startswith('loss') and name != 'loss')
        raise NonFiniteLossError(
            f'loss is {loss} at iteration {runner.iter + 1} (epoch {runner.epoch + 1}); terms: {terms}; '
            f'images: {", ".join(_image_paths(data_batch)) or "unknown"}. Training stopped before saving; '
            f'lower the learning rate, clip gradients (optim_wrapper.clip_grad=dict(max_norm=...)) or check '
            f'these annotations, then --resume from the last checkpoint.')


def _to_float(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _image_paths(data_batch: Optional[dict]) -> Sequence[str]:
    samples = (data_batch or {}).get('data_samples') or []
    return [str(sample.img_path) for sample in samples if 'img_path' in getattr(sample, 'metainfo', {})]
