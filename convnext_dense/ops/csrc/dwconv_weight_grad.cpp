// Weight gradient of a stride-1, zero-padded depthwise convolution on the CPU (float32, NHWC).
//
// grad_weight[kh * k + kw, c] = sum over n, h, w of x[n, h + kh - k/2, w + kw - k/2, c] * grad_out[n, h, w, c].
// Each thread accumulates its rows into its own k*k x C buffer (summed at the end); the innermost loop runs
// over contiguous channels and vectorises.
#include <ATen/Parallel.h>

#include "kernels.h"

at::Tensor depthwise_weight_grad(const at::Tensor& x, const at::Tensor& grad_out, int64_t k) {
  TORCH_CHECK(x.dim() == 4 && grad_out.sizes() == x.sizes(), "depthwise_weight_grad: NHWC x and grad_out of one shape");
  TORCH_CHECK(x.scalar_type() == at::kFloat && grad_out.scalar_type() == at::kFloat, "depthwise_weight_grad: float32 only");
  auto xc = x.contiguous();
  auto gc = grad_out.contiguous();
  const int64_t N = xc.size(0), H = xc.size(1), W = xc.size(2), C = xc.size(3), pad = k / 2;
  const float* xd = xc.data_ptr<float>();
  const float* gd = gc.data_ptr<float>();
  const int64_t slots = at::get_num_threads();
  auto partial = at::zeros({slots, k * k, C}, xc.options());
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
