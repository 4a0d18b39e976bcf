"""Tiny, deterministic runs of the shapes detector through the real CLI, for the robustness tests.

A 64 px shapes set and a config that ``_base_``s ``configs/demo/mask_rcnn_convnext_shapes.py`` by absolute
path: a 1-block-per-stage ConvNeXt (16..128 channels), no random flip, no validation, checkpoints every
``checkpoint_interval`` iterations, logs every iteration. RoI sampling takes every candidate
(``num=100000``), so the forward pass draws no random numbers and runs repeat exactly.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(REPO_ROOT / 'tools' / 'train.py')
TEST = str(REPO_ROOT / 'tools' / 'test.py')
BASE_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'mask_rcnn_convnext_shapes.py'
IMAGE_SIZE = 64

CONFIG = '''
_base_ = {base!r}
data_root = {data_root!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=(1, 1, 1, 1), channels=(16, 32, 64, 128))),
    neck=dict(in_channels=[16, 32, 64, 128]),
    train_cfg=dict(rpn=dict(sampler=dict(num=100000)), rcnn=dict(sampler=dict(num=100000))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
train_cfg = dict(max_iters={max_iters}, val_interval=1000)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={checkpoint_interval}, max_keep_ckpts=-1),
                     visualization=dict(draw=False))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
'''


def make_data(root: Path, num_train: int = 8, num_val: int = 2) -> Path:
    """Writes a tiny shapes set (64 px, at most 3 shapes an image) under ``root``; returns it."""
    from convnext_dense.datasets.shapes import make_shapes
    make_shapes(root, seed=0, num_train=num_train, num_val=num_val, image_size=IMAGE_SIZE, max_objects=3,
                radius_range=(6.0, 14.0))
    return root


def write_config(path: Path, data_root: Path, max_iters: int = 4, batch_size: int = 2,
                 checkpoint_interval: int = 2, extra: str = '') -> Path:
    """Writes the tiny override config to ``path`` (``extra`` is appended verbatim); returns it."""
    path.write_text(CONFIG.format(base=str(BASE_CONFIG), data_root=str(data_root) + '/', size=IMAGE_SIZE,
                                  batch_size=batch_size, max_iters=max_iters,
                                  checkpoint_interval=checkpoint_interval) + extra)
    return path


def tool_env(extra_path: Optional[Path] = None) -> Dict[str, str]:
    """The environment of a tool subprocess: one thread, the repo (and ``extra_path``) importable."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONHASHSEED='0')
    paths = [str(REPO_ROOT)] + ([str(extra_path)] if extra_path else [])
    env['PYTHONPATH'] = os.pathsep.join(paths + [env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.pop('CONVNEXT_DENSE_DEBUG', None)
    return env


def run_tool(args: List[str], timeout: int = 300, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` from the repository root and returns the completed process."""
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or tool_env())


def check_ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def logged_losses(work_dir: Path) -> Dict[int, float]:
    """``{iteration: loss}`` from every ``vis_data/scalars.json`` under ``work_dir`` (later runs win)."""
    losses = {}
    for scalars in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                losses[int(record['iter'])] = float(record['loss'])
    return losses
