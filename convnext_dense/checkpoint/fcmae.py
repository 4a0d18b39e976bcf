"""ConvNeXt V2 FCMAE pre-training checkpoints, renamed as the official fine-tuning does.

The encoder (under ``encoder.`` when saved by the official ``fcmae.py``) is a MinkowskiEngine network:
depthwise kernels ``(49, C)``, downsampling kernels ``(4, C_in, C_out)``, biases ``(1, C)``, LayerNorms under
``.ln.``, linears under ``.linear.``, GRN ``(1, C)``. Kernels become conv weights
(:func:`minkowski_kernel_to_conv_weight`), the wrapper names are dropped, biases and GRN flattened to
``(C,)`` as ours; values are unchanged. The released ``*_fcmae.pt`` files use the dense names but keep GRN
as ``(1, C)``. The decoder, ``proj``, ``pred`` and ``mask_token`` (and any classifier ``head`` /
``norm``) are ignored, as the official fine-tuning drops them. These functions are the ``fcmae`` entry of
:data:`convnext_dense.checkpoint.layouts.LAYOUTS`.
"""
import math
import re
from typing import Any, Mapping, Optional

import torch

from convnext_dense.errors import UnknownCheckpointLayoutError

# Names only an FCMAE checkpoint has: the encoder/decoder split, MinkowskiEngine's ``kernel`` and the
# ``ln`` / ``linear`` modules its sparse LayerNorm and Linear wrap.
_FCMAE_KEY = re.compile(r'^(encoder|decoder|proj|pred)\.|^mask_token$|\.kernel$|\.(ln|linear)\.')
#: FCMAE modules outside the encoder; the official fine-tuning drops them too.
FCMAE_PRETRAINING_ONLY = ('decoder.', 'proj.', 'pred.', 'mask_token')


def is_fcmae(state_dict: Mapping[str, Any]) -> bool:
    """Whether backbone-level keys are an FCMAE pre-training checkpoint, sparse or with dense names.

    Args:
        state_dict: Unwrapped tensors, any ``backbone.`` prefix removed.
    """
    if any(_FCMAE_KEY.search(k) for k in state_dict):
        return True
    # The released pre-trained-only files use the dense names but keep the sparse GRN's (1, C); the official
    # fine-tuned files store (1, 1, 1, C), ours (C,), and mmpretrain's vectors sit beside depthwise_conv.
    dense_names = any(k.startswith('downsample_layers.') for k in state_dict) and not any(
        '.depthwise_conv.' in k for k in state_dict)
    return dense_names and any('.grn.' in k and isinstance(v, torch.Tensor) and v.dim() == 2
                               for k, v in state_dict.items())


def minkowski_kernel_to_conv_weight(kernel: torch.Tensor) -> torch.Tensor:
    """A MinkowskiEngine 2-D convolution kernel as the ``nn.Conv2d`` weight the official fine-tuning makes of it.

    Args:
        kernel: ``(k*k, C_in, C_out)`` for a convolution or ``(k*k, C)`` for a depthwise one.

    Returns:
        ``(C_out, C_in, k, k)``, or ``(C, 1, k, k)`` for a depthwise kernel; the same values, reordered.

    Raises:
        UnknownCheckpointLayoutError: The first axis is not a square number of kernel offsets.
    """
    size = math.isqrt(kernel.shape[0])
    if kernel.dim() not in (2, 3) or size * size != kernel.shape[0]:
        raise UnknownCheckpointLayoutError(
            f'FCMAE kernel of shape {list(kernel.shape)} is not (k*k, C) or (k*k, C_in, C_out).')
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(1)  # depthwise: one input channel per group
    # The first axis enumerates kernel offsets with the width offset outermost (as the official
    # remap_checkpoint_keys reads it), hence (kw, kh, C_in, C_out) -> (C_out, C_in, kh, kw).
    return kernel.reshape(size, size, *kernel.shape[1:]).permute(3, 2, 1, 0).contiguous()


def fcmae_key_to_ours(key: str) -> Optional[str]:
    """An FCMAE key under our name, or None for the pre-training-only modules and a classifier."""
    name = key[len('encoder.'):] if key.startswith('encoder.') else key
    if name.startswith(FCMAE_PRETRAINING_ONLY + ('head.', 'norm.')):
        return None
    parts = name.split('.')
    if parts[-1] == 'kernel':
        parts[-1] = 'weight'
    elif len(parts) > 1 and parts[-2] in ('ln', 'linear'):  # MinkowskiLayerNorm / MinkowskiLinear wrappers
        del parts[-2]
    return '.'.join(parts)


def fcmae_tensor_to_ours(source_key: str, our_key: str, value: torch.Tensor) -> torch.Tensor:
    """An FCMAE tensor in our shape: kernels as conv weights, sparse (1, C) biases and GRN flat."""
    if source_key.endswith('.kernel'):
        return minkowski_kernel_to_conv_weight(value)
    if (our_key.endswith('.bias') or '.grn.' in our_key) and value.dim() != 1:
        return value.reshape(-1)
    return value
