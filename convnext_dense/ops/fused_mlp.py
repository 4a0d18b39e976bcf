"""The block's inference MLP tail as one op, and the layer-scale fold.

After the block's LayerNorm, the reference computes ``pwconv1 -> GELU -> [GRN] -> pwconv2 -> * gamma ->
drop path -> + shortcut`` (``Block.forward``). For float32 CPU inference a block built with an MLP kernel
computes the same in fewer passes over memory, in one of two forms (``CpuKernels.mlp``):

- ``'onednn'``: oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, which inductor's CPU backend calls
  for the same patterns) adds the bias, applies the exact GELU and adds the residual inside the GEMM. Measured
  on a 2-core Xeon with AVX-512 (1 thread, ConvNeXt-T MLPs): 1.00-1.25x faster per stage at 224x224 and
  0.93-1.43x at 1344x800. With AVX2 (AMD EPYC) oneDNN's GEMM is slower than MKL's at the first stage's shapes.
- ``'tiled'``: the C++ kernel of ``csrc/mlp_tail.cpp``: the first GEMM without its bias copy, bias and GELU
  in one pass in place (the kernel of ``ops/gelu.py``), the second GEMM accumulated onto ``shortcut + bias``;
  single-threaded, tile by tile of rows, so that the 4C-wide hidden activations stay in cache (V1 blocks: GRN
  needs them whole). Measured on an AMD EPYC with AVX2 (ConvNeXt-T blocks at 224, batch 8, 1 thread): 1.10x
  the eager block over the four stages (1.36x at stage 0), where oneDNN's form gave 1.01x (docs/performance.md).

Layer-scale fold: ``gamma * pwconv2(x)`` as one linear with ``gamma`` folded into pwconv2's weight and bias,
where the block has more rows (pixels) than hidden channels (a C x 4C product costs less than scaling the
N x H x W x C output, forward and backward): 16% less training time on ConvNeXt-T at 224, batch 2.

Both compute what the modules compute without calling ``pwconv1``, ``act``, ``pwconv2`` (and ``drop_path``), so
they step aside while a forward hook is registered on one of those, or globally: hooks always see each
module's own input and output. FLOP counters hook every module, so they count the reference ops in every mode.
"""
import functools
import warnings
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as torch_module

from convnext_dense.ops import ENV_VAR, extension

#: The block attributes the MLP kernels compute without calling them.
FUSED_MODULES = ('pwconv1', 'act', 'pwconv2', 'drop_path')


def unhooked(*modules: nn.Module) -> bool:
    """Whether calling each of ``modules`` would run no forward (pre-)hook, its own or a global one."""
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


@functools.lru_cache(maxsize=None)
def onednn_available() -> bool:
    """Whether this torch build runs oneDNN's fused linears here; probed once, with a warning if not."""
    try:
        x = torch.randn(2, 4, device='cpu')
        w, b = torch.randn(4, 4, device='cpu'), torch.randn(4, device='cpu')
        with torch.no_grad():
            fused = torch.ops.mkldnn._linear_pointwise.binary(
                torch.ops.mkldnn._linear_pointwise(x, w, b, 'gelu', [], 'none'), x, w, b, 'add')
        ok = torch.allclose(fused, F.linear(F.gelu(F.linear(x, w, b)), w, b) + x, atol=1e-4)
        reason = 'it gave different numbers'
    except (RuntimeError, AttributeError, NotImplementedError) as err:  # op missing or unsupported here
        ok, reason = False, f'{type(err).__name__}: {str(err)[:200]}'
    if not ok:
        warnings.warn(f'convnext_dense: oneDNN\'s fused linear is not usable here ({reason}); CPU inference '
                      f'uses the eager MLP (same results, slower). Set {ENV_VAR}=0 to silence this.')
    return ok


def available(kind: str) -> bool:
    """Whether the MLP kernel ``kind`` (``'onednn'`` or ``'tiled'``) runs here (probed or built on first use)."""
    return onednn_available() if kind == 'onednn' else extension.load() is not None


def applies(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether the block's MLP kernel computes this call: float32 CPU inference, untraced, unhooked.

    Args:
        block: A ConvNeXt block whose ``mlp_kernel`` is set.
        x: Its normalized NHWC activations.
    """
    return (not torch.is_grad_enabled() and not block.training  # drop path is active in training mode
            and x.device.type == 'cpu' and x.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and unhooked(*(getattr(block, name) for name in FUSED_MODULES)) and available(block.mlp_kernel))


def scaled_pwconv2(block: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """pwconv2's weight and bias with the layer scale ``gamma`` folded in (as they are without one)."""
    weight, bias = block.pwconv2.weight, block.pwconv2.bias
    if block.gamma is None:
        return weight, bias
    return weight * block.gamma[:, None], bias * block.gamma


def folds_layer_scale(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``Block.forward`` folds the layer scale into pwconv2 for ``x``: cheaper, and pwconv2 unhooked.

    Args:
        block: The ConvNeXt block (its ``fold_layer_scale`` flag counts).
        x: Its hidden activations (pwconv2's input).
    """
    return (block.fold_layer_scale and block.gamma is not None
            and x.numel() // x.shape[-1] > block.pwconv2.in_features and unhooked(block.pwconv2))


def forward(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """The block's output from its normalized activations with its MLP kernel (see :func:`applies`).

    Args:
        block: The ConvNeXt block (``mlp_kernel``, ``pwconv1``, ``grn``, ``pwconv2``, ``gamma``).
        x: The normalized NHWC activations.
        shortcut: The block's NCHW input.
    """
    residual = shortcut.permute(0, 2, 3, 1).contiguous()  # a view where the input is channels_last, as inside
    weight, bias = scaled_pwconv2(block)
    if block.mlp_kernel == 'tiled':
        rows = x.reshape(-1, x.shape[-1])
        out = extension.load().mlp_tail(rows, residual.view(rows.shape), block.pwconv1.weight, block.pwconv1.bias,
                                        weight, bias)
        return out.view(residual.shape).permute(0, 3, 1, 2)
    x = torch.ops.mkldnn._linear_pointwise(x, block.pwconv1.weight, block.pwconv1.bias, 'gelu', [],
                                           'none')  # 'none': exact (erf) GELU, as nn.GELU()
    if block.grn is not None:
        x = block.grn(x)
    x = torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, 'add')
    return x.permute(0, 3, 1, 2)  # drop path is the identity in eval mode
