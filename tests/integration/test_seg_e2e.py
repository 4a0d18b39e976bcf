"""End to end on a tiny ADE-format set: tools/train.py, --resume, tools/test.py (mIoU, --show-dir, --tta).

The override config inherits the real ConvNeXt-T UperNet config and only shrinks what a CPU needs: a
one-block-per-stage backbone, narrow heads, BN for SyncBN, fp32, 64x64 crops, four iterations. The test and
TTA pipelines are the real ones (2048x512 test scale, six ratios with flip).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmseg  # noqa: F401  (a missing mmseg must fail the suite, not skip it)
import cv2

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO_ROOT / 'configs' / 'seg' / 'upernet_convnext_t_512_160k.py'
IMAGE_HW = (96, 128)
NUM_VAL = 2

OVERRIDES = """
_base_ = [{base!r}]
data_root = {data_root!r}
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, depths=(1, 1, 1, 1), channels=(16, 32, 64, 128)),
                  drop_path_rate=0.1, init_cfg=None),
    decode_head=dict(in_channels=(16, 32, 64, 128), channels=32, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=(128, 128), stride=(96, 96)))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=2, end=4),
]
# No validation inside training (mmengine validates after the last iteration otherwise): the tests below run
# the real test pipeline through tools/test.py.
train_cfg = dict(max_iters=2, val_interval=1000, val_begin=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
# The base pipelines were built with the 512 crop; lists are replaced, not merged, so restate the train one.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
env_cfg = dict(cudnn_benchmark=False)
"""


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator) -> None:
    images, labels = root / 'images' / split, root / 'annotations' / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    height, width = IMAGE_HW
    for index in range(count):
        label = np.zeros(IMAGE_HW, np.uint8)  # 0 = "other", ignored under reduce_zero_label
        for cls in rng.choice(np.arange(1, 9), size=3, replace=False):
            top, left = rng.integers(0, height - 32), rng.integers(0, width - 32)
            label[top:top + 32, left:left + 48] = cls
        label[:4, :] = 255  # explicitly ignored pixels stay ignored
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        image += (label[..., None] % 9 * 20).astype(np.uint8)  # classes differ in colour, so there is signal
        name = f'ADE_{split}_{index:08d}'
        cv2.imwrite(str(images / f'{name}.jpg'), image)
        cv2.imwrite(str(labels / f'{name}.png'), label)


def _run(*args: str) -> str:
    python_path = os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get('PYTHONPATH'))))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=python_path)
    result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{args[0]} failed ({result.returncode}):\n{output[-6000:]}'
    return output


def _metrics(output: str) -> dict:
    """The last logged value of each of mmseg's IoUMetric summary keys."""
    found = {}
    for key in ('aAcc', 'mIoU', 'mAcc'):
        values = re.findall(rf'{key}: (\d+\.\d+|nan)', output)
        assert values, f'{key} not printed:\n{output[-3000:]}'
        found[key] = float(values[-1])
    return found


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Trains 2 iterations, then resumes to 4; returns (config, work_dir, outputs of both runs)."""
    tmp = tmp_path_factory.mktemp('seg_e2e')
    data_root = tmp / 'ADEChallengeData2016'
    rng = np.random.default_rng(0)
    _write_split(data_root, 'training', 4, rng)
    _write_split(data_root, 'validation', NUM_VAL, rng)
    config = tmp / 'upernet_tiny_e2e.py'
    config.write_text(OVERRIDES.format(base=str(BASE_CONFIG), data_root=str(data_root)))
    work_dir = tmp / 'work'
    first = _run('tools/train.py', str(config), '--work-dir', str(work_dir))
    second = _run('tools/train.py', str(config), '--work-dir', str(work_dir), '--resume',
                  '--cfg-options', 'train_cfg.max_iters=4')
    return config, work_dir, first, second


def test_train_then_resume_continues_from_the_checkpoint(trained):
    import torch

    _, work_dir, first, second = trained
    assert (work_dir / 'iter_2.pth').is_file() and (work_dir / 'iter_4.pth').is_file()
    assert 'Iter(train) [2/2]' in first
    # The resumed run starts at iteration 3: no iteration 1 or 2 is trained again.
    assert 'Iter(train) [3/4]' in second and 'Iter(train) [4/4]' in second
    assert 'Iter(train) [1/4]' not in second and 'Iter(train) [2/4]' not in second
    checkpoint = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 4
    assert any(key.startswith('backbone.stages.3.') for key in checkpoint['state_dict'])


def test_test_prints_iou_metrics_and_writes_predictions(trained, tmp_path):
    config, work_dir, _, _ = trained
    show_dir = tmp_path / 'vis'
    output = _run('tools/test.py', str(config), str(work_dir / 'iter_4.pth'), '--work-dir', str(tmp_path / 'test'),
                  '--show-dir', str(show_dir))
    metrics = _metrics(output)
    assert 0.0 <= metrics['aAcc'] <= 100.0 and 0.0 <= metrics['mIoU'] <= 100.0
    written = sorted(p for p in show_dir.rglob('*') if p.suffix in ('.png', '.jpg'))
    assert len(written) == NUM_VAL, f'expected one visualisation per validation image, got {written}'
    drawn = cv2.imread(str(written[0]))
    # Ground truth and prediction side by side, each colour-mapped over the input at its original size.
    assert drawn.shape[0] == IMAGE_HW[0] and drawn.shape[1] in (IMAGE_HW[1], 2 * IMAGE_HW[1])
    assert drawn.std() > 0


def test_tta_runs_multi_scale_flip(trained, tmp_path):
    config, work_dir, _, _ = trained
    output = _run('tools/test.py', str(config), str(work_dir / 'iter_4.pth'), '--work-dir', str(tmp_path / 'tta'),
                  '--tta', '--cfg-options', 'model.test_cfg.mode=whole')
    assert 'module=dict(' in output  # the logged config: the segmentor is wrapped in cfg.tta_model
    metrics = _metrics(output)
    assert 0.0 <= metrics['mIoU'] <= 100.0
