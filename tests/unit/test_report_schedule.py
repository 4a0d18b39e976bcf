"""The declared lr schedule, replayed with mmengine's schedulers, against the schedules' closed forms."""
import math

import pytest
from mmengine.config import Config

from convnext_dense.config import load_config
from convnext_dense.report.schedule import declared_lr, ratio_range


def test_demo_segmentor_schedule_is_warmup_then_poly():
    cfg = load_config('demo/upernet_convnext_shapes')
    base, warmup, end = cfg.optim_wrapper.optimizer.lr, cfg.warmup_iters, cfg.max_iters
    schedule = dict(declared_lr(cfg, end))
    assert len(schedule) == end
    # Iteration i runs with the lr after i - 1 scheduler steps; an mmengine scheduler active on [begin, end)
    # reaches its last value at step end - 1. LinearLR: factor 0.01 -> 1 over steps 0..warmup - 1.
    for i in (1, 2, 26, warmup):
        assert schedule[i] == pytest.approx(base * (0.01 + 0.99 * (i - 1) / (warmup - 1)))
    # PolyLR (power 1) from the base lr towards eta_min 1e-5 over steps warmup..end - 1.
    for i in (warmup + 1, 800, end):
        k = i - 1 - warmup
        assert schedule[i] == pytest.approx((base - 1e-5) * (1 - k / (end - warmup - 1)) + 1e-5)


def test_demo_detector_schedule_is_warmup_then_cosine():
    cfg = load_config('demo/mask_rcnn_convnext_shapes')
    base, warmup, end = cfg.optim_wrapper.optimizer.lr, cfg.warmup_iters, cfg.max_iters
    schedule = dict(declared_lr(cfg, end))
    eta_min = base * 0.01  # eta_min_ratio
    for i in (warmup + 1, 175, end):
        k = i - 1 - warmup  # CosineAnnealingLR's T_max is end - begin
        assert schedule[i] == pytest.approx(eta_min + (base - eta_min) * (1 + math.cos(math.pi * k / (end - warmup)))
                                            / 2, rel=1e-6)


def test_epoch_schedulers_step_at_epoch_ends():
    cfg = Config(dict(default_scope='mmdet', train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=4),
                      optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                      param_scheduler=[dict(type='MultiStepLR', by_epoch=True, milestones=[2, 3], gamma=0.1)]))
    schedule = dict(declared_lr(cfg, 40, epoch_length=10))
    assert [schedule[i] for i in (1, 20, 21, 30, 31, 40)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    with pytest.raises(ValueError, match='epoch length is unknown'):
        declared_lr(cfg, 40)


def test_ratio_of_logged_to_declared():
    declared = [(1, 0.1), (2, 0.2), (3, 0.4)]
    assert ratio_range([(1, 0.05), (3, 0.2)], declared) == (0.5, 0.5)
    assert ratio_range([(1, 0.05), (2, 0.2)], declared) == (0.5, 1.0)
    assert ratio_range([(9, 1.0)], declared) is None
