"""Edits of a loaded config that reach every place a setting lives: the data root, the number of classes.

A config names its data in many places: each split's dataset (inside wrappers such as ``RepeatDataset``), its
annotation file and image folders, and the evaluator's ``ann_file``, which mmdet's ``CocoMetric`` does not join
with any root. A config's number of classes lives in every classifying head: one box head of a Mask R-CNN,
three of a Cascade (a list), the mask head, UperNet's decode and auxiliary heads. Overriding one of these with
``--cfg-options`` leaves the others behind, and a dict given for a list (a Cascade's ``bbox_head``) replaces it.
:func:`move_data_root` and :func:`set_num_classes` change all of them; ``train`` and ``test`` expose them as
``--data-root`` and ``--num-classes``.
"""
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config

from convnext_dense.errors import ConfigError

#: The splits a config may define, each as ``{split}_dataloader`` and (but train) ``{split}_evaluator``.
SPLITS = ('train', 'val', 'test')
#: Where the classifying heads of our detectors and segmentors live in ``model`` (a head may be a list).
HEAD_KEYS = ('roi_head.bbox_head', 'roi_head.mask_head', 'bbox_head', 'decode_head', 'auxiliary_head')


def leaf_datasets(dataset_cfg: dict, key: str) -> Iterator[Tuple[dict, str]]:
    """Yields ``(leaf dataset config, its config key)``, looking inside wrappers (Repeat, Concat, ...)."""
    if 'datasets' in dataset_cfg:
        for i, child in enumerate(dataset_cfg['datasets']):
            yield from leaf_datasets(child, f'{key}.datasets.{i}')
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'], f'{key}.dataset')
    else:
        yield dataset_cfg, key


def split_datasets(cfg: Config, splits: Tuple[str, ...] = SPLITS) -> Iterator[Tuple[str, dict, str]]:
    """Yields ``(split, leaf dataset config, its config key)`` of every dataloader of ``splits`` the config has."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            for leaf, key in leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
                yield split, leaf, key


def split_metrics(cfg: Config, split: str) -> Iterator[Tuple[dict, str]]:
    """Yields ``(metric config, its config key)`` of the split's evaluator (one metric or a list)."""
    evaluator = cfg.get(f'{split}_evaluator') if split != 'train' else None
    if isinstance(evaluator, (list, tuple)):
        for i, metric in enumerate(evaluator):
            if isinstance(metric, dict):
                yield metric, f'{split}_evaluator.{i}'
    elif isinstance(evaluator, dict):
        yield evaluator, f'{split}_evaluator'


def _rebase(path: str, old_root: str, new_root: str) -> Optional[str]:
    """``path`` moved from under ``old_root`` to under ``new_root``; None when it is not under ``old_root``."""
    if not old_root:
        return None if osp.isabs(path) else osp.join(new_root, path)
    relative = osp.relpath(osp.normpath(path), osp.normpath(old_root))
    if relative == '.':
        return new_root
    return None if relative.startswith('..') or osp.isabs(path) != osp.isabs(old_root) else \
        osp.join(new_root, relative)


def move_data_root(cfg: Config, new_root: str) -> List[str]:
    """Points every split's datasets and evaluators (``ann_file``) at ``new_root``, in place.

    Each dataset gets ``data_root=new_root``, which moves its relative annotation file and folders; absolute
    paths and evaluator files under the old data root move with it. A path outside the old data root (an
    evaluator's file kept elsewhere on purpose, say) is kept and listed in the returned notes.

    Args:
        cfg: A loaded config (detection or segmentation).
        new_root: The folder that holds the data in the config's layout.

    Returns:
        One note per kept path, ``'KEY=PATH'``.

    Raises:
        ConfigError: The config has no dataset, or its datasets use several data roots (one option cannot
            tell which goes where).
    """
    leaves = list(split_datasets(cfg))
    if not leaves:
        raise ConfigError(f'--data-root: {cfg.filename} has no train, val or test dataset to move')
    roots = sorted({str(leaf.get('data_root') or '') for _, leaf, _ in leaves})
    if len(roots) > 1:
        raise ConfigError(f'--data-root: the datasets of {cfg.filename} use several data roots '
                          f'({", ".join(repr(root) for root in roots)}); set each with --cfg-options KEY.data_root=DIR')
    old_root = roots[0]
    updates: Dict[str, Any] = {}
    kept: List[str] = []

    def move(path: Any, key: str, absolute_only: bool) -> None:
        if not isinstance(path, str) or not path or (absolute_only and not osp.isabs(path)):
            return
        moved = _rebase(path, old_root, new_root)
        if moved is None:
            kept.append(f'{key}={path}')
        else:
            updates[key] = moved

    for split, leaf, key in leaves:
        updates[f'{key}.data_root'] = new_root
        move(leaf.get('ann_file'), f'{key}.ann_file', absolute_only=True)  # relative ones follow data_root
        for name, prefix in (leaf.get('data_prefix') or {}).items():
            move(prefix, f'{key}.data_prefix.{name}', absolute_only=True)
    for split in SPLITS:
        for metric, key in split_metrics(cfg, split):
            move(metric.get('ann_file'), f'{key}.ann_file', absolute_only=False)
    if isinstance(cfg.get('data_root'), str):
        updates['data_root'] = new_root  # the base configs' variable, for the dumped config
    cfg.merge_from_dict(updates, allow_list_keys=True)  # all computed first: val and test may share nodes
    return kept


def _heads(model_cfg: dict) -> Iterator[Tuple[dict, str]]:
    """Yields ``(head config, its key under model)`` of every classifying head, list entries one by one."""
    for dotted in HEAD_KEYS:
        node: Any = model_cfg
        for part in dotted.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            yield node, dotted
        elif isinstance(node, (list, tuple)):
            for i, head in enumerate(node):
                if isinstance(head, dict):
                    yield head, f'{dotted}.{i}'


def head_num_classes(cfg: Config) -> List[Tuple[str, Optional[int]]]:
    """``(config key, num_classes)`` of every classifying head of ``cfg.model``, e.g.
    ``('model.roi_head.bbox_head.2.num_classes', 80)``; None where a head leaves it to its default."""
    return [(f'model.{key}.num_classes', head.get('num_classes')) for head, key in _heads(cfg.model)]


def set_num_classes(cfg: Config, num_classes: int) -> List[str]:
    """Sets ``num_classes`` of every classifying head (each stage of a Cascade, the mask head, UperNet's decode
    and auxiliary heads), in place; returns the keys it set.

    The datasets' ``metainfo.classes`` must list as many classes: ``train`` and ``test`` check that before a
    run starts (:func:`convnext_dense.cli.data_checks.check_num_classes`).

    Raises:
        ConfigError: ``num_classes`` below 1, or a model without any of the heads in :data:`HEAD_KEYS`.
    """
    if num_classes < 1:
        raise ConfigError(f'--num-classes must be at least 1, got {num_classes}')
    keys = [key for key, _ in head_num_classes(cfg)]
    if not keys:
        raise ConfigError(f'--num-classes: the model of {cfg.filename} has none of the heads '
                          f'{", ".join(HEAD_KEYS)}; set its num_classes with --cfg-options')
    cfg.merge_from_dict({key: num_classes for key in keys}, allow_list_keys=True)
    return keys
