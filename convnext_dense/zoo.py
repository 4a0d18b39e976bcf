"""The paper's numbers per config, read from ``configs/det/metafile.yml`` and ``configs/seg/metafile.yml``.

The metafiles (OpenMMLab's model-index format) are the one home of the paper's parameters, FLOPs, box / mask
AP, mIoU and pretrained-weights URL of each paper config; the FLOPs tools, the tests and the README read them
from here. Pure: reading only, no mmdet or mmseg import.
"""
import functools
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import yaml

from convnext_dense.config import config_root
from convnext_dense.errors import ConfigError

TASKS = ('det', 'seg')


def metafile(task: str, configs_dir: Union[str, Path, None] = None) -> Path:
    """Path of a task's metafile.

    Args:
        task: ``'det'`` or ``'seg'``.
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).
    """
    if task not in TASKS:
        raise ConfigError(f'zoo: unknown task {task!r}; choose one of {TASKS}.')
    return Path(configs_dir or config_root()) / task / 'metafile.yml'


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


@functools.lru_cache(maxsize=None)
def _read(path: str) -> Dict[str, dict]:
    with open(path, encoding='utf-8') as f:
        models = yaml.safe_load(f)['Models']
    records = {}
    for model in models:
        meta = model['Metadata']
        # None where nothing is published (the ConvNeXt V2 dense configs).
        record = dict(config=model['Config'], params=_number(meta.get('Parameters')),
                      flops=_number(meta.get('FLOPs')), pretrained=meta['Pretrained Weights'])
        for result in model.get('Results') or ():
            record.update(result['Metrics'])
        records[model['Name']] = record
    return records


def models(task: str, configs_dir: Union[str, Path, None] = None) -> Dict[str, dict]:
    """The paper's entries of a task, by config stem.

    Args:
        task: ``'det'`` or ``'seg'``.
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).

    Returns:
        ``{stem: dict(config, params, flops, pretrained, <metric>: value, ...)}`` (params and flops None where
        none are published) with metrics ``box AP`` /
        ``mask AP`` (det) or ``mIoU`` / ``mIoU (ms+flip)`` (seg). A fresh copy: callers may change it.
    """
    path = metafile(task, configs_dir)
    if not path.is_file():
        raise ConfigError(f'zoo: {path} not found; the paper numbers live in configs/{task}/metafile.yml of a '
                          f'source checkout.')
    return {stem: dict(record) for stem, record in _read(str(path)).items()}


def paper_complexity(task: str, configs_dir: Union[str, Path, None] = None) -> Dict[str, Tuple[float, float]]:
    """``{config stem: (params, FLOPs)}`` of the paper's table for a task (configs with published values).

    Args:
        task: ``'det'`` or ``'seg'``.
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).
    """
    return {stem: (r['params'], r['flops']) for stem, r in models(task, configs_dir).items()
            if r['params'] is not None and r['flops'] is not None}


def lookup(stem: str) -> Optional[dict]:
    """The paper's entry for a config stem of either task, or None when it is not a paper config.

    Args:
        stem: A config file name without ``.py`` (e.g. ``'cascade_convnext_t_3x'``).
    """
    for task in TASKS:
        record = models(task).get(stem)
        if record is not None:
            return record
    return None
