"""Checks of the data a config names, before a run starts: one line naming the file and the fix.

A missing data root, annotation file or image folder otherwise surfaces deep inside mmengine's Runner, minutes
later on a cluster and as a long traceback; a COCO json without ``bbox`` fails as ``KeyError: 'bbox'``
inside mmdet's parser, and one without ``annotations`` leaves an empty training set that waits forever for a
batch. Two mistakes would not even fail: classes listed in another order than the json's categories under
mmdet's ``CocoDataset`` (every prediction named wrongly), and heads whose ``num_classes`` is not the number of
classes (a Cascade's three box heads are a list that a single override misses). These checks read the config
and the annotation files (mmdet and mmseg datasets alike; mmdet's or mmseg's registry only for the default
classes of a dataset type); each raises :class:`~convnext_dense.errors.CliError`, or the
:class:`~convnext_dense.errors.ConfigError` of :func:`~convnext_dense.datasets.class_order.category_ids` for a
class the json has no category of.
"""
import json
import os
import os.path as osp
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from mmengine.config import Config

from convnext_dense.checkpoint import is_remote
from convnext_dense.config import task_of
from convnext_dense.config_edits import head_num_classes, leaf_datasets, split_metrics
from convnext_dense.datasets.class_order import category_ids, json_order, shorten
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
            raise CliError(f'data root {data_root} not found: expected {wanted} ({layout}); pass --data-root DIR '
                           f'(moves every split and evaluator) or link the data there')
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


def check_coco_json(path: str) -> List[dict]:
    """Returns the ``categories`` of a COCO json; raises :class:`CliError` naming ``path`` and the first missing
    or malformed field.

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
    return coco['categories']


def configured_classes(dataset_cfg: dict) -> Optional[Tuple[str, ...]]:
    """``metainfo.classes`` a dataset config sets (its first leaf's, as mmengine's wrappers take), or None."""
    leaf = next(leaf_datasets(dataset_cfg, ''))[0]
    metainfo = leaf.get('metainfo')
    return tuple(metainfo['classes']) if isinstance(metainfo, dict) and metainfo.get('classes') else None


def coco_annotation_files(cfg: Config, splits: Iterable[str]) -> Iterator[Tuple[str, str, str, Optional[tuple]]]:
    """Yields ``(local path, config key, type, classes)`` of the COCO json files of ``splits``' datasets and
    evaluators: the dataset's or metric's ``type`` and the ``metainfo.classes`` its labels are read with."""
    for split, loader in _used_loaders(cfg, splits):
        for leaf, key in leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
            ann_file = leaf.get('ann_file')
            if 'coco' in str(leaf.get('type', '')).lower() and ann_file and str(ann_file).endswith('.json'):
                yield (_join(leaf.get('data_root') or '', ann_file), f'{key}.ann_file', str(leaf['type']),
                       configured_classes(leaf))
        for metric, key in split_metrics(cfg, split):
            if 'coco' in str(metric.get('type', '')).lower() and metric.get('ann_file'):
                yield metric['ann_file'], f'{key}.ann_file', str(metric['type']), configured_classes(loader['dataset'])


def check_class_order(categories: List[dict], classes: Tuple[str, ...], path: str, key: str, kind: str) -> None:
    """Refuses ``classes`` that name no category of the json, or that mmdet's ``CocoDataset`` / ``CocoMetric``
    (``kind``) would number in the json's order instead of theirs (see :mod:`convnext_dense.datasets.class_order`).

    Raises:
        ConfigError: A class the json has no single category of.
        CliError: mmdet's class and two orders: the labels would be named wrongly.
    """
    category_ids(categories, classes, path)
    order = json_order(categories, classes)
    if order == tuple(classes) or kind.startswith('convnext_dense.'):
        return
    first = next(i for i, (theirs, ours) in enumerate(zip(order, classes)) if theirs != ours)
    raise CliError(f"{key.rsplit('.', 1)[0]}: mmdet's {kind} numbers labels in the order of the categories of "
                   f"{path}, not of metainfo.classes: label {first} would be trained as {order[first]!r} and named "
                   f"{classes[first]!r}; use type='convnext_dense.{kind.split('.')[-1]}' for every CocoDataset and "
                   f"CocoMetric (labels follow classes) or list classes in the json's order ({shorten(order)})")


def check_annotations(cfg: Config, splits: Iterable[str], upfront: bool = True) -> None:
    """Checks the local COCO annotation files of ``splits``: their fields, and the label order of the datasets
    and metrics that read them.

    Args:
        cfg: The run's config.
        splits: ``'train'``, ``'val'``, ``'test'``.
        upfront: Before the run: skip files above :data:`UPFRONT_MAX_BYTES`. After a failure: check all.

    Raises:
        CliError: The first file with a missing or malformed field, named with the field, or classes whose
            labels would be named wrongly (:func:`check_class_order`).
    """
    categories: Dict[str, Optional[List[dict]]] = {}
    for path, key, kind, classes in coco_annotation_files(cfg, splits):
        if is_remote(path) or not os.path.isfile(path):
            continue  # a missing file is check_data's business
        if path not in categories:
            small = os.path.getsize(path) <= UPFRONT_MAX_BYTES
            categories[path] = check_coco_json(path) if small or not upfront else None
        if categories[path] is not None and classes:
            check_class_order(categories[path], classes, path, key, kind)


def dataset_classes(dataset_cfg: dict, task: str) -> Optional[Tuple[str, ...]]:
    """The classes a leaf dataset config will have: its ``metainfo``'s, else its type's default (mmdet's or
    mmseg's registry), None when neither is known."""
    classes = configured_classes(dataset_cfg)
    if classes:
        return classes
    try:
        if task == 'det':
            from mmdet.registry import DATASETS
        else:
            from mmseg.registry import DATASETS
        dataset_type = DATASETS.get(str(dataset_cfg.get('type')))
    except (ImportError, KeyError):
        return None
    default = (getattr(dataset_type, 'METAINFO', None) or {}).get('classes')
    return tuple(default) if default else None


def check_num_classes(cfg: Config, splits: Iterable[str]) -> None:
    """Refuses heads whose ``num_classes`` differs from the number of classes of the datasets of ``splits``.

    Otherwise a detector trained on 5 classes with 80-way heads names its predictions from 80 (COCO's names or
    an index error), and one of a Cascade's heads left at 80 trains on and predicts other labels than its
    siblings.

    Raises:
        CliError: The first head and dataset that disagree, with the option that fixes it.
    """
    heads = [(key, number) for key, number in head_num_classes(cfg) if number is not None]
    if not heads:
        return
    task = task_of(cfg)
    for split, loader in _used_loaders(cfg, splits):
        for leaf, key in leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
            classes = dataset_classes(leaf, task)
            wrong = [(head, number) for head, number in heads if classes and number != len(classes)]
            if wrong:
                head, number = wrong[0]
                raise CliError(f'{head} is {number} but {key} has {len(classes)} classes ({shorten(classes)}); '
                               f'pass --num-classes {len(classes)} (sets every head) or list {number} names in '
                               f'{key}.metainfo.classes')
