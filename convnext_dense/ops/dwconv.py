"""Depthwise convolution with a fast weight gradient on the CPU, for training ConvNeXt there.

Profiling a ConvNeXt-T training step on a 2-core CPU (224², batch 2, 1 thread) put 25% of it in
``convolution_backward`` of the 7x7 depthwise convs, nearly all of it oneDNN's weight (and bias) gradient: 8-70x
slower than the forward conv it belongs to (20.5 ms vs 2.1 ms at 2x96x56x56, 28.8 ms vs 0.5 ms at 2x768x7x7).
The input gradient is fast and stays with PyTorch. The C++ kernel (``csrc/dwconv_weight_grad.cpp``) computes
the weight gradient with a loop over channels-last pixels (vectorised over the channels, one accumulator row
per tap), 3-70x faster than oneDNN's, and the bias gradient is a plain sum.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.errors import ConfigError
from convnext_dense.ops import CpuKernels, extension


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """Depthwise conv (stride 1, 'same' zero padding) whose weight gradient runs in the C++ kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        channels, size = x.shape[1], weight.shape[-1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # oneDNN's input gradient is as fast as its forward: keep it
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [size // 2, size // 2], [1, 1], False, [0, 0], channels,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            # channels_last tensors permute to contiguous NHWC views: no copies
            taps = extension.load().depthwise_weight_grad(x.permute(0, 2, 3, 1), grad_out.permute(0, 2, 3, 1), size)
            grad_weight = taps.t().reshape(weight.shape)
        if ctx.needs_input_grad[2]:  # False where bias is None
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_weight, grad_bias


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (stride 1, odd square kernel, 'same' zero padding) with the CPU weight gradient.

    Parameters and state-dict keys are ``nn.Conv2d``'s, and ``forward`` is this module's own, so its hooks
    see its input and output whichever path runs.

    Args:
        channels: Input and output channels (one filter per channel).
        kernel_size: Odd kernel size.
        bias: Whether to add a bias.
        weight_grad_kernel: Use the C++ weight gradient where it applies (see :meth:`uses_kernel`).
    """

    def __init__(self, channels: int, kernel_size: int = 7, bias: bool = True,
                 weight_grad_kernel: bool = False) -> None:
        if kernel_size % 2 != 1:
            raise ConfigError(f'DepthwiseConv2d: kernel_size must be odd, got {kernel_size}.')
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=bias)
        self.weight_grad_kernel = weight_grad_kernel

    def use_cpu_kernels(self, kernels: CpuKernels) -> None:
        self.weight_grad_kernel = kernels.dwconv_weight_grad

    def cpu_kernel_names(self) -> Tuple[str, ...]:
        return ('dwconv_weight_grad',) if self.weight_grad_kernel else ()

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` takes the C++ weight gradient for ``x``: float32 CPU training, not traced.

        Args:
            x: Input of the convolution.
        """
        return (self.weight_grad_kernel and x.device.type == 'cpu' and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and torch.is_grad_enabled() and self.weight.requires_grad
                and not torch.compiler.is_compiling()
                and not torch.jit.is_tracing()  # FLOP counters and ONNX export see the convolution itself
                and extension.load() is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_kernel(x):
            return _DepthwiseConv2dFunction.apply(x, self.weight, self.bias)
        return super().forward(x)
