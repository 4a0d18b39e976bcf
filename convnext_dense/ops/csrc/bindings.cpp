// Python bindings of the CPU kernels (declared in kernels.h); built on first use by convnext_dense/ops/extension.py.
#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("depthwise_weight_grad", &depthwise_weight_grad, "Depthwise conv weight gradient (NHWC float32)");
  m.def("gelu_forward", &gelu_forward, "Exact GELU (float32)");
  m.def("gelu_backward", &gelu_backward, "Gradient of the exact GELU (float32)");
  m.def("mlp_tail", &mlp_tail, "ConvNeXt block MLP tail for inference (rows x channels, float32)");
}
