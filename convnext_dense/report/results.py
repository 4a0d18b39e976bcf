"""The results of ``convnext-dense test --out`` and the note beside them that the report reads.

``test --out`` writes a detector's predictions as mmdet's ``DumpDetResults`` pickle (per image: ``img_id``,
``img_path``, ``ori_shape`` and ``pred_instances`` with boxes, scores, labels and RLE masks) and a
segmentor's as mmseg's label-map PNGs (one per image, named after it). Neither says which dataset, config or
checkpoint made them, so ``test --out`` also writes ``<out>.meta.json`` beside them
(:func:`write_results_info`): the task, the merged test config, the checkpoint and the metrics the test
printed. The report evaluates the predictions against the data that config names; without the note (a file
from mmdet's own ``tools/test.py``) it uses the work dir's config.

Pickles can run code when loaded: :func:`load_detections` reads them with an unpickler that knows tensors,
numpy arrays and plain containers only.
"""
import codecs
import collections
import io
import json
import pickle
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import is_main_process

from convnext_dense.config import task_of
from convnext_dense.errors import ReportError
from convnext_dense.io import TRAINING_CHECKPOINT_GLOBALS, atomic_write

#: Beside ``results.pkl`` (or a folder ``pred_maps``): ``results.pkl.meta.json`` (``pred_maps.meta.json``).
META_SUFFIX = '.meta.json'
META_FORMAT = 1
TASKS = ('det', 'seg')


def meta_path(results: Union[str, Path]) -> Path:
    """Where the note of a results file or folder lies: beside it, ``<name>.meta.json``."""
    path = Path(str(results).rstrip('/\\'))
    return path.with_name(path.name + META_SUFFIX)


def _plain_metrics(metrics: Optional[Dict[str, Any]]) -> Dict[str, float]:
    plain = {}
    for key, value in (metrics or {}).items():
        try:
            plain[key] = float(value)
        except (TypeError, ValueError):
            continue  # tables and strings some metrics return beside their numbers
    return plain


def write_results_info(cfg: Config, out: Union[str, Path], checkpoint: str,
                       metrics: Optional[Dict[str, Any]] = None) -> Optional[Path]:
    """Writes ``<out>.meta.json`` beside the results ``test --out`` wrote (on the main process only).

    Args:
        cfg: The merged config the test ran with (``--cfg-options`` applied).
        out: The ``--out`` path: a ``.pkl`` file (detection) or a folder of label maps (segmentation).
        checkpoint: The checkpoint the test loaded.
        metrics: What ``Runner.test()`` returned.

    Returns:
        The note's path, or None on a process other than the main one.
    """
    if not is_main_process():
        return None
    info = dict(format=META_FORMAT, task=task_of(cfg), results=str(Path(out).resolve()),
                config_file=cfg.filename, config=cfg.pretty_text, checkpoint=str(checkpoint),
                metrics=_plain_metrics(metrics), written=datetime.now().isoformat(timespec='seconds'))
    path = meta_path(out)
    atomic_write(json.dumps(info, indent=1, sort_keys=True), path)
    return path


@dataclass
class ResultsSource:
    """Predictions to analyse and where they came from.

    Attributes:
        path: The ``.pkl`` file or label-map folder.
        task: ``'det'`` or ``'seg'``.
        cfg: The config that names the data (the test's, else the work dir's).
        checkpoint: The checkpoint that predicted them, when known.
        metrics: The metrics the test printed, when known.
        config_origin: Where ``cfg`` came from, for the page.
        config_file: The config file the test was given, when recorded.
    """
    path: Path
    task: str
    cfg: Config
    checkpoint: Optional[str] = None
    metrics: Optional[Dict[str, float]] = None
    config_origin: str = ''
    config_file: Optional[str] = None


def _read_meta(path: Path) -> Optional[dict]:
    meta = meta_path(path)
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text(encoding='utf-8'))
    except json.JSONDecodeError as error:
        raise ReportError(f'{meta} is not JSON ({error.msg}); delete it (the report then uses the work dir\'s '
                          f'config) or re-run test --out') from error
    if not isinstance(info, dict) or info.get('task') not in TASKS or 'config' not in info:
        raise ReportError(f'{meta} is not a note written by convnext-dense test --out; delete it or re-run '
                          f'test --out')
    return info


def results_task(path: Path) -> str:
    """The task a results path holds: a folder of PNG label maps is segmentation, a pickle detection."""
    if path.is_dir():
        if not any(path.glob('*.png')):
            raise ReportError(f'--results {path}: the folder holds no .png label maps; pass the folder that '
                              f'test --out wrote for a segmentor, or a detector\'s .pkl')
        return 'seg'
    if path.suffix in ('.pkl', '.pickle'):
        return 'det'
    raise ReportError(f'--results {path}: expected a .pkl of detections or a folder of label maps (what '
                      f'convnext-dense test --out writes), got a {path.suffix or "suffix-less"} file')


def open_results(path: Union[str, Path], work_dir_cfg: Optional[Config], work_dir: Path) -> ResultsSource:
    """Finds the config and facts of a results file (its note, else the work dir's config).

    Args:
        path: ``--results``: a ``.pkl`` or a folder of label maps.
        work_dir_cfg: The config the work dir dumped, or None.
        work_dir: The work dir the results belong to (for messages).

    Raises:
        ReportError: The path is missing or of no known kind, or its task differs from the work dir's.
    """
    path = Path(path)
    if not path.exists():
        raise ReportError(f'--results {path} does not exist; pass the file or folder that convnext-dense test '
                          f'--out wrote')
    task = results_task(path)
    info = _read_meta(path)
    if info is not None:
        cfg = Config.fromstring(info['config'], '.py')
        source = ResultsSource(path, info['task'], cfg, info.get('checkpoint'), info.get('metrics') or None,
                               f'the test config recorded in {meta_path(path).name}', info.get('config_file'))
    elif work_dir_cfg is not None:
        source = ResultsSource(path, task, work_dir_cfg, config_origin=f'the config dumped in {work_dir}')
    else:
        raise ReportError(f'--results {path}: no {meta_path(path).name} beside it and no config in {work_dir}, so '
                          f'the data it was predicted on is unknown; re-run test with --out')
    if work_dir_cfg is not None and task_of(work_dir_cfg) != task:
        kinds = {'det': 'detection predictions (.pkl)', 'seg': 'segmentation label maps'}
        raise ReportError(f'--results {path} holds {kinds[task]} but {work_dir} is a '
                          f'{"segmentation" if task_of(work_dir_cfg) == "seg" else "detection"} run; pass the '
                          f'results of a test of this run\'s config')
    return source


def find_results(work_dir: Path) -> Optional[Path]:
    """The newest results under ``work_dir`` that ``test --out`` left a note beside, or None."""
    notes = sorted(work_dir.rglob(f'*{META_SUFFIX}'), key=lambda p: p.stat().st_mtime)
    for note in reversed(notes):
        results = note.with_name(note.name[:-len(META_SUFFIX)])
        if results.exists():
            return results
    return None


# ------------------------------------------------------------------------------------------ safe unpickling

def _load_storage_bytes(data: bytes) -> Any:
    """A pickled tensor's storage is a ``torch.save`` inside the pickle: read it with ``weights_only``."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """``(module, name)`` -> object a detection pickle may reference: tensors (rebuilt from their storage's
    bytes), numpy arrays and scalars, ``OrderedDict`` and the bytes of protocol 2 (mmengine's ``dump``)."""
    allowed: Dict[Tuple[str, str], Any] = {
        ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
        ('torch.storage', '_load_from_bytes'): _load_storage_bytes,
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('_codecs', 'encode'): codecs.encode,  # protocol 2 pickles bytes as encode(text, 'latin1')
    }
    for entry in TRAINING_CHECKPOINT_GLOBALS:
        if isinstance(entry, type) or callable(entry):
            if getattr(entry, '__module__', '').startswith('numpy'):
                allowed[(entry.__module__, entry.__name__)] = entry
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int32,
                  torch.int64, torch.bool):
        allowed[('torch', str(dtype).split('.')[-1])] = dtype
    return allowed


_ALLOWED = _allowed_globals()


class _ResultsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = module.replace('numpy.core', 'numpy._core')  # pickles from numpy 1.x name the old module
        found = _ALLOWED.get((module, name))
        if found is None and module.startswith('numpy') and name in ('dtype', 'ndarray'):
            found = getattr(np, name)
        if found is None:
            raise pickle.UnpicklingError(f'{module}.{name}')
        return found


def load_detections(path: Path) -> List[dict]:
    """The per-image prediction dicts of an mmdet results pickle, tensors as numpy arrays.

    Raises:
        ReportError: The file is not such a pickle, or it references other code (refused, not run).
    """
    try:
        with open(path, 'rb') as f:
            records = _ResultsUnpickler(f).load()
    except pickle.UnpicklingError as error:
        raise ReportError(f'--results {path}: refused to load it: it references {error}, which a detection '
                          f'results pickle does not hold and which could run code; pass the .pkl that '
                          f'convnext-dense test --out wrote') from error
    except (EOFError, ValueError, TypeError, AttributeError) as error:
        raise ReportError(f'--results {path}: not a detection results pickle ({type(error).__name__}: '
                          f'{error}); pass the .pkl that convnext-dense test --out wrote') from error
    if not isinstance(records, list) or not all(isinstance(r, dict) and 'pred_instances' in r for r in records):
        raise ReportError(f'--results {path}: not detection predictions (expected a list of per-image dicts '
                          f'with pred_instances, as test --out writes for a detector)')
    return [_to_numpy(record) for record in records]


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(item) for key, item in value.items()}
    return value
