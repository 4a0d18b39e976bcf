"""The model zoo: the paper's numbers and the released trained weights of each config, read from
``configs/det/metafile.yml`` and ``configs/seg/metafile.yml``.

The metafiles (OpenMMLab's model-index format) are the one home of the paper's parameters, FLOPs, box / mask
AP, mIoU and pretrained-weights URL of each paper config, and of the trained models released for it: its
``Weights`` list names each file's URL, who released it, where it is published, the results it was reported
with and, optionally, its SHA-256 (``NAME-<hex>.pth`` file names carry a prefix of it too). The FLOPs tools,
the ``zoo`` command, the tests and the README read them from here.

:func:`resolve` is the one place where what a user writes for a model becomes a config and a local checkpoint
(``infer``, ``test``, ``export``, ``convert``, ``apis.init_model``):

- a **model name**, a bare config stem as ``convnext-dense zoo`` lists it (``cascade_convnext_t_3x``): its
  config and its released trained weights, downloaded once into the cache (``checkpoint/download.py``);
- a **config** (a path, or a shipped config's name with its folder, ``det/cascade_convnext_t_3x``): that config
  alone, with the weights given beside it;
- **weights**: an ``http(s)://`` or ``file://`` URL (downloaded into the cache, mirror applied), a local path,
  or another mmengine scheme (``open-mmlab://``, left to mmengine); given with a model name they replace its
  released file.

Everything but :func:`resolve` is pure: reading only, no mmdet, mmseg or torch import.
"""
import dataclasses
import difflib
import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

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


def is_model_name(text: Union[str, Path, None]) -> bool:
    """Whether ``text`` is written as a model name: a bare stem (no folder, no suffix) that is no existing file.

    Args:
        text: What the user wrote where a model or config is asked for.
    """
    if text is None or not isinstance(text, (str, Path)):
        return False
    text = str(text)
    # ':' marks a scheme or a Hugging Face Hub name ('hf-hub:ORG/NAME'), never a model name.
    return (bool(text) and '/' not in text and '\\' not in text and '.' not in text and ':' not in text
            and not Path(text).exists())


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A config and the checkpoint to load into it, as :func:`resolve` found them.

    Args:
        config: The config: a zoo model's file, else what was given (a path or a shipped config's name).
        checkpoint: A local file (downloaded when a URL or a released file), another mmengine scheme's URL,
            or None when no weights were named.
        name: The zoo model name when one was given, else None.
        released: The released file used (its published results), None when the weights came from elsewhere.
    """

    config: str
    checkpoint: Optional[str]
    name: Optional[str] = None
    released: Optional[ReleasedWeights] = None


def resolve_weights(weights: Union[str, Path], sha256: Optional[str] = None, mirror: Optional[str] = None,
                    progress: Optional[bool] = True) -> str:
    """A local path for ``weights``: a URL downloaded into the cache (the cached copy when there), else as given.

    Args:
        weights: An http(s) / file URL, a local path, or another mmengine scheme (``open-mmlab://``, kept).
        sha256: Expected SHA-256 (or prefix) of a downloaded file; None: the one its file name carries.
        mirror: ``--weights-mirror``; None reads ``$CONVNEXT_DENSE_WEIGHTS_MIRROR``.
        progress: Show the download's progress line (None: only on a terminal).

    Raises:
        DownloadError: The file could not be downloaded (one line: URL, reason, fallback).
    """
    from convnext_dense.checkpoint.download import download, is_url  # imports torch: only when asked
    from convnext_dense.checkpoint.hub import is_hub_name
    text = str(weights)
    if is_url(text):
        return str(download(text, sha256, mirror=mirror, progress=progress))
    # Another scheme, and a Hugging Face Hub name (read through huggingface_hub's cache), are kept as written.
    return text if '://' in text or is_hub_name(text) else str(Path(text).expanduser())


def resolve(model: Union[str, Path], weights: Union[str, Path, None] = None, *, mirror: Optional[str] = None,
            released_by: Optional[str] = None, progress: Optional[bool] = True,
            configs_dir: Union[str, Path, None] = None) -> ResolvedModel:
    """The config and local checkpoint that a model name, or a config with weights, stands for.

    Args:
        model: A zoo model name (``'upernet_convnext_t_512_160k'``), a config path or a config name with its
            folder (``'seg/upernet_convnext_t_512_160k'``).
        weights: A URL or local path of the checkpoint; None: a model name's released file, a config's none.
        mirror: ``--weights-mirror``; None reads ``$CONVNEXT_DENSE_WEIGHTS_MIRROR``.
        released_by: Which released file of a model name (``'openmmlab'``); None: its default (first) one.
        progress: Show the download's progress line (None: only on a terminal).
        configs_dir: The configs folder; defaults to the shipped one (``config.config_root``).

    Raises:
        ConfigError: An unknown model name (close names listed) or one without released weights, when no
            ``weights`` are given.
        DownloadError: The weights could not be downloaded.
    """
    if not is_model_name(model):
        checkpoint = None if weights is None else resolve_weights(weights, mirror=mirror, progress=progress)
        return ResolvedModel(config=str(model), checkpoint=checkpoint)
    found = find(str(model), configs_dir)
    if found is None or weights is None:
        released = released_weights(str(model), released_by, configs_dir)  # an unknown name: close ones listed
        checkpoint = resolve_weights(released.url, released.sha256, mirror, progress)
    else:
        released, checkpoint = None, resolve_weights(weights, mirror=mirror, progress=progress)
    _, stem, record = find(str(model), configs_dir)
    return ResolvedModel(config=str(config_file(record, configs_dir)), checkpoint=checkpoint, name=stem,
                         released=released)


#: The metafiles' metric names and the keys mmdet's CocoMetric / mmseg's IoUMetric report them under.
_MEASURED_KEYS = {'box AP': ('bbox_mAP',), 'mask AP': ('segm_mAP',), 'mIoU': ('mIoU',)}


def beside_published(metrics: Dict[str, float], released: ReleasedWeights) -> List[str]:
    """Measured metrics with the published value of the same metric beside them (pure).

    Args:
        metrics: What ``runner.test()`` returned (``'coco/bbox_mAP': 0.504``, ``'mIoU': 46.0``).
        released: The released file that was evaluated.

    Returns:
        One line per published metric that was measured, e.g. ``"coco/bbox_mAP 0.504 (published 50.4, ConvNeXt
        authors)"``; COCO's mAPs are fractions, the papers' percentages.
    """
    lines = []
    for metric, value in released.results:
        for key, measured in metrics.items():
            if str(key).rsplit('/', 1)[-1] in _MEASURED_KEYS.get(metric, ()):
                lines.append(f"{key} {float(measured):.3f} (published {value:g}, {released.released_by})")
    return lines
