"""--data-root moves every split and evaluator of a config; --num-classes reaches every classifying head."""
import os.path as osp

import pytest

from convnext_dense.config import load_config
from convnext_dense.config_edits import head_num_classes, move_data_root, set_num_classes, split_datasets, \
    split_metrics
from convnext_dense.errors import ConfigError


def data_paths(cfg):
    """Every dataset root and evaluator annotation file of the config, by key."""
    paths = {f'{key}.data_root': leaf.get('data_root') for _, leaf, key in split_datasets(cfg)}
    paths.update({f'{key}.ann_file': metric.get('ann_file') for split in ('val', 'test')
                  for metric, key in split_metrics(cfg, split) if metric.get('ann_file')})
    return paths


@pytest.mark.parametrize('name, evaluated', [
    ('det/mask_rcnn_convnext_t_3x', True),
    ('det/cascade_convnext_t_3x', True),
    ('seg/upernet_convnext_t_512_160k', False),
    ('configs/custom/mask_rcnn_convnext_t_coco_format.py', True),
    ('configs/custom/upernet_convnext_t_label_maps.py', False),
])
def test_data_root_moves_every_split_and_evaluator(name, evaluated):
    cfg = load_config(name)
    old_root, before = cfg.data_root, data_paths(cfg)
    assert move_data_root(cfg, '/mnt/data/') == []
    after = data_paths(cfg)
    assert set(after) == set(before)
    assert {key.split('_')[0] for key in after} == {'train', 'val', 'test'}
    assert any(key.endswith('.ann_file') for key in after) is evaluated
    for key, path in after.items():
        assert path.startswith('/mnt/data/'), (key, path)
        assert osp.relpath(path, '/mnt/data/') == osp.relpath(before[key], old_root), key  # same place in the layout
    assert cfg.data_root == '/mnt/data/'


def test_data_root_keeps_an_evaluator_file_outside_the_old_root():
    cfg = load_config('det/mask_rcnn_convnext_t_3x')
    cfg.merge_from_dict({'val_evaluator.ann_file': '/elsewhere/val.json'})
    kept = move_data_root(cfg, '/mnt/coco/')
    assert 'val_evaluator.ann_file=/elsewhere/val.json' in kept
    assert cfg.val_evaluator.ann_file == '/elsewhere/val.json'
    assert cfg.train_dataloader.dataset.data_root == '/mnt/coco/'


def test_data_root_refuses_datasets_with_several_roots():
    cfg = load_config('det/mask_rcnn_convnext_t_3x')
    cfg.merge_from_dict({'val_dataloader.dataset.data_root': '/other/'})
    with pytest.raises(ConfigError, match='use several data roots .*set each with --cfg-options'):
        move_data_root(cfg, '/mnt/coco/')


@pytest.mark.parametrize('name, heads', [
    ('det/mask_rcnn_convnext_t_3x', ['roi_head.bbox_head', 'roi_head.mask_head']),
    ('det/cascade_convnext_t_3x', ['roi_head.bbox_head.0', 'roi_head.bbox_head.1', 'roi_head.bbox_head.2',
                                   'roi_head.mask_head']),
    ('seg/upernet_convnext_t_512_160k', ['decode_head', 'auxiliary_head']),
])
def test_num_classes_sets_every_head(name, heads):
    cfg = load_config(name)
    keys = [f'model.{head}.num_classes' for head in heads]
    assert set_num_classes(cfg, 5) == keys
    assert head_num_classes(cfg) == [(key, 5) for key in keys]
    if 'cascade' in name:  # still three stages, each with its own box coder
        stds = [head.bbox_coder.target_stds for head in cfg.model.roi_head.bbox_head]
        assert len(stds) == 3 and len({tuple(std) for std in stds}) == 3


def test_num_classes_below_one_is_refused():
    with pytest.raises(ConfigError, match='--num-classes must be at least 1, got 0'):
        set_num_classes(load_config('det/mask_rcnn_convnext_t_3x'), 0)
