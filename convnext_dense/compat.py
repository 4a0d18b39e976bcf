"""Fixes for the traps of the stack (DESIGN.md §5), installed once when ``convnext_dense`` is imported.

torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7's local checkpoint loader calls
``torch.load`` without that argument, so a full training checkpoint (message hub ``HistoryBuffer`` objects,
numpy arrays and scalars) fails to load for ``--resume`` and ``tools/test.py``. Instead of turning the safe
loader off, the local loader is replaced by one that stays ``weights_only=True`` and allows exactly the
extra types that mmengine itself writes: a crafted pickle that would run code is still refused, for
training checkpoints and pretrained weights alike.
"""
import os
import pickle
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def _numpy_globals() -> List[Any]:
    """The numpy callables and types that pickled arrays, scalars and dtypes reference."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_types = [type(np.dtype(code)) for code in np.typecodes['All'] if code not in 'Mm']
    dtype_types += [type(np.dtype('M8[s]')), type(np.dtype('m8[s]'))]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_types]


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
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'), *_numpy_globals()]


def safe_torch_load(path: str, map_location: Optional[Any] = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` that also accepts mmengine training checkpoints.

    Args:
        path: Local file to load.
        map_location: Passed to ``torch.load``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: The file is not a checkpoint, or it references code that is not allowed (the
            message names the file and what was refused).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        with torch.serialization.safe_globals(TRAINING_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(
            f'could not load checkpoint {path}: {first_line}. It is either not a PyTorch checkpoint, '
            f'truncated, or it references Python objects that are refused for safety '
            f'(weights_only=True); re-save it as a plain state dict of tensors.') from error


def _load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    return safe_torch_load(os.path.expanduser(filename), map_location=map_location)


def install() -> None:
    """Registers :func:`safe_torch_load` as mmengine's loader for local paths (idempotent)."""
    register: Callable = CheckpointLoader.register_scheme(prefixes='', force=True)
    register(_load_from_local)


install()
