"""End to end through the real CLI: train, resume, test (COCO mAP, --out, --show-dir) and one-line errors.

Runs ``tools/train.py`` and ``tools/test.py`` as subprocesses on a tiny COCO-layout set written here (128px
images with boxes and polygon masks), with Mask R-CNN on a ConvNeXt-atto backbone.
"""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(REPO_ROOT / 'tools' / 'train.py')
TEST = str(REPO_ROOT / 'tools' / 'test.py')
PAPER_CONFIG = REPO_ROOT / 'configs' / 'det' / 'mask_rcnn_convnext_t_3x.py'
IMAGE_SIZE = 128
CATEGORIES = [dict(id=1, name='square'), dict(id=2, name='triangle')]

OVERRIDE = '''
_base_ = {base!r}
data_root = {data_root!r}
metainfo = dict(classes=('square', 'triangle'))
model = dict(
    backbone=dict(arch='atto', drop_path_rate=0.1, init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320]),
    roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=100, max_per_img=50), rcnn=dict(score_thr=0.0, max_per_img=10)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
# AMP needs CUDA; the layer-decay constructor is kept.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
                     paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6),
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
log_processor = dict(window_size=1)
'''


def write_split(root: Path, split: str, num_images: int, seed: int) -> None:
    """Writes ``root/{split}2017/*.png`` and ``root/annotations/instances_{split}2017.json``."""
    rng = np.random.default_rng(seed)
    (root / f'{split}2017').mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for k in range(2):
            x, y = (int(v) for v in rng.integers(4, IMAGE_SIZE // 2, 2))
            w, h = (int(v) for v in rng.integers(24, IMAGE_SIZE // 2 - 4, 2))
            category = 1 + k % 2
            polygon = [x, y, x + w, y, x + w // 2, y + h] if category == 2 else [x, y, x + w, y, x + w, y + h, x, y + h]
            draw.polygon(polygon, fill=(200, 60, 60) if category == 1 else (60, 200, 60))
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, category_id=category,
                                    segmentation=[[float(v) for v in polygon]], bbox=[x, y, w, h],
                                    area=float(w * h if category == 1 else w * h / 2), iscrowd=0))
        file_name = f'{image_id:06d}.png'
        image.save(root / f'{split}2017' / file_name)
        images.append(dict(id=image_id, file_name=file_name, width=IMAGE_SIZE, height=IMAGE_SIZE))
    (root / 'annotations').mkdir(exist_ok=True)
    coco = dict(images=images, annotations=annotations, categories=CATEGORIES)
    (root / 'annotations' / f'instances_{split}2017.json').write_text(json.dumps(coco))


def run_tool(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def check_ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """Trains one epoch (2 iterations) of the override config; returns (config, work_dir, output)."""
    root = tmp_path_factory.mktemp('det_e2e')
    data_root = root / 'coco'
    write_split(data_root, 'train', 4, seed=0)
    write_split(data_root, 'val', 2, seed=1)
    config = root / 'mask_rcnn_atto_tiny.py'
    config.write_text(OVERRIDE.format(base=str(PAPER_CONFIG), data_root=str(data_root) + '/', size=IMAGE_SIZE))
    work_dir = root / 'work'
    output = check_ok(run_tool(TRAIN, str(config), '--work-dir', str(work_dir)))
    return config, work_dir, output


def load_meta(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['meta']


def test_train_writes_checkpoint(tiny_run):
    _, work_dir, output = tiny_run
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    meta = load_meta(work_dir / 'epoch_1.pth')
    assert (meta['epoch'], meta['iter']) == (1, 2)
    assert 'loss_mask' in output and 'loss_rpn_cls' in output


def test_resume_continues_and_test_reports_map(tiny_run):
    config, work_dir, _ = tiny_run
    output = check_ok(run_tool(TRAIN, str(config), '--work-dir', str(work_dir), '--resume',
                               str(work_dir / 'epoch_1.pth'), '--cfg-options', 'train_cfg.max_epochs=2'))
    assert 'resumed epoch: 1, iter: 2' in output
    meta = load_meta(work_dir / 'epoch_2.pth')
    assert (meta['epoch'], meta['iter']) == (2, 4)

    out_file = work_dir / 'preds.pkl'
    output = check_ok(run_tool(TEST, str(config), str(work_dir / 'epoch_2.pth'), '--work-dir', str(work_dir),
                               '--out', str(out_file), '--show-dir', 'vis'))
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert f'{key}:' in output, key
    with out_file.open('rb') as handle:
        predictions = pickle.load(handle)
    assert len(predictions) == 2 and 'masks' in predictions[0]['pred_instances']
    assert not list(work_dir.glob('.preds.pkl.*'))  # the dump's temporary file was renamed, none left
    assert len(list(work_dir.glob('*/vis/*.png'))) == 2


def test_missing_config_is_one_line(tmp_path):
    result = run_tool(TRAIN, str(tmp_path / 'nope.py'))
    assert result.returncode == 2
    assert result.stderr.strip() == f'error: config {tmp_path / "nope.py"} not found: no such file and no such ' \
                                    f'config name; list them with: convnext-dense config-path --list'


def test_missing_data_root_names_path_and_layout(tmp_path):
    missing = tmp_path / 'no_coco'
    result = run_tool(TRAIN, str(PAPER_CONFIG), '--data-root', f'{missing}/')
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    message = result.stderr.strip()
    assert '\n' not in message
    assert message == (f'error: data root {missing}/ not found: expected '
                       f'{missing}/annotations/instances_train2017.json and {missing}/train2017/ '
                       f'(COCO layout); pass --data-root DIR (moves every split and evaluator) or link the data '
                       f'there')


@pytest.mark.parametrize('tool', ['test', 'resume'])
def test_missing_checkpoint_is_one_line(tool, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    if tool == 'test':
        result = run_tool(TEST, str(PAPER_CONFIG), missing)
    else:
        result = run_tool(TRAIN, str(PAPER_CONFIG), '--resume', missing)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip().startswith(f'error: checkpoint {missing} (')
    assert '\n' not in result.stderr.strip()
