"""The example configs of docs/custom_dataset.md train on a user's COCO-format set and on label maps.

A tiny synthetic shapes set (COCO instances and label maps drawn from the same scenes) stands in for the
user's data. Each test checks the example config as a user gets it (class names, palette and heads agree) and
then trains it for two iterations through the training command, from a config that ``_base_``s the example
and changes only what a fast CPU test must: a one-block-per-stage ConvNeXt without downloaded weights, plain
fp32 optimisation instead of AMP, BN instead of SyncBN, 64 px images, no validation.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from convnext_dense.io import safe_torch_load

from shapes_run import REPO_ROOT, TRAIN, check_ok, logged_losses, make_data, run_tool

DET_CONFIG = REPO_ROOT / 'configs' / 'custom' / 'mask_rcnn_convnext_t_coco_format.py'
SEG_CONFIG = REPO_ROOT / 'configs' / 'custom' / 'upernet_convnext_t_label_maps.py'
SHAPES_CLASSES = ('circle', 'square', 'triangle', 'star', 'ring')
MAX_ITERS = 2

# What a CPU test changes in either example; the dataset settings stay the example's.
COMMON_OVERRIDE = '''
data_root = {data_root!r}
tiny_arch = dict(_delete_=True, depths=(1, 1, 1, 1), channels=(16, 32, 64, 128))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=1000)
val_dataloader = None
val_cfg = None
val_evaluator = None
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end={max_iters})]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval={max_iters}),
                     visualization=dict(draw=False))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
'''

DET_OVERRIDE = '''
_base_ = {base!r}
model = dict(
    backbone=dict(arch=tiny_arch, drop_path_rate=0.0, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128]))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=pipeline))
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                     constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
                     paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise'))
'''

SEG_OVERRIDE = '''
_base_ = {base!r}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(arch=tiny_arch, drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=(16, 32, 64, 128), channels=16, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, norm_cfg=norm_cfg))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, img_suffix='.png', pipeline=pipeline))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, img_suffix='.png', pipeline=pipeline))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                     constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
                     paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
'''


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp('my_dataset'))


def write_override(path: Path, body: str, base: Path, data_root: Path) -> Path:
    common = COMMON_OVERRIDE.format(data_root=f'{data_root}/', max_iters=MAX_ITERS)
    path.write_text(common + body.format(base=str(base)))  # the body uses data_root and tiny_arch
    return path


def train(config: Path, work_dir: Path) -> dict:
    """Trains ``config`` for MAX_ITERS iterations; returns the final checkpoint's ``meta``."""
    check_ok(run_tool([TRAIN, str(config), '--work-dir', str(work_dir)]))
    losses = logged_losses(work_dir)
    assert sorted(losses) == list(range(1, MAX_ITERS + 1)), losses
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses.values()), losses
    checkpoint = safe_torch_load(str(work_dir / f'iter_{MAX_ITERS}.pth'))
    return checkpoint['meta']


def test_coco_format_example_config_is_consistent():
    cfg = Config.fromfile(DET_CONFIG)
    assert cfg.classes == SHAPES_CLASSES and len(cfg.palette) == len(cfg.classes)
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == len(cfg.classes)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.data_root == cfg.data_root
        assert loader.dataset.metainfo == dict(classes=cfg.classes, palette=cfg.palette)
    assert cfg.val_evaluator.ann_file == cfg.data_root + cfg.val_dataloader.dataset.ann_file
    # Labels follow the order of classes, whatever the order of the json's categories.
    assert {loader.dataset.type for loader in (cfg.train_dataloader, cfg.val_dataloader)} == {
        'convnext_dense.CocoDataset'}
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'convnext_dense.CocoMetric'
    # Still the paper's model and recipe: ImageNet-1K ConvNeXt-T weights, layer-wise decay.
    assert cfg.model.backbone.init_cfg.checkpoint.endswith('convnext_tiny_1k_224.pth')
    assert cfg.optim_wrapper.paramwise_cfg.decay_type == 'layer_wise'


def test_label_map_example_config_is_consistent():
    cfg = Config.fromfile(SEG_CONFIG)
    assert cfg.classes == ('background',) + SHAPES_CLASSES and len(cfg.palette) == len(cfg.classes)
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(cfg.classes)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.type == 'BaseSegDataset' and loader.dataset.data_root == cfg.data_root
        assert loader.dataset.reduce_zero_label is False
    # Label 0 is a class: no pipeline may shift it to "ignore" (ADE20K's convention).
    transforms = cfg.train_pipeline + cfg.test_pipeline + [t for group in cfg.tta_pipeline[1].transforms
                                                            for t in group]
    loads = [t for t in transforms if t['type'] == 'LoadAnnotations']
    assert len(loads) == 3 and all(t['reduce_zero_label'] is False for t in loads)


def test_coco_format_example_trains(shapes_root, tmp_path):
    config = write_override(tmp_path / 'det.py', DET_OVERRIDE, DET_CONFIG, shapes_root)
    meta = train(config, tmp_path / 'work')
    # The checkpoint carries the user's class names and palette, which infer and test paint with.
    assert tuple(meta['dataset_meta']['classes']) == SHAPES_CLASSES
    assert len(meta['dataset_meta']['palette']) == len(SHAPES_CLASSES)


def test_label_map_example_trains(shapes_root, tmp_path):
    config = write_override(tmp_path / 'seg.py', SEG_OVERRIDE, SEG_CONFIG, shapes_root)
    meta = train(config, tmp_path / 'work')
    assert tuple(meta['dataset_meta']['classes']) == ('background',) + SHAPES_CLASSES
