"""Checkpoint file formats: safetensors files and torch pickles (``.pth``, ``.pt``, ``pytorch_model.bin``).

The Hugging Face Hub serves weights as ``model.safetensors`` (timm, transformers, open_clip's
``open_clip_model.safetensors``) or as a torch pickle (``pytorch_model.bin``, ``open_clip_pytorch_model.bin``);
the ConvNeXt authors' files are torch pickles. A safetensors file is recognised by its name or by its header
(an 8-byte little-endian length and a JSON object), so a renamed file still reads; everything else goes
through :func:`convnext_dense.io.safe_torch_load` (``weights_only=True``). Reading safetensors needs the
``safetensors`` package, which holds no code to run: the format stores tensors and string metadata only.
"""
import io
import json
import os
import struct
from typing import Any, Dict, Mapping, Optional

import torch

from convnext_dense.errors import CheckpointError, MissingDependencyError
from convnext_dense.io import atomic_write, safe_torch_load

SAFETENSORS_SUFFIX = '.safetensors'
# A header larger than this is not a safetensors header (the format's own parser refuses 100 MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _safetensors_torch() -> Any:
    try:
        from safetensors import torch as safetensors_torch
    except ImportError as error:
        raise MissingDependencyError(
            "reading and writing .safetensors files needs the safetensors package: pip install safetensors "
            "(or pip install 'convnext_dense[hub]')") from error
    return safetensors_torch


def is_safetensors(path: str) -> bool:
    """Whether ``path`` is a safetensors file: by its suffix, or by a header that parses as one.

    Args:
        path: A local file.
    """
    if path.endswith(SAFETENSORS_SUFFIX):
        return True
    try:
        with open(path, 'rb') as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                return False
            (length,) = struct.unpack('<Q', prefix)
            if not 2 <= length <= min(_MAX_HEADER_BYTES, os.path.getsize(path) - 8):
                return False
            return f.read(1) == b'{'
    except OSError:
        return False


def _map_device(map_location: Any) -> str:
    """The device a safetensors file is read to: ``map_location`` when it names one, the CPU otherwise."""
    if isinstance(map_location, (str, torch.device)):
        return str(torch.device(map_location))
    return 'cpu'  # a callable or a dict remaps storages, which safetensors does not have


def read_safetensors(path: str, map_location: Any = 'cpu') -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    Args:
        path: A local ``.safetensors`` file.
        map_location: A device (``'cpu'``, ``torch.device``); other ``torch.load`` forms read to the CPU.

    Raises:
        MissingDependencyError: The safetensors package is not installed (the message names the pip command).
        CheckpointError: The file is not a valid safetensors file (truncated, corrupt header).
    """
    safetensors_torch = _safetensors_torch()
    try:
        return safetensors_torch.load_file(path, device=_map_device(map_location))
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f'could not read safetensors file {path}: {cause}. Download it again; a '
                              f'truncated file is the usual cause.') from error


def read_weights_file(path: str, map_location: Any = 'cpu') -> Any:
    """A local checkpoint file of any supported format: the safetensors tensors or the unpickled object.

    Args:
        path: A local file (``.safetensors``, or a torch pickle such as ``.pth`` or ``pytorch_model.bin``).
        map_location: Passed to ``torch.load``; for safetensors, the device to read to.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file cannot be read, or a pickle references code (see ``safe_torch_load``).
    """
    if os.path.isfile(path) and is_safetensors(path):
        return read_safetensors(path, map_location)
    return safe_torch_load(path, map_location=map_location)


def write_safetensors(state_dict: Mapping[str, torch.Tensor], path: str,
                      metadata: Optional[Mapping[str, Any]] = None) -> None:
    """Writes tensors as a safetensors file through :func:`convnext_dense.io.atomic_write`.

    Args:
        state_dict: Tensors by name (made contiguous; shared storage is written once per name).
        path: Destination.
        metadata: Stored in the header as strings (non-string values as JSON).
    """
    safetensors_torch = _safetensors_torch()
    text = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    # save() copies what it writes: clones break storage shared between names, which it refuses.
    tensors = {key: value.detach().contiguous().clone() for key, value in state_dict.items()}
    atomic_write(safetensors_torch.save(tensors, metadata=text), path)


def write_torch(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`convnext_dense.io.atomic_write`: no half-written ``path``.

    Args:
        obj: What to save (a state dict, or a dict holding one and its meta).
        path: Destination.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(buffer.getvalue(), path)
