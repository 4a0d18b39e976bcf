"""The learning-rate schedule a config declares, replayed with mmengine's own schedulers.

The config's ``param_scheduler`` entries are built as mmengine's Runner builds them (``end`` defaulting to
the run's length, ``convert_to_iter_based`` honoured) on a one-parameter optimizer with the config's base
lr, then stepped as ``ParamSchedulerHook`` steps them: iteration-based ones after every iteration,
epoch-based ones after every epoch. The value recorded for iteration ``i`` is the lr that iteration ran
with, which is what mmengine logs as ``lr``.

The logged lr is that of the optimizer's first parameter group. With layer-wise lr decay that group is
scaled by its ``lr_scale``, so the logged and declared curves differ by a constant factor when the schedule
was followed.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config

Schedule = List[Tuple[int, float]]


def _scheduler_cfgs(cfg: Config) -> list:
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        # One scheduler, or {optimizer name: [schedulers]} for several optimizers: the first one's.
        schedulers = next(iter(schedulers.values())) if 'type' not in schedulers else [schedulers]
    return [dict(s) for s in schedulers if 'Momentum' not in str(s.get('type', ''))]


def declared_lr(cfg: Config, num_iters: int, epoch_length: Optional[int] = None) -> Schedule:
    """``[(iteration, lr)]`` for iterations 1..``num_iters`` as ``cfg`` declares them.

    Args:
        cfg: A training config (``optim_wrapper.optimizer.lr``, ``param_scheduler``, ``train_cfg``).
        num_iters: How many iterations to replay.
        epoch_length: Iterations per epoch, for epoch-based schedulers (None: the config has none).

    Raises:
        ValueError: The config declares no base lr, or an epoch-based scheduler without ``epoch_length``.
    """
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

    optimizer_cfg = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if 'lr' not in optimizer_cfg:
        raise ValueError('optim_wrapper.optimizer.lr is not set')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    parameter = torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.SGD([parameter], lr=float(optimizer_cfg['lr'])))
    train_cfg = cfg.get('train_cfg') or {}
    max_epochs = train_cfg.get('max_epochs')
    schedulers = []
    for scheduler_cfg in _scheduler_cfgs(cfg):
        by_epoch = scheduler_cfg.get('by_epoch', True)
        if by_epoch and not epoch_length:
            raise ValueError(f'{scheduler_cfg.get("type")} steps by epoch, and the epoch length is unknown')
        scheduler_cfg.setdefault('end', max_epochs if by_epoch else train_cfg.get('max_iters', num_iters))
        schedulers.append(PARAM_SCHEDULERS.build(
            scheduler_cfg, default_args=dict(optimizer=wrapper, epoch_length=epoch_length)))
    schedule = []
    for iteration in range(1, num_iters + 1):
        schedule.append((iteration, float(wrapper.optimizer.param_groups[0]['lr'])))
        wrapper.step()  # no gradient, so nothing moves; the schedulers expect the training order
        for scheduler in schedulers:
            if not scheduler.by_epoch:
                scheduler.step()
        if epoch_length and iteration % epoch_length == 0:
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
    return schedule


def ratio_range(logged: List[Tuple[int, float]], declared: Schedule) -> Optional[Tuple[float, float]]:
    """Smallest and largest ``logged / declared`` lr over the logged iterations (None without overlap)."""
    by_iteration = dict(declared)
    ratios = [value / by_iteration[step] for step, value in logged if by_iteration.get(step)]
    return (min(ratios), max(ratios)) if ratios else None
