"""Checks of the data a config names, before a run starts: one line naming the file and the fix.

A missing data root, annotation file or image folder otherwise surfaces deep inside mmengine's Runner, minutes
later on a cluster and as a long traceback; a COCO json without ``bbox`` fails as ``KeyError: 'bbox'``
inside mmdet's parser, and one without ``annotations`` leaves an empty training set that waits forever for a
batch. These checks read the config alone (mmdet and mmseg datasets alike) and the annotation files, never
mmdet or mmseg; each raises :class:`~convnext_dense.errors.CliError`.
"""
import json
import os
import os.path as osp
from typing import Iterable, Iterator, List, Tuple

from mmengine.config import Config

from convnext_dense.checkpoint import is_remote
from convnext_dense.errors import CliError

# data_prefix keys of mmdet (img, seg) and mmseg (img_path, seg_map_path) datasets that must be folders.
PREFIX_KEYS = ('img', 'img_path', 'seg', 'seg_map_path')
#: Annotation files above this size are checked only after the run failed (a json.load of COCO train2017,
#: 450 MB, takes seconds and GBs on every rank); smaller ones are checked before the run starts.
UPFRONT_MAX_BYTES = 64 * 1024 * 1024
# Fields mmdet's CocoDataset and pycocotools read without a default.
COCO_REQUIRED = {
    'images': ('id', 'file_name', 'width', 'height'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox', 'area'),
    'categories': ('id', 'name'),
}


def leaf_datasets(dataset_cfg: dict, key: str) -> Iterator[Tuple[dict, str]]:
    """Yields ``(leaf dataset config, its config key)``, looking inside wrappers (Repeat, Concat, ...)."""
    if 'datasets' in dataset_cfg:
        for i, child in enumerate(dataset_cfg['datasets']):
            yield from leaf_datasets(child, f'{key}.datasets.{i}')
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'], f'{key}.dataset')
    else:
        yield dataset_cfg, key


def _join(data_root: str, path: str) -> str:
    return path if not data_root or osp.isabs(path) or is_remote(path) else osp.join(data_root, path)


def _expected_paths(dataset_cfg: dict) -> List[Tuple[str, str, bool]]:
    """``(path, config key suffix, is_folder)`` of the annotation file and image / label folders."""
    data_root = dataset_cfg.get('data_root') or ''
    expected = []
    if dataset_cfg.get('ann_file'):
        expected.append((_join(data_root, dataset_cfg['ann_file']), 'ann_file', False))
    prefixes = dataset_cfg.get('data_prefix') or {}
    for name in PREFIX_KEYS:
        if prefixes.get(name):
            expected.append((_join(data_root, prefixes[name]), f'data_prefix.{name}', True))
    return expected


def _layout_name(dataset_type: str) -> str:
    for known in ('Coco', 'ADE'):
        if known.lower() in dataset_type.lower():
            return {'Coco': 'COCO layout', 'ADE': 'ADE20K layout'}[known]
    return f'{dataset_type} layout'


def check_dataset(dataset_cfg: dict, key: str) -> None:
    """Raises :class:`CliError` naming the missing data root or file and the layout the dataset expects.

    Args:
        dataset_cfg: A dataloader's ``dataset`` config (wrappers are searched for their datasets).
        key: Its config key, e.g. ``train_dataloader.dataset``, used in the suggested ``--cfg-options``.
    """
    for leaf, leaf_key in leaf_datasets(dataset_cfg, key):
        data_root = leaf.get('data_root') or ''
        if is_remote(data_root) or leaf.get('backend_args'):
            continue
        expected = _expected_paths(leaf)
        layout = _layout_name(str(leaf.get('type', 'dataset')))
        wanted = ' and '.join(path + ('/' if is_dir and not path.endswith('/') else '')
                              for path, _, is_dir in expected)
        if data_root and not osp.isdir(data_root):
            raise CliError(f'data root {data_root} not found: expected {wanted} ({layout}); set '
                           f'--cfg-options {leaf_key}.data_root=PATH or link the data there')
        for path, suffix, is_dir in expected:
            if is_remote(path) or (osp.isdir(path) if is_dir else osp.isfile(path)):
                continue
            kind = 'folder' if is_dir else 'file'
            raise CliError(f'{kind} {path} ({leaf_key}.{suffix}) not found: expected {wanted} ({layout}); '
                           f'fix the data under {data_root or "."} or set --cfg-options {leaf_key}.{suffix}=...')


def check_evaluator(evaluator_cfg, key: str) -> None:
    """Raises :class:`CliError` if an evaluator's local ``ann_file`` (e.g. CocoMetric's) is missing."""
    for i, metric in enumerate(evaluator_cfg if isinstance(evaluator_cfg, (list, tuple)) else [evaluator_cfg]):
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
        if ann_file and not is_remote(ann_file) and not osp.isfile(ann_file):
            name = key if not isinstance(evaluator_cfg, (list, tuple)) else f'{key}.{i}'
            raise CliError(f'annotation file {ann_file} ({name}.ann_file) not found; set '
                           f'--cfg-options {name}.ann_file=PATH')


def _used_loaders(cfg: Config, splits: Iterable[str]) -> Iterator[Tuple[str, dict]]:
    """``(split, dataloader)`` of the splits a run uses (a ``None`` loader or loop, e.g. ``val_cfg=None``, is not)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and (split == 'train' or cfg.get(f'{split}_cfg')):
            yield split, loader


def check_data(cfg: Config, splits: Tuple[str, ...]) -> None:
    """Checks the datasets and evaluators of ``splits`` (``'train'``, ``'val'``, ``'test'``) in ``cfg``."""
    for split, loader in _used_loaders(cfg, splits):
        check_dataset(loader['dataset'], f'{split}_dataloader.dataset')
        if split != 'train' and cfg.get(f'{split}_evaluator'):
            check_evaluator(cfg[f'{split}_evaluator'], f'{split}_evaluator')


def check_coco_json(path: str) -> None:
    """Raises :class:`CliError` naming ``path`` and the first missing or malformed field.

    Args:
        path: A COCO instances json (``images``, ``annotations``, ``categories``).
    """
    try:
        with open(path, encoding='utf-8') as handle:
            coco = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(f'annotation file {path} is not readable json ({error}); regenerate or re-download it')
    if not isinstance(coco, dict):
        raise CliError(f'annotation file {path}: expected a COCO json object with images, annotations and '
                       f'categories, got a {type(coco).__name__}')
    fix = ('every COCO image needs id, file_name, width, height; every annotation id, image_id, category_id, '
           'bbox [x, y, w, h], area; every category id, name')
    for section, fields in COCO_REQUIRED.items():
        entries = coco.get(section)
        if not isinstance(entries, list):
            raise CliError(f'annotation file {path}: no "{section}" list at the top level; {fix}')
        for field in fields:
            lacking = [i for i, entry in enumerate(entries) if not isinstance(entry, dict) or field not in entry]
            if lacking:
                raise CliError(f'annotation file {path}: {section}[{lacking[0]}] has no "{field}" '
                               f'({len(lacking)} of {len(entries)} {section} lack it); {fix}')
    for i, annotation in enumerate(coco['annotations']):
        bbox = annotation['bbox']
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise CliError(f'annotation file {path}: annotations[{i}].bbox is {bbox!r}, expected [x, y, w, h] '
                           f'numbers; {fix}')


def coco_annotation_files(cfg: Config, splits: Iterable[str]) -> Iterator[Tuple[str, str]]:
    """Yields ``(local path, config key)`` of the COCO json files of ``splits``' datasets and evaluators."""
    for split, loader in _used_loaders(cfg, splits):
        for leaf, key in leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
            ann_file = leaf.get('ann_file')
            if 'coco' in str(leaf.get('type', '')).lower() and ann_file and str(ann_file).endswith('.json'):
                yield _join(leaf.get('data_root') or '', ann_file), f'{key}.ann_file'
        evaluators = cfg.get(f'{split}_evaluator') if split != 'train' else None
        for metric in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            if isinstance(metric, dict) and 'coco' in str(metric.get('type', '')).lower() and metric.get('ann_file'):
                yield metric['ann_file'], f'{split}_evaluator.ann_file'


def check_annotations(cfg: Config, splits: Iterable[str], upfront: bool = True) -> None:
    """Checks the local COCO annotation files of ``splits``.

    Args:
        cfg: The run's config.
        splits: ``'train'``, ``'val'``, ``'test'``.
        upfront: Before the run: skip files above :data:`UPFRONT_MAX_BYTES`. After a failure: check all.

    Raises:
        CliError: The first file with a missing or malformed field, named with the field.
    """
    checked = set()
    for path, _ in coco_annotation_files(cfg, splits):
        if path in checked or is_remote(path) or not os.path.isfile(path):
            continue  # a missing file is check_data's business
        checked.add(path)
        if not upfront or os.path.getsize(path) <= UPFRONT_MAX_BYTES:
            check_coco_json(path)
