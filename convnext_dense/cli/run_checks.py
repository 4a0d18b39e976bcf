"""Checks of ``train`` and ``test`` that read more than the config: the contents of COCO
annotation files, and a checkpoint against the model it is loaded into.

Both turn failures that mmengine reports late, deep or not at all into one :class:`CliError` naming the file
and the problem: a COCO json without ``bbox`` fails as ``KeyError: 'bbox'`` inside mmdet's parser, one
without ``annotations`` leaves an empty training set that waits forever for a batch, and mmengine loads a
checkpoint of another model with ``strict=False``, so ``tools/test.py`` would evaluate random weights.
"""
import json
import os
from typing import Iterable, Optional, Tuple

from convnext_dense.cli.checks import CliError, _datasets, _join, is_remote

#: Annotation files above this size are checked only after the run failed (a json.load of COCO train2017,
#: 450 MB, takes seconds and GBs on every rank); smaller ones are checked before the run starts.
UPFRONT_MAX_BYTES = 64 * 1024 * 1024

# Fields mmdet's CocoDataset and pycocotools read without a default.
COCO_REQUIRED = {
    'images': ('id', 'file_name', 'width', 'height'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox', 'area'),
    'categories': ('id', 'name'),
}


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


def coco_annotation_files(cfg, splits: Iterable[str]) -> Iterable[Tuple[str, str]]:
    """Yields ``(local path, config key)`` of the COCO json files of ``splits``' datasets and evaluators."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split != 'train' and not cfg.get(f'{split}_cfg')):
            continue
        for leaf, key in _datasets(loader['dataset'], f'{split}_dataloader.dataset'):
            ann_file = leaf.get('ann_file')
            if 'coco' in str(leaf.get('type', '')).lower() and ann_file and str(ann_file).endswith('.json'):
                yield _join(leaf.get('data_root') or '', ann_file), f'{key}.ann_file'
        evaluators = cfg.get(f'{split}_evaluator') if split != 'train' else None
        for metric in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            if isinstance(metric, dict) and 'coco' in str(metric.get('type', '')).lower() and metric.get('ann_file'):
                yield metric['ann_file'], f'{split}_evaluator.ann_file'


def check_annotations(cfg, splits: Iterable[str], upfront: bool = True) -> None:
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
            continue  # missing files are convnext_dense.cli.checks' business
        checked.add(path)
        if not upfront or os.path.getsize(path) <= UPFRONT_MAX_BYTES:
            check_coco_json(path)


def check_checkpoint_fits(model, checkpoint: str, purpose: str) -> None:
    """Raises :class:`CliError` unless ``checkpoint`` holds every parameter of ``model`` with its shape.

    mmengine loads checkpoints non-strictly and only warns, which is right for fine-tuning (``load_from``)
    but wrong for ``--resume`` and ``tools/test.py``: they must continue or evaluate the same model.

    Args:
        model: The built model (a DDP or TTA wrapper is looked through).
        checkpoint: Local path; remote checkpoints are not checked.
        purpose: How the checkpoint is used, for the message (``'--resume'``, ``'CHECKPOINT'``).
    """
    if not checkpoint or is_remote(checkpoint) or not os.path.isfile(checkpoint):
        return
    from convnext_dense.apis.inference import check_fits, read_checkpoint, state_dict_of
    from convnext_dense.errors import ConvNeXtDenseError
    try:
        check_fits(model, state_dict_of(read_checkpoint(checkpoint)), checkpoint, purpose)
    except ConvNeXtDenseError as error:
        raise CliError(str(error)) from error


def resume_checkpoint(cfg) -> Optional[str]:
    """The checkpoint a ``resume=True`` run continues from: ``load_from``, or ``work_dir/last_checkpoint``."""
    if cfg.get('load_from'):
        return cfg.load_from
    from mmengine.runner import find_latest_checkpoint
    return find_latest_checkpoint(cfg.work_dir)
