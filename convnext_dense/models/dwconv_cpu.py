"""Depthwise convolution with a fast weight gradient on the CPU, for training ConvNeXt there.

Profiling a ConvNeXt-T training step on this project's CPU (224², batch 2, 1 thread) put 25% of it in
``convolution_backward`` of the 7x7 depthwise convs, nearly all of it oneDNN's weight (and bias) gradient: 8-70x
slower than the forward conv it belongs to (20.5 ms vs 2.1 ms at 2x96x56x56, 28.8 ms vs 0.5 ms at 2x768x7x7).
The input gradient is fast and stays with PyTorch. This module computes the weight gradient with a small C++
loop over channels-last pixels (vectorised over the channels, one accumulator row per tap), 3-70x faster
than oneDNN's, and the bias gradient as a plain sum.

The C++ code is compiled on first use with ``torch.utils.cpp_extension.load_inline`` (about 40 s on this 2-core
machine; then cached by PyTorch under ``~/.cache/torch_extensions`` or ``TORCH_EXTENSIONS_DIR``). Without a working
compiler the build fails once, a warning says why, and the ordinary ``F.conv2d`` path is used: same results,
oneDNN's speed.
"""
import functools
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

_CPP_SOURCE = r'''
#include <torch/extension.h>
#include <ATen/Parallel.h>

// grad_weight[kh * k + kw, c] = sum over n, h, w of x[n, h + kh - k/2, w + kw - k/2, c] * grad_out[n, h, w, c],
// x and grad_out NHWC float32, zero padding, stride 1. Each thread accumulates its rows into its own k*k x C
// buffer (summed at the end); the innermost loop runs over contiguous channels and vectorises.
torch::Tensor depthwise_weight_grad(torch::Tensor x, torch::Tensor grad_out, int64_t k) {
  TORCH_CHECK(x.dim() == 4 && grad_out.sizes() == x.sizes(), "depthwise_weight_grad: NHWC x and grad_out of one shape");
  TORCH_CHECK(x.scalar_type() == torch::kFloat && grad_out.scalar_type() == torch::kFloat, "depthwise_weight_grad: float32 only");
  auto xc = x.contiguous();
  auto gc = grad_out.contiguous();
  const int64_t N = xc.size(0), H = xc.size(1), W = xc.size(2), C = xc.size(3), pad = k / 2;
  const float* xd = xc.data_ptr<float>();
  const float* gd = gc.data_ptr<float>();
  const int64_t slots = at::get_num_threads();
  auto partial = torch::zeros({slots, k * k, C}, xc.options());
  float* pd = partial.data_ptr<float>();
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    float* acc = pd + at::get_thread_num() * k * k * C;
    for (int64_t nh = begin; nh < end; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      for (int64_t w = 0; w < W; ++w) {
        const float* gp = gd + ((n * H + h) * W + w) * C;
        for (int64_t kh = 0; kh < k; ++kh) {
          const int64_t ih = h + kh - pad;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < k; ++kw) {
            const int64_t iw = w + kw - pad;
            if (iw < 0 || iw >= W) continue;
            const float* xp = xd + ((n * H + ih) * W + iw) * C;
            float* a = acc + (kh * k + kw) * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; ++c) a[c] += xp[c] * gp[c];
          }
        }
      }
    }
  });
  return partial.sum(0);
}
'''


@functools.lru_cache(maxsize=None)
def _extension():
    """The compiled C++ module, or None (with one warning naming the reason) where it cannot be built."""
    try:
        from torch.utils.cpp_extension import load_inline
        # -march=native: built on the machine that runs it. A home directory shared by machines with different
        # CPUs needs TORCH_EXTENSIONS_DIR set per machine, or the cached build may use missing instructions.
        return load_inline('convnext_dense_dwconv_cpu', cpp_sources=_CPP_SOURCE,
                           functions=['depthwise_weight_grad'], extra_cflags=['-O3', '-march=native',
                                                                            '-fopenmp-simd'])
    except Exception as err:  # no compiler, no headers, read-only cache: the slow path still works
        warnings.warn(f'convnext_dense: could not build the CPU depthwise-conv gradient kernel ({err}); '
                      f'training on the CPU uses oneDNN\'s slower weight gradient. Install a C++ compiler '
                      f'(g++) or pass fast_dwconv_grad=False to ConvNeXt to silence this.')
        return None


class _DepthwiseConv2d(torch.autograd.Function):
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
            taps = _extension().depthwise_weight_grad(x.permute(0, 2, 3, 1), grad_out.permute(0, 2, 3, 1), size)
            grad_weight = taps.t().reshape(weight.shape)
        if ctx.needs_input_grad[2]:  # False where bias is None
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_weight, grad_bias


def fast_depthwise_grad_applies(x: torch.Tensor, conv: torch.nn.Conv2d) -> bool:
    """Whether :func:`depthwise_conv2d` would use the C++ weight gradient for ``x`` and ``conv``.

    Args:
        x: Input of the convolution.
        conv: The convolution; only a depthwise one with stride 1, an odd square kernel and zero padding
            ``k // 2`` (what the kernel computes) qualifies, any other takes ``conv(x)``.
    """
    size = conv.kernel_size[0]
    depthwise_same = (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (1, 1)
                      and conv.dilation == (1, 1) and conv.kernel_size == (size, size) and size % 2 == 1
                      and conv.padding == (size // 2, size // 2) and conv.padding_mode == 'zeros')
    return (depthwise_same and x.device.type == 'cpu' and x.dtype == torch.float32
            and conv.weight.dtype == torch.float32 and torch.is_grad_enabled() and conv.weight.requires_grad
            and not torch.compiler.is_compiling() and _extension() is not None)


def depthwise_conv2d(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv(x)``, with the C++ weight gradient where :func:`fast_depthwise_grad_applies`.

    Args:
        x: N x C x H x W input (channels_last is fastest).
        conv: The convolution (see :func:`fast_depthwise_grad_applies` for which ones use the kernel).
    """
    if fast_depthwise_grad_applies(x, conv):
        return _DepthwiseConv2d.apply(x, conv.weight, conv.bias)
    return conv(x)
