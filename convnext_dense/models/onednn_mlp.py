"""The block's MLP for float32 inference on the CPU, through oneDNN's linear with fused epilogues.

Eager PyTorch runs a CPU ``F.linear`` as MKL's GEMM after copying the bias into every output row (a full pass
over the output), then GELU as another pass over the 4x-wide hidden tensor, and the residual add as another
over the block's output. oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, which inductor's CPU backend
calls for the same patterns) adds the bias, applies the exact (erf) GELU and adds the residual inside the
GEMM. Measured on a ConvNeXt-T block's MLP (2-core Xeon, 1 thread; pwconv1 + GELU + pwconv2 + residual,
median of 9 interleaved rounds): 1.25 / 1.00 / 1.04 / 1.19x faster per stage at 224x224 (batch 2) and
1.43 / 1.22 / 1.10 / 0.93x at 1344x800; outputs within 7e-6 of the eager path.

Used only where it is exact and needed: float32 CPU tensors, no autograd, no autocast, not inside
``torch.compile`` (inductor fuses on its own) or a JIT trace, channels-last blocks. Where the op is missing or
fails (a torch build without oneDNN, another CPU architecture), one warning says so and the eager path is used
from then on.
"""
import warnings

import torch

_UNAVAILABLE = []  # the reason, once the op failed or was found missing: the eager path is used from then on


def applies(x: torch.Tensor, shortcut: torch.Tensor, training: bool) -> bool:
    """Whether the fused path may run this block.

    Args:
        x: The LayerNorm's input, NHWC (the permuted depthwise-conv output).
        shortcut: The block's NCHW input, added back at the end.
        training: The block's ``training`` flag (drop path is active in training mode).
    """
    return (not training and not torch.is_grad_enabled() and not _UNAVAILABLE
            and x.device.type == 'cpu' and x.dtype == torch.float32 and shortcut.dtype == torch.float32
            and not _cpu_autocast_enabled() and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()  # FLOP counters and ONNX export trace: they need the plain linears
            and shortcut.permute(0, 2, 3, 1).is_contiguous())


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled('cpu')
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.gelu(F.linear(x, weight, bias))`` in one oneDNN call.

    Args:
        x: Input, ``(..., in_features)``, contiguous.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)``.
    """
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'gelu', [], 'none')  # 'none': erf, not tanh


def linear_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight, bias) + other`` in one oneDNN call.

    Args:
        x: Input, ``(..., in_features)``, contiguous.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)``.
        other: Added to the output; same shape as it, contiguous.
    """
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, 'add')


def disable(err: Exception) -> None:
    """Turns the fused path off for this process, with one warning naming the reason.

    Args:
        err: What the oneDNN call raised.
    """
    _UNAVAILABLE.append(f'{type(err).__name__}: {err}')
    warnings.warn(f'convnext_dense: oneDNN\'s fused linear failed ({_UNAVAILABLE[0][:200]}); CPU inference '
                  f'uses the eager MLP from now on (same results, slower).')
