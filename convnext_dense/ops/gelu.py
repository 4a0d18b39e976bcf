"""The block's GELU with its float32 CPU forward and backward in C++ (``csrc/gelu.cpp``, ``csrc/gelu.h``).

A ``torch.profiler`` run of ConvNeXt-T inference on an AVX2 CPU (AMD EPYC, 224², batch 8, 1 thread) put 10% of
it in ``aten::gelu``: PyTorch's exact GELU evaluates erf with a vector exp and a division, 3.0 ns per element
there, and its gradient 4.1 ns. The kernel evaluates erf as the rational minimax approximation Eigen and XLA use
for float32 (no exp): 1.4 ns forward, 2.4 ns backward, within 3.7e-7 of float64 on [-3, 1] (PyTorch's:
2.6e-7), 2.0e-7 relative above (PyTorch's: 1.9e-7) and 1.1e-6 below -3, where |GELU| < 4e-3.
"""
from typing import Tuple

import torch
import torch.nn as nn

from convnext_dense.ops import CpuKernels, extension


class _GeluFunction(torch.autograd.Function):
    """Exact GELU whose forward and backward run in the C++ kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return extension.load().gelu_forward(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        x, = ctx.saved_tensors
        return extension.load().gelu_backward(grad_out, x)


class GELU(nn.GELU):
    """``nn.GELU()`` (exact, erf) computed by the C++ kernel on float32 CPU tensors where chosen.

    Args:
        kernel: Use the C++ kernel where it applies (float32 CPU, not traced or compiled).
    """

    def __init__(self, kernel: bool = False) -> None:
        super().__init__()
        self.kernel = kernel

    def use_cpu_kernels(self, kernels: CpuKernels) -> None:
        self.kernel = kernels.gelu

    def cpu_kernel_names(self) -> Tuple[str, ...]:
        return ('gelu',) if self.kernel else ()

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` runs the C++ kernel for ``x``."""
        return (self.kernel and x.device.type == 'cpu' and x.dtype == torch.float32
                and not torch.compiler.is_compiling()  # inductor fuses GELU on its own
                and not torch.jit.is_tracing()  # ONNX export writes the standard Gelu / Erf ops
                and extension.load() is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_kernel(x):
            return _GeluFunction.apply(x)
        return super().forward(x)
