// Exact (erf) GELU forward and backward for float32 CPU tensors (see gelu.h for the approximation).
#include <ATen/Parallel.h>

#include "gelu.h"
#include "kernels.h"

using namespace convnext_dense;

namespace {
constexpr int64_t kGrain = 16384;  // elements per task: enough work to amortize a thread hand-off
}  // namespace

at::Tensor gelu_forward(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), "gelu_forward: float32 CPU tensors only");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  const float* xd = xc.data_ptr<float>();
  float* yd = y.data_ptr<float>();
  at::parallel_for(0, xc.numel(), kGrain, [&](int64_t begin, int64_t end) {
    gelu_rows(xd + begin, nullptr, end - begin, yd + begin, end - begin);
  });
  return y;
}

at::Tensor gelu_backward(const at::Tensor& grad_out, const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && grad_out.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  grad_out.sizes() == x.sizes(),
              "gelu_backward: float32 CPU tensors of one shape only");
  const at::Tensor xc = x.contiguous(), gc = grad_out.contiguous();
  at::Tensor grad_in = at::empty_like(xc);
  const float* xd = xc.data_ptr<float>();
  const float* gd = gc.data_ptr<float>();
  float* od = grad_in.data_ptr<float>();
  at::parallel_for(0, xc.numel(), kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
#ifdef __AVX2__
    for (; i + 8 <= end; i += 8)
      _mm256_storeu_ps(od + i, _mm256_mul_ps(_mm256_loadu_ps(gd + i), gelu_grad_avx2(_mm256_loadu_ps(xd + i))));
#endif
    for (; i < end; ++i) od[i] = gd[i] * gelu_grad_scalar(xd[i]);
  });
  return grad_in;
}
