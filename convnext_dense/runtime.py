"""Our patches to mmengine 0.10.7 for running training and tests: import this module to install them.

Importing ``convnext_dense`` (the backbone, the optimizer constructor) changes nothing outside the package,
so any mm-style project can use the backbone as it is. The patches below are for runs of our toolkit and are
installed by its entry points: the command line (``convnext-dense``, ``tools/*.py``), :mod:`convnext_dense.apis`,
and our configs, whose ``custom_imports`` name this module, so a plain script that runs mmengine's Runner on
one of our configs gets them too. Each patch replaces one mmengine component through mmengine's own
registration API (nothing is monkey-patched in place) and can go once the upstream fix it waits for is
released:

1. Local checkpoint loading (``CheckpointLoader`` scheme ``''``). torch >= 2.6 loads with
   ``weights_only=True`` by default and mmengine's local loader calls ``torch.load`` without allowing the
   types mmengine itself pickles (``HistoryBuffer``, numpy arrays and scalars), so ``--resume`` and
   ``tools/test.py`` fail on every training checkpoint. Replaced by
   :func:`convnext_dense.checkpoint.read_local_checkpoint`, which stays ``weights_only=True`` and hands back
   a file that ``test`` or ``--resume`` has just read and checked instead of reading it again. Waits for: an
   mmengine release whose local loader allows its own types under ``weights_only=True`` (0.10.7, the
   latest, does not).
2. The local file backend (``'local'``). mmengine writes checkpoints, ``last_checkpoint`` and dumped results
   with a plain ``open(path, 'wb')``: a kill during a save leaves a truncated file that ``--resume`` or
   ``tools/test.py`` would pick up. Replaced by :class:`AtomicLocalBackend`, which writes through
   :func:`convnext_dense.io.atomic_write` and, before a checkpoint save, deletes the temporary file a kill
   during an earlier save left in the folder. Waits for: atomic saves in mmengine's ``LocalBackend``.
"""
from pathlib import Path
from typing import Any, Optional, Union

from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from convnext_dense.checkpoint import read_local_checkpoint
from convnext_dense.io import atomic_write, remove_stale_temporaries


def load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's local checkpoint scheme: a ``weights_only`` read, or the checkpoint just read and checked."""
    return read_local_checkpoint(filename, map_location=map_location)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` and ``put_text`` (temporary file + rename)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        if str(filepath).endswith('.pth'):  # a checkpoint: the run owns its folder (rank 0 saves)
            remove_stale_temporaries(Path(filepath).parent)
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, encoding=encoding)


def install() -> None:
    """Installs the safe checkpoint loader and the atomic local file backend in mmengine (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


install()
