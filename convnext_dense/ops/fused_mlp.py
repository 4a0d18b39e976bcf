"""The block's MLP tail as one op: oneDNN's fused linears for CPU inference, and the layer-scale fold.

After the block's LayerNorm, the reference computes ``pwconv1 -> GELU -> [GRN] -> pwconv2 -> * gamma ->
drop path -> + shortcut``. This op computes the same in fewer passes over memory:

- Layer-scale fold (any device, with or without autograd): where the block has more output rows (pixels)
  than hidden channels, ``gamma * pwconv2(x)`` runs as one linear with ``gamma`` folded into pwconv2's weight
  and bias (a C x 4C product costs less than scaling the N x H x W x C output, forward and backward).
  Measured on ConvNeXt-T at 224, batch 2, CPU: 16% less training time. Late stages on small inputs keep
  scaling the output, as the official code does.
- oneDNN (float32 CPU inference, with the CPU kernels on): eager PyTorch runs a CPU ``F.linear`` as MKL's
  GEMM after copying the bias into every output row, then GELU and the residual add as further passes.
  oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, which inductor's CPU backend calls for the same
  patterns) adds the bias, applies the exact (erf) GELU and adds the residual inside the GEMM. Measured on a
  ConvNeXt-T block's MLP (2-core Xeon, 1 thread, median of 9 interleaved rounds): 1.25 / 1.00 / 1.04 /
  1.19x faster per stage at 224x224 (batch 2) and 1.43 / 1.22 / 1.10 / 0.93x at 1344x800; outputs within
  7e-6 of the eager path.

The op steps aside (the block runs its reference lines) while any forward hook is registered on a module it
fuses (``pwconv1``, ``act``, ``pwconv2``, ``drop_path``; ``grn`` is always called) or globally, so hooks
always see each module's own input and output. Whether this torch build runs the oneDNN op is probed once
per process; where it does not, one warning says so and the oneDNN branch is never taken.
"""
import functools
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as torch_module

from convnext_dense.ops import ENV_VAR

#: The block attributes this op computes without calling them.
FUSED_MODULES = ('pwconv1', 'act', 'pwconv2', 'drop_path')


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run a forward (pre-)hook, its own or a global one."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


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


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled('cpu')
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def _hooked(block: nn.Module) -> bool:
    return any(has_forward_hooks(getattr(block, name)) for name in FUSED_MODULES)


def folds_layer_scale(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether folding ``gamma`` into pwconv2 costs less than scaling the output (more rows than hidden channels).

    Args:
        block: The ConvNeXt block.
        x: Its normalized NHWC activations.
    """
    return block.gamma is not None and x.numel() // x.shape[-1] > block.pwconv2.in_features


def uses_onednn(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor) -> bool:
    """Whether the oneDNN branch runs: float32 CPU inference, channels-last, no trace or compile.

    Args:
        block: The ConvNeXt block (its ``cpu_kernels`` and ``training`` flags count).
        x: The normalized NHWC activations.
        shortcut: The block's NCHW input, added back at the end.
    """
    return (block.cpu_kernels and not block.training  # drop path is active in training mode
            and not torch.is_grad_enabled() and x.device.type == 'cpu' and x.dtype == torch.float32
            and shortcut.dtype == torch.float32 and not _cpu_autocast_enabled()
            and not torch.compiler.is_compiling()  # inductor fuses on its own
            and not torch.jit.is_tracing()  # FLOP counters and ONNX export trace: they need the plain linears
            and shortcut.permute(0, 2, 3, 1).is_contiguous() and onednn_available())


def applies(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor) -> bool:
    """Whether :func:`forward` computes this call of ``block`` (else the block runs its reference lines).

    Args:
        block: The ConvNeXt block.
        x: Its normalized NHWC activations.
        shortcut: Its NCHW input.
    """
    if _hooked(block):
        return False
    return uses_onednn(block, x, shortcut) or folds_layer_scale(block, x)


def _pwconv2_with_layer_scale(block: nn.Module):
    """pwconv2's weight and bias with ``gamma`` folded in: ``gamma * pwconv2(x)`` as one linear."""
    return block.pwconv2.weight * block.gamma[:, None], block.pwconv2.bias * block.gamma


def forward(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """The block's output from its normalized activations: MLP, layer scale, drop path and residual.

    Args:
        block: The ConvNeXt block (``pwconv1``, ``act``, ``grn``, ``pwconv2``, ``gamma``, ``drop_path``).
        x: The normalized NHWC activations.
        shortcut: The block's NCHW input.
    """
    if uses_onednn(block, x, shortcut):
        x = torch.ops.mkldnn._linear_pointwise(x, block.pwconv1.weight, block.pwconv1.bias, 'gelu', [],
                                               'none')  # 'none': exact (erf) GELU, as nn.GELU()
        if block.grn is not None:
            x = block.grn(x)
        residual = shortcut.permute(0, 2, 3, 1)  # contiguous: uses_onednn checked
        if block.gamma is None or folds_layer_scale(block, x):
            weight, bias = ((block.pwconv2.weight, block.pwconv2.bias) if block.gamma is None
                            else _pwconv2_with_layer_scale(block))
            x = torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, 'add')
        else:
            x = block.pwconv2(x).mul_(block.gamma).add_(residual)
        return x.permute(0, 3, 1, 2)  # drop path is the identity in eval mode
    x = block.act(block.pwconv1(x))
    if block.grn is not None:
        x = block.grn(x)
    x = F.linear(x, *_pwconv2_with_layer_scale(block))
    # Out of place: x is a view (a permute of the linear's output), and an in-place add on a view makes
    # autograd record CopySlices + AsStridedBackward0 (~24 ms of copies in a 0.9 s ConvNeXt-T CPU step).
    return shortcut + block.drop_path(x.permute(0, 3, 1, 2))
