// The CPU kernels of convnext_dense/ops, declared for their Python bindings (bindings.cpp). Each takes and returns
// float32 CPU tensors; the Python side (ops/*.py) checks dtype, device and layout before calling.
#pragma once
#include <ATen/ATen.h>

// Weight gradient of a stride-1, zero-padded k x k depthwise convolution: NHWC x and grad_out -> (k*k, C).
at::Tensor depthwise_weight_grad(const at::Tensor& x, const at::Tensor& grad_out, int64_t k);

// Exact (erf) GELU and its gradient, elementwise.
at::Tensor gelu_forward(const at::Tensor& x);
at::Tensor gelu_backward(const at::Tensor& grad_out, const at::Tensor& x);

// The ConvNeXt block's inference MLP tail on rows of channels: shortcut + gelu(x w1^T + b1) w2^T + b2.
at::Tensor mlp_tail(const at::Tensor& x, const at::Tensor& shortcut, const at::Tensor& w1, const at::Tensor& b1,
                    const at::Tensor& w2, const at::Tensor& b2);
