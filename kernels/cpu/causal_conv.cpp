// kernels/cpu/causal_conv.cpp — the CPU reference of the fused causal depthwise convolution
// (kernels/causal_conv.h; the formulas are there), plus the call structs' dispatch and byte counts.
// Plain loops, OpenMP over (batch, channel); sums in double. The weight gradient is summed per
// kConvTile time steps, then over tiles in index order, exactly as the CUDA kernel does.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "kernels/causal_conv.h"
#include "kernels/cpu/fused_dispatch.h"

namespace ttt {

namespace {
double conv_io(const CausalConvShape& s, double tensors) {
  return tensors * static_cast<double>(s.batch * s.len * s.channels) * static_cast<double>(dtype_size(s.dtype));
}
size_t param_size(DType dt) { return dt == DType::f64 ? 8 : 4; }
}  // namespace

double CausalConvForward::bytes() const { return conv_io(s, 2); }
double CausalConvBackward::bytes() const { return conv_io(s, 3); }
size_t CausalConvBackward::workspace_bytes() const {
  const int64_t tiles = s.batch * ((s.len + kConvTile - 1) / kConvTile);
  return static_cast<size_t>(tiles * s.channels * (s.width + 1)) * param_size(s.dtype);
}

void CausalConvForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::causal_conv_forward,
                           [](Backend& b, auto& c) { cuda_impl::causal_conv_forward(b, c); });
}

void CausalConvBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::causal_conv_backward,
                           [](Backend& b, auto& c) { cuda_impl::causal_conv_backward(b, c); });
}

namespace cpu_impl {

namespace {

// H: the history's element type (S, or float under history_f32 with bf16 data).
template <class S, class P, class H = S>
void forward_typed(CausalConvForward& a) {
  const CausalConvShape& s = a.s;
  const int64_t k = s.width, C = s.channels;
  const P* w = static_cast<const P*>(a.w);
  const P* bias = static_cast<const P*>(a.bias);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const S* x = static_cast<const S*>(a.x.data) + b * a.x.sb + c;
      const H* h = a.history.data ? static_cast<const H*>(a.history.data) + b * a.history.sb + c : nullptr;
      S* y = static_cast<S*>(a.y.data) + b * a.y.sb + c;
      // The input at time tx of (history, x): history for tx < 0 (rounded to S), zero without one.
      const auto input = [&](int64_t tx) -> double {
        if (tx >= 0) return static_cast<double>(to_compute(x[tx * a.x.st]));
        if (!h) return 0.0;
        return static_cast<double>(to_compute(from_compute<S>(to_compute(h[(tx + k - 1) * a.history.st]))));
      };
      for (int64_t t = 0; t < s.len; ++t) {
        double acc = bias ? static_cast<double>(bias[c]) : 0.0;
        for (int64_t j = 0; j < k; ++j) acc += static_cast<double>(w[c * k + j]) * input(t - (k - 1) + j);
        y[t * a.y.st] = from_compute<S>(acc);
      }
      if (a.history_out.data) {
        H* ho = static_cast<H*>(a.history_out.data) + b * a.history_out.sb + c;
        for (int64_t j = 0; j < k - 1; ++j) ho[j * a.history_out.st] = from_compute<H>(input(s.len - (k - 1) + j));
      }
    }
}

template <class S, class P>
void backward_typed(CausalConvBackward& a) {
  const CausalConvShape& s = a.s;
  const int64_t k = s.width, C = s.channels, tiles = (s.len + kConvTile - 1) / kConvTile;
  const P* w = static_cast<const P*>(a.w);
  P* part = static_cast<P*>(a.workspace);  // [B, tiles, C, k + 1]
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const S* x = static_cast<const S*>(a.x.data) + b * a.x.sb + c;
      const S* dy = static_cast<const S*>(a.dy.data) + b * a.dy.sb + c;
      S* dx = static_cast<S*>(a.dx.data) + b * a.dx.sb + c;
      for (int64_t t = 0; t < s.len; ++t) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t ty = t + (k - 1) - j;
          if (ty < s.len) acc += static_cast<double>(w[c * k + j]) * static_cast<double>(to_compute(dy[ty * a.dy.st]));
        }
        dx[t * a.dx.st] = from_compute<S>(acc);
      }
      for (int64_t tile = 0; tile < tiles; ++tile) {
        std::vector<double> g(k + 1, 0.0);
        for (int64_t t = tile * kConvTile; t < std::min(s.len, (tile + 1) * kConvTile); ++t) {
          const double d = static_cast<double>(to_compute(dy[t * a.dy.st]));
          for (int64_t j = 0; j < k; ++j) {
            const int64_t tx = t - (k - 1) + j;
            if (tx >= 0) g[j] += d * static_cast<double>(to_compute(x[tx * a.x.st]));
          }
          g[k] += d;
        }
        P* p = part + ((b * tiles + tile) * C + c) * (k + 1);
        for (int64_t j = 0; j <= k; ++j) p[j] = static_cast<P>(g[j]);
      }
    }
  P* dw = static_cast<P*>(a.dw);
  P* db = static_cast<P*>(a.dbias);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j <= k; ++j) {
      P sum = 0;  // in the partials' type and index order, as the CUDA reduction
      for (int64_t bt = 0; bt < s.batch * tiles; ++bt) sum += part[(bt * C + c) * (k + 1) + j];
      if (j < k) dw[c * k + j] = sum;
      else if (db) db[c] = sum;
    }
}

template <class F>
void by_dtype(DType dt, F&& fn) {
  switch (dt) {
    case DType::f64: return fn(double{}, double{});
    case DType::f32: return fn(float{}, float{});
    case DType::bf16: return fn(bf16{}, float{});
    default: throw std::invalid_argument("causal_conv: expected float64, float32 or bfloat16 data");
  }
}

}  // namespace

void causal_conv_forward(CausalConvForward& c) {
  if (c.history_f32) {
    if (c.s.dtype != DType::bf16) throw std::invalid_argument("causal_conv: a float32 history goes with bfloat16 data");
    return forward_typed<bf16, float, float>(c);
  }
  by_dtype(c.s.dtype, [&](auto s, auto p) { forward_typed<decltype(s), decltype(p)>(c); });
}
void causal_conv_backward(CausalConvBackward& c) {
  by_dtype(c.s.dtype, [&](auto s, auto p) { backward_typed<decltype(s), decltype(p)>(c); });
}

}  // namespace cpu_impl
}  // namespace ttt
