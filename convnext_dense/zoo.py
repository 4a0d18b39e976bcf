"""The model zoo: the paper's numbers and the released trained weights of each config, read from
``configs/det/metafile.yml`` and ``configs/seg/metafile.yml``.

The metafiles (OpenMMLab's model-index format) are the one home of the paper's parameters, FLOPs, box / mask
AP, mIoU and pretrained-weights URL of each paper config, and of the trained models released for it: its
``Weights`` list names each file's URL, who released it, where it is published, the results it was reported
with and, optionally, its SHA-256 (``NAME-<hex>.pth`` file names carry a prefix of it too). The FLOPs tools,
the ``zoo`` command, the tests and the README read them from here. Pure: reading only, no mmdet, mmseg or
torch import.
"""
import dataclasses
import difflib
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


@dataclasses.dataclass(frozen=True)
class ReleasedWeights:
    """One released trained model of a config (an entry of its ``Weights`` list in the metafile).

    Args:
        url: Where the file is published.
        released_by: Who trained and published it (``'ConvNeXt authors'``, ``'OpenMMLab'``).
        source: The page that publishes the URL and the results.
        results: ``(metric, value)`` pairs it was reported with (the metafile's ``Results`` keys).
        written_by: The toolkit that wrote the file (``'mmdet 2.x (mmcv 1.x)'``): its layout.
        upstream_config: The releasing project's config name, when it has one of its own.
        sha256: SHA-256 (full or a prefix) given by the metafile; None when only the file name carries one.
    """

    url: str
    released_by: str
    source: str
    results: Tuple[Tuple[str, float], ...] = ()
    written_by: str = ''
    upstream_config: str = ''
    sha256: Optional[str] = None

    @property
    def metrics(self) -> Dict[str, float]:
        """``results`` as a dict, e.g. ``{'box AP': 50.4, 'mask AP': 43.7}``."""
        return dict(self.results)

    @property
    def expected_sha256(self) -> Optional[str]:
        """The SHA-256 (or prefix) a download is checked against: the metafile's, else the file name's."""
        from convnext_dense.checkpoint.download import sha256_in_name  # imports torch: only when asked
        return self.sha256 or sha256_in_name(self.url)


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


def _weights(entries, path: str, name: str) -> Tuple[ReleasedWeights, ...]:
    released = []
    for entry in entries or ():
        missing = [key for key in ('URL', 'Released By', 'Source', 'Results') if key not in entry]
        if missing:
            raise ConfigError(f'zoo: {path}, model {name}: a Weights entry lacks {", ".join(missing)}; each entry '
                              f'needs URL, Released By, Source and Results.')
        sha256 = entry.get('SHA256')
        released.append(ReleasedWeights(
            url=entry['URL'], released_by=entry['Released By'], source=entry['Source'],
            results=tuple((str(k), float(v)) for k, v in entry['Results'].items()),
            written_by=entry.get('Written By', ''), upstream_config=entry.get('Upstream Config', ''),
            sha256=None if sha256 is None else str(sha256).lower()))
    return tuple(released)


@functools.lru_cache(maxsize=None)
def _read(path: str) -> Dict[str, dict]:
    with open(path, encoding='utf-8') as f:
        models = yaml.safe_load(f)['Models']
    records = {}
    for model in models:
        meta = model['Metadata']
        # None where nothing is published (the ConvNeXt V2 dense configs).
        record = dict(config=model['Config'], params=_number(meta.get('Parameters')),
                      flops=_number(meta.get('FLOPs')), pretrained=meta['Pretrained Weights'],
                      pretraining=meta.get('Pretrained', ''), architecture=tuple(meta.get('Architecture', ())),
                      weights=_weights(model.get('Weights'), path, model['Name']))
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
        ``{stem: dict(config, params, flops, pretrained, pretraining, architecture, weights, <metric>: value,
        ...)}`` (params and flops None where none are published) with metrics ``box AP`` / ``mask AP`` (det)
        or ``mIoU`` / ``mIoU (ms+flip)`` (seg); ``weights`` is a tuple of :class:`ReleasedWeights`, the default
        file first, empty when no trained model is released. A fresh copy: callers may change it.
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


def find(name: str, configs_dir: Union[str, Path, None] = None) -> Optional[Tuple[str, str, dict]]:
    """The zoo model a name refers to, or None when it is none of them.

    Args:
        name: A config stem (``'cascade_convnext_t_3x'``), optionally with its task folder, ``configs/`` and
            ``.py`` (``'det/cascade_convnext_t_3x'``).
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).

    Returns:
        ``(task, stem, record)`` with the record of :func:`models`.
    """
    text = str(name)
    text = text[len('configs/'):] if text.startswith('configs/') else text
    text = text[:-len('.py')] if text.endswith('.py') else text
    task, _, stem = text.rpartition('/')
    for candidate in ((task,) if task else TASKS):
        if candidate in TASKS and metafile(candidate, configs_dir).is_file():
            record = models(candidate, configs_dir).get(stem)
            if record is not None:
                return candidate, stem, record
    return None


def config_file(record: dict, configs_dir: Union[str, Path, None] = None) -> Path:
    """The config file of a zoo record (its ``Config`` path is relative to the configs folder's parent).

    Args:
        record: A record of :func:`models` or :func:`find`.
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).
    """
    return Path(configs_dir or config_root()).parent / record['config']


def released_weights(name: str, released_by: Optional[str] = None,
                     configs_dir: Union[str, Path, None] = None) -> ReleasedWeights:
    """The trained weights to use for a zoo model: its first ``Weights`` entry, or the one of ``released_by``.

    Args:
        name: A zoo model name (see :func:`find`).
        released_by: Prefix of the publisher, case-insensitive (``'openmmlab'``, ``'authors'``); None: the default.
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).

    Raises:
        ConfigError: An unknown name (close names listed), a model without released weights, or no file of
            ``released_by``.
    """
    found = find(name, configs_dir)
    if found is None:
        known = [stem for task in TASKS if metafile(task, configs_dir).is_file()
                 for stem in models(task, configs_dir)]
        close = difflib.get_close_matches(str(name).rsplit('/', 1)[-1], known, n=3, cutoff=0.5)
        hint = f'close names: {", ".join(close)}' if close else 'list them with: convnext-dense zoo'
        raise ConfigError(f'zoo: no model named {name!r}; {hint}.')
    task, stem, record = found
    weights = record['weights']
    if not weights:
        raise ConfigError(f'zoo: {stem} has no released trained weights; train it (convnext-dense train '
                          f'{task}/{stem}) or pass a checkpoint file or URL with its config.')
    if released_by is None:
        return weights[0]
    wanted = released_by.lower()
    for entry in weights:
        if entry.released_by.lower().startswith(wanted) or entry.released_by.lower().split()[-1].startswith(wanted):
            return entry
    offered = ', '.join(entry.released_by for entry in weights)
    raise ConfigError(f'zoo: {stem} has no weights released by {released_by!r}; it has: {offered}.')
