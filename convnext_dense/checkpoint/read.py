"""Reading a checkpoint source: the one function every loader of the package goes through.

:func:`read_checkpoint` takes what a user writes where a checkpoint is asked for and dispatches on its kind:

- ``hf-hub:ORG/NAME[@REVISION]``: the repository's weights file through huggingface_hub's cache
  (:mod:`.hub`);
- ``http://`` / ``https://`` / ``file://``: downloaded into the weights cache by
  :func:`convnext_dense.checkpoint.download.download` (mirror, hash check, atomic), then read as a local file;
- another ``scheme://`` (``open-mmlab://``, ``s3://``, ...): mmengine's ``CheckpointLoader`` for that scheme;
- anything else: a local file.

A local or downloaded file is read by :func:`~convnext_dense.checkpoint.formats.read_weights_file`: a
``.safetensors`` file (by name or header) as its tensors, anything else with
:func:`convnext_dense.io.safe_torch_load` (``weights_only=True``). New kinds of source are new branches of
:func:`read_checkpoint`; every caller (``init_cfg`` loading, ``apis.init_model``, ``test``, ``--resume``,
``infer``, ``convert``) gets them at once.

One read of each file: a caller that checks a local checkpoint which mmengine then loads again (``test``,
``--resume``) hands the object it read to :func:`keep_for_next_read`; the local loader that
:mod:`convnext_dense.runtime` registers in mmengine takes it back once through :func:`read_local_checkpoint`
if the file (path, size, modification time) is unchanged, instead of reading it a second time.
"""
import os
import os.path as osp
from typing import Any, Dict, Optional, Tuple

from mmengine.runner.checkpoint import CheckpointLoader

from convnext_dense.checkpoint.download import download
from convnext_dense.checkpoint.formats import read_weights_file
from convnext_dense.checkpoint.hub import is_hub_name, resolve_hub_name
from convnext_dense.errors import CheckpointError, CheckpointFormatError, CheckpointNotFoundError

URL_PREFIXES = ('http://', 'https://', 'file://')

FileKey = Tuple[str, int, int]
# At most one checkpoint waits for its second reader: holding more would keep GBs alive for nothing.
_kept: Dict[FileKey, Any] = {}


def is_remote(source: str) -> bool:
    """Whether ``source`` names a checkpoint by URL, hub name or another ``scheme://`` rather than a local path."""
    return '://' in str(source) or is_hub_name(str(source))


def _file_key(path: str) -> Optional[FileKey]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return osp.realpath(path), stat.st_size, stat.st_mtime_ns


def keep_for_next_read(path: str, checkpoint: Any) -> None:
    """Hands ``checkpoint``, just read from the local file ``path``, to the next :func:`read_local_checkpoint`.

    Args:
        path: The local file it was read from.
        checkpoint: What was read (or an equivalent, e.g. with its state dict renamed to the model's names).
    """
    key = _file_key(path)
    _kept.clear()
    if key is not None:
        _kept[key] = checkpoint


def read_local_checkpoint(path: str, map_location: Any = 'cpu') -> Any:
    """A local checkpoint: the one :func:`keep_for_next_read` kept for this unchanged file (once), else read.

    Args:
        path: A local file.
        map_location: Passed to ``torch.load`` when the file is read. A kept checkpoint stays on the CPU;
            mmengine's model and optimizer loading move tensors to their parameters' devices.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file is not a checkpoint, or it holds refused code.
    """
    path = osp.expanduser(path)
    key = _file_key(path)
    if key is not None and key in _kept:
        return _kept.pop(key)
    return read_weights_file(path, map_location=map_location)


def _local_path(source: str, purpose: Optional[str]) -> str:
    path = osp.expanduser(source)
    if osp.isdir(path):
        pointer = osp.join(path, 'last_checkpoint')
        latest = open(pointer).read().strip() if osp.isfile(pointer) else None
        example = latest or osp.join(source, 'epoch_36.pth')
        raise CheckpointError(f'checkpoint {source} is a folder; pass a .pth file in it, e.g. {example}')
    if not osp.isfile(path):
        given = f' ({purpose})' if purpose else ''
        raise CheckpointNotFoundError(f'checkpoint {source}{given} not found; pass an existing .pth file or URL')
    return path


def check_local_checkpoint(source: str, purpose: Optional[str] = None) -> None:
    """Refuses a local checkpoint path that is missing or a folder, without reading it; URLs pass.

    Args:
        source: What the user gave.
        purpose: How it was given (``'CHECKPOINT'``, ``'--resume'``), for the message.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: It is a folder (the message suggests a file in it).
    """
    if not is_remote(source):
        _local_path(str(source), purpose)


def read_checkpoint(source: str, map_location: Any = 'cpu', purpose: Optional[str] = None) -> Dict[str, Any]:
    """Reads a checkpoint from a local path, a Hugging Face Hub name, an ``http(s)://`` URL or another mmengine
    scheme; ``.safetensors`` files as their tensors.

    Args:
        source: Path, URL or ``hf-hub:ORG/NAME[@REVISION]`` as the user wrote it.
        map_location: Passed to ``torch.load``.
        purpose: How the source was given (``'CHECKPOINT'``, ``'--resume'``, ``'init_cfg'``), for messages.

    Returns:
        The loaded checkpoint, a dict (wrapped or bare state dict).

    Raises:
        CheckpointNotFoundError: A local path that does not exist (also a ``FileNotFoundError``); a hub name
            whose repository, revision or file does not exist, or is not cached while offline.
        CheckpointAccessError: A gated or private hub repository (the message says how to get access).
        DownloadError: A URL that could not be fetched (the message names the reason and the fallback).
        MissingDependencyError: A hub name or ``.safetensors`` file without huggingface_hub / safetensors.
        CheckpointError: A folder, a file that is not a checkpoint, refused code, or an object that is not
            a dict.
    """
    source = str(source)
    if is_hub_name(source):  # before the local path: 'hf-hub:ORG/NAME' has no '://'
        loaded = read_weights_file(resolve_hub_name(source), map_location)
    elif source.startswith(URL_PREFIXES):
        loaded = read_weights_file(str(download(source)), map_location)
    elif '://' in source:
        loaded = CheckpointLoader.load_checkpoint(source, map_location=map_location)
    else:
        loaded = read_local_checkpoint(_local_path(source, purpose), map_location)
    if not isinstance(loaded, dict):
        raise CheckpointFormatError(f'checkpoint {source} holds a {type(loaded).__name__}, not a state dict')
    return loaded
