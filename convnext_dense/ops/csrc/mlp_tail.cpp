// The ConvNeXt block's MLP tail for float32 CPU inference:
//
//   out = shortcut + GELU(x w1^T + b1) w2^T + b2        (layer scale already folded into w2, b2 by the caller)
//
// Eager PyTorch copies the bias into every row of each linear's output before its GEMM, applies GELU as a pass
// over a fresh allocation as large as the 4C-wide hidden activations, then scales and adds the residual as two
// more passes. Here the first GEMM writes without a bias, one pass adds the bias and applies GELU in place
// (gelu.h, 2x faster than PyTorch's), the output starts as shortcut + b2 and the second GEMM accumulates onto
// it. Single-threaded, the rows run in tiles whose hidden activations stay in cache; with more threads, as one
// tile: each GEMM then uses every thread, and a tile per thread would pay a thread hand-off per GEMM (MKL opens
// its own parallel region inside ours), which a shared machine turned into 4x slowdowns. The GEMMs are ATen's.
#include <ATen/Parallel.h>

#include <algorithm>

#include "gelu.h"
#include "kernels.h"

using namespace convnext_dense;

namespace {
// Single-threaded, tiles of 512 rows where the hidden layer is at most 1024 wide (a tile's activations within
// 2 MiB): per ConvNeXt-T block at 224x224, batch 8, on an AVX2 EPYC, 1.44x (stage 0) and 1.18x (stage 1) faster
// than PyTorch's eager MLP, against 1.22x and 1.12x as one tile. Wider layers run as one tile: MKL repacks the
// weight for every GEMM call, and tiles of 256-512 rows there lost 1-5% to PyTorch where one tile won 1-7%.
constexpr int64_t kTileRows = 512;
constexpr int64_t kMaxTiledHidden = 1024;
}  // namespace

at::Tensor mlp_tail(const at::Tensor& x, const at::Tensor& shortcut, const at::Tensor& w1, const at::Tensor& b1,
                    const at::Tensor& w2, const at::Tensor& b2) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && shortcut.sizes() == x.sizes() && shortcut.is_contiguous(),
              "mlp_tail: x and shortcut must be contiguous rows x channels of one shape");
  const int64_t rows = x.size(0), channels = x.size(1), hidden = w1.size(0);
  TORCH_CHECK(w1.sizes() == at::IntArrayRef({hidden, channels}) && w2.sizes() == at::IntArrayRef({channels, hidden}) &&
                  b1.numel() == hidden && b2.numel() == channels,
              "mlp_tail: weights must be (hidden, C) and (C, hidden) with matching biases");
  const at::Tensor b1c = b1.contiguous(), b2c = b2.contiguous();
  const float* b1d = b1c.data_ptr<float>();
  const float* b2d = b2c.data_ptr<float>();
  const at::Tensor w1t = w1.t(), w2t = w2.t();  // transposed views: the GEMM reads them as they are
  at::Tensor out = at::empty({rows, channels}, x.options());
  const bool tiled = at::get_num_threads() == 1 && hidden <= kMaxTiledHidden;
  const int64_t tile = tiled ? std::min(rows, kTileRows) : rows;
  at::Tensor buffer = at::empty({tile, hidden}, x.options());
  for (int64_t r0 = 0; r0 < rows; r0 += tile) {
    const int64_t n = std::min(tile, rows - r0);
    at::Tensor h = buffer.narrow(0, 0, n), o = out.narrow(0, r0, n);
    at::mm_out(h, x.narrow(0, r0, n), w1t);
    float* hd = h.data_ptr<float>();
    const float* s = shortcut.data_ptr<float>() + r0 * channels;
    float* od = o.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t first, int64_t last) {
      gelu_rows(hd + first * hidden, b1d, hidden, hd + first * hidden, (last - first) * hidden);
      for (int64_t r = first; r < last; ++r) {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) od[r * channels + c] = s[r * channels + c] + b2d[c];
      }
    });
    o.addmm_(h, w2t);
  }
  return out;
}
