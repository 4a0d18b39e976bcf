"""Reading and writing files safely: the one atomic writer and the one checkpoint reader of the package.

- :func:`atomic_output` hands out a temporary path beside the target and renames it into place when the
  block succeeds (removes it when it fails), so a reader (or a resumed run) sees either the old file or the
  complete new one, never a half-written one. :func:`atomic_write` writes bytes or text through it; writers
  that need a path of their own (a video encoder, mmdet's result dumper) use it directly.
- :func:`safe_torch_load` reads with ``torch.load(weights_only=True)`` and allows exactly the extra types
  that mmengine writes into training checkpoints (its ``HistoryBuffer``, numpy arrays and scalars), the
  numpy scalars of files written by mmcv 1.x under numpy 1.x (mmdet 2.x / mmseg 0.x whole models, whose
  meta and optimizer state are otherwise plain containers, strings and numbers; see
  ``checkpoint/legacy.py``) and the ``argparse.Namespace`` of plain values that the official ConvNeXt (V1,
  V2) training scripts save beside the weights: a crafted pickle that would run code is refused, for
  training checkpoints and pretrained weights alike.
"""
import argparse
import contextlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from convnext_dense.errors import CheckpointError


def _numpy_globals() -> List[Any]:
    """The numpy callables and types that pickled arrays, scalars and dtypes reference."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_types = [type(np.dtype(code)) for code in np.typecodes['All'] if code not in 'Mm']
    dtype_types += [type(np.dtype('M8[s]')), type(np.dtype('m8[s]'))]
    # Files written under numpy 1.x (mmcv 1.x's, e.g. a ``best_score`` in ``meta['hook_msgs']``) name the same
    # two functions by their numpy 1.x module, which numpy 2 keeps only as an alias.
    numpy1_names = [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                    (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_types, *numpy1_names]


def _history_buffer_getattr(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: only HistoryBuffer's public methods.

    HistoryBuffer pickles its ``statistics_methods`` as ``getattr(HistoryBuffer, 'mean')``; allowing the real
    ``getattr`` would hand a crafted file any attribute of any allowed object.
    """
    if isinstance(owner, type) and issubclass(owner, HistoryBuffer) and not name.startswith('_'):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'refused getattr({owner!r}, {name!r}) while loading a checkpoint')


#: Globals an mmengine training checkpoint may hold beyond tensors and plain containers.
TRAINING_CHECKPOINT_GLOBALS: List[Any] = [
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'), *_numpy_globals(),
    argparse.Namespace]  # a plain attribute bag: the official training scripts save their args in it


def safe_torch_load(path: str, map_location: Optional[Any] = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` that also accepts mmengine training checkpoints.

    Args:
        path: Local file to load.
        map_location: Passed to ``torch.load``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file is not a checkpoint, or it references code that is not allowed (the
            message names the file, the refused type and how to proceed); a ``RuntimeError``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        with torch.serialization.safe_globals(TRAINING_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused:
            raise CheckpointError(
                f'refused to load checkpoint {path}: it holds a {refused.group(1)} object, which weights_only '
                f'loading does not allow because unpickling it could run code. If you trust the file, extract '
                f"its tensors once: torch.save(torch.load(path, weights_only=False)['model'], 'weights.pth') "
                f'(use the key holding the state dict) and load weights.pth.') from error
        first_line = _load_failure_cause(error)
        raise CheckpointError(
            f'could not load checkpoint {path}: {first_line}. It is either not a PyTorch checkpoint, '
            f'truncated, or it references Python objects that are refused for safety '
            f'(weights_only=True); re-save it as a plain state dict of tensors.') from error


# Boilerplate lines of torch's weights_only errors; the cause is the line between them. The first one even
# suggests weights_only=False, which is the wrong advice for a file from outside.
_TORCH_BOILERPLATE = ('Weights only load failed', 'Please file an issue', 'Check the documentation')
# torch's refusal of a type outside the allowlist; the message then names that type instead.
_REFUSED_GLOBAL = re.compile(r'GLOBAL ([\w.]+) was not an allowed global')


def _load_failure_cause(error: Exception) -> str:
    """The informative line of a ``torch.load`` error (e.g. ``Unsupported operand 95``), without a final dot."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    cause = (causes or lines or [type(error).__name__])[0]
    return cause.replace('WeightsUnpickler error: ', '').rstrip('.')


@contextlib.contextmanager
def atomic_output(path: Union[str, Path], fsync: bool = True, suffix: str = '.tmp') -> Iterator[str]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without error.

    On an error (or a kill before the rename) ``path`` keeps its old content; the temporary file is removed
    on an error, and one left by a kill is found by :func:`remove_stale_temporaries`.

    Args:
        path: Destination; its folder is created if missing.
        fsync: Flush the data to disk before the rename (checkpoints, reports). Files that are cheap to
            regenerate and written by the thousand (dataset images) skip it: the rename alone still never
            shows a half-written file to a reader.
        suffix: End of the temporary file's name. A writer that picks its format by the name (a video
            encoder, mmengine's ``dump``) needs the target's extension last: ``'.tmp.mp4'``.

    Yields:
        The temporary file's path (``.NAME.XXXXXXXX`` + ``suffix`` in the same folder; created empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates the file private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(data: Union[bytes, str], path: Union[str, Path], encoding: str = 'utf-8',
                 fsync: bool = True) -> None:
    """Writes ``data`` to ``path`` through :func:`atomic_output`: readers see the old file or the new one.

    Args:
        data: Bytes, or text encoded with ``encoding``.
        path: Destination; its folder is created if missing.
        encoding: Encoding of text data.
        fsync: See :func:`atomic_output`.
    """
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_output(path, fsync=fsync) as tmp, open(tmp, 'wb') as f:
        f.write(payload)


def remove_stale_temporaries(folder: Union[str, Path], suffix: str = '.pth') -> List[Path]:
    """Deletes the temporary files of :func:`atomic_write` for ``*suffix`` targets left in ``folder`` by a
    process killed during a write (``.iter_4.pth.k2j8s1.tmp``); returns them.

    Call it only where one writer owns the folder (a run's checkpoint saves, its resume): another process's
    save in progress would lose its temporary file.
    """
    removed = []
    for path in Path(folder).glob(f'.*{suffix}.*.tmp'):
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile: what we wanted
            continue
        removed.append(path)
    return removed
