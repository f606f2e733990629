// kernels/cuda/causal_conv.cu — the fused causal depthwise convolution (kernels/causal_conv.h).
// One block per (batch, tile of time steps, 256 channels) — kConvFwdTile steps for the forward, kConvTile for the
// backward (whose tiles are the weight-gradient partials); each thread walks the tile's steps for its
// channel with the last k inputs in registers, so x (forward) or x and dy (backward) are read
// once and coalesced across channels. The backward also writes the tile's partial weight/bias
// gradients, summed over tiles in a fixed order by a second kernel (deterministic).
// float32 and bfloat16 data, width 1..8 (float64 runs on the CPU reference).
#include "kernels/causal_conv.h"
#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {

constexpr int kConvThreads = 256;
// The forward writes no partials, so it takes short tiles for more blocks: measured on an H200
// (125M TTT-Linear step, 36 calls) 1.7 ms with 16-step tiles, 3.5 ms with 64.
constexpr int64_t kConvFwdTile = 16;

// H: the history's element type (S, or float under history_f32 with bf16 data: rounded to S as read).
template <class S, int K, class H = S>
__global__ void conv_fwd_kernel(CausalConvShape s, BTCView xv, BTCView yv, BTCView hv, BTCView hov, const float* w,
                                const float* bias) {
  const int64_t b = blockIdx.y, t0 = static_cast<int64_t>(blockIdx.x) * kConvFwdTile;
  const int64_t t1 = min(s.len, t0 + kConvFwdTile);
  const S* x = static_cast<const S*>(xv.data) + b * xv.sb;
  const H* h = hv.data ? static_cast<const H*>(hv.data) + b * hv.sb : nullptr;
  S* y = static_cast<S*>(yv.data) + b * yv.sb;
  const int64_t c = static_cast<int64_t>(blockIdx.z) * blockDim.x + threadIdx.x;
  // The input at time tx of (history, x): history for tx < 0, zero without one.
  const auto input = [&](int64_t tx) {
    if (tx >= 0) return to_compute(x[tx * xv.st + c]);
    return h ? to_compute(from_compute<S>(to_compute(h[(tx + K - 1) * hv.st + c]))) : 0.f;
  };
  if (c < s.channels) {
    // The block of the last tile writes the next call's history.
    if (hov.data && t1 == s.len) {
      H* ho = static_cast<H*>(hov.data) + b * hov.sb;
#pragma unroll
      for (int j = 0; j < K - 1; ++j) ho[j * hov.st + c] = from_compute<H>(input(s.len - (K - 1) + j));
    }
    float wc[K], win[K];
#pragma unroll
    for (int j = 0; j < K; ++j) wc[j] = w[c * K + j];
    const float bc = bias ? bias[c] : 0.f;
#pragma unroll
    for (int j = 0; j < K - 1; ++j) win[j] = input(t0 - (K - 1) + j);
    for (int64_t t = t0; t < t1; ++t) {
      win[K - 1] = to_compute(x[t * xv.st + c]);
      float acc = bc;
#pragma unroll
      for (int j = 0; j < K; ++j) acc += wc[j] * win[j];
      y[t * yv.st + c] = from_compute<S>(acc);
#pragma unroll
      for (int j = 0; j < K - 1; ++j) win[j] = win[j + 1];
    }
  }
}

template <class S, int K>
__global__ void conv_bwd_kernel(CausalConvShape s, BTCView xv, BTCView dyv, BTCView dxv, const float* w, float* part) {
  const int64_t b = blockIdx.y, tile = blockIdx.x, t0 = tile * kConvTile;
  const int64_t t1 = min(s.len, t0 + kConvTile), tiles = gridDim.x;
  const S* x = static_cast<const S*>(xv.data) + b * xv.sb;
  const S* dy = static_cast<const S*>(dyv.data) + b * dyv.sb;
  S* dx = static_cast<S*>(dxv.data) + b * dxv.sb;
  const int64_t c = static_cast<int64_t>(blockIdx.z) * blockDim.x + threadIdx.x;
  if (c < s.channels) {
    float wc[K], xw[K], dw[K], g[K + 1];
#pragma unroll
    for (int j = 0; j < K; ++j) wc[j] = w[c * K + j], g[j] = 0.f;
    g[K] = 0.f;
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
      const int64_t tx = t0 - (K - 1) + j;  // x behind t (for dw)
      xw[j] = tx >= 0 ? to_compute(x[tx * xv.st + c]) : 0.f;
      const int64_t ty = t0 + j;            // dy ahead of t (for dx)
      dw[j] = ty < s.len ? to_compute(dy[ty * dyv.st + c]) : 0.f;
    }
    for (int64_t t = t0; t < t1; ++t) {
      xw[K - 1] = to_compute(x[t * xv.st + c]);
      const int64_t ty = t + K - 1;
      dw[K - 1] = ty < s.len ? to_compute(dy[ty * dyv.st + c]) : 0.f;
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < K; ++j) acc += wc[j] * dw[K - 1 - j];
      dx[t * dxv.st + c] = from_compute<S>(acc);
      const float d = dw[0];  // dy[t]
#pragma unroll
      for (int j = 0; j < K; ++j) g[j] += d * xw[j];
      g[K] += d;
#pragma unroll
      for (int j = 0; j < K - 1; ++j) xw[j] = xw[j + 1], dw[j] = dw[j + 1];
    }
    float* p = part + ((b * tiles + tile) * s.channels + c) * (K + 1);
#pragma unroll
    for (int j = 0; j <= K; ++j) p[j] = g[j];
  }
}

// dw[c, j] (j < k) and dbias[c] (j = k): the partials summed over the bt (batch, tile) rows. A
// block owns kReduceCols consecutive columns of the [bt, C·(k+1)] partials; warp w sums rows
// w, w + 8, ... of its lane's column (each row's 32 columns one 128-byte load), then the 8 warp sums
// are added in warp order: the same order on every run (deterministic), and C·(k+1)/32 blocks
// with bt/8 independent loads per thread instead of one thread per column walking all bt rows.
constexpr int kReduceWarps = 8, kReduceCols = 32;
__global__ void __launch_bounds__(kReduceWarps * 32)
    conv_reduce_kernel(const float* part, int64_t bt, int64_t C, int K, float* dw, float* db) {
  __shared__ float sums[kReduceWarps][kReduceCols];
  const int64_t n = C * (K + 1);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kReduceCols + lane;
  float sum = 0.f;
  if (i < n)
    for (int64_t r = warp; r < bt; r += kReduceWarps) sum += part[r * n + i];
  sums[warp][lane] = sum;
  __syncthreads();
  if (warp != 0 || i >= n) return;
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kReduceWarps; ++w) total += sums[w][lane];
  const int64_t c = i / (K + 1);
  const int j = static_cast<int>(i % (K + 1));
  if (j < K) dw[c * K + j] = total;
  else if (db) db[c] = total;
}

template <class Fn>
void by_type_and_width(const CausalConvShape& s, Fn&& fn) {
  auto width = [&](auto tag) {
    using S = decltype(tag);
    switch (s.width) {
#define TTT_W(K) \
  case K: return fn(S{}, std::integral_constant<int, K>{});
      TTT_W(1) TTT_W(2) TTT_W(3) TTT_W(4) TTT_W(5) TTT_W(6) TTT_W(7) TTT_W(8)
#undef TTT_W
      default: throw std::invalid_argument("causal_conv (CUDA): width must be 1..8, got " + std::to_string(s.width));
    }
  };
  if (s.dtype == DType::f32) return width(float{});
  if (s.dtype == DType::bf16) return width(bf16{});
  throw std::invalid_argument(std::string("causal_conv (CUDA): float32 or bfloat16 data, got ") + dtype_name(s.dtype));
}

cudaStream_t stream_of(Backend& be) { return static_cast<cudaStream_t>(be.native_stream()); }
// (time tiles, batch, blocks of kConvThreads channels): one channel per thread.
dim3 grid_of(const CausalConvShape& s, int64_t tile) {
  return dim3(static_cast<unsigned>((s.len + tile - 1) / tile), static_cast<unsigned>(s.batch),
              static_cast<unsigned>((s.channels + kConvThreads - 1) / kConvThreads));
}

}  // namespace

void causal_conv_forward(Backend& be, CausalConvForward& c) {
  if (c.s.batch == 0 || c.s.len == 0) return;
  if (c.history_f32 && c.s.dtype != DType::bf16)
    throw std::invalid_argument("causal_conv: a float32 history goes with bfloat16 data");
  by_type_and_width(c.s, [&](auto tag, auto width) {
    using S = decltype(tag);
    constexpr int K = decltype(width)::value;
    const auto kernel = c.history_f32 ? conv_fwd_kernel<S, K, float> : conv_fwd_kernel<S, K, S>;
    kernel<<<grid_of(c.s, kConvFwdTile), kConvThreads, 0, stream_of(be)>>>(
        c.s, c.x, c.y, c.history, c.history_out, static_cast<const float*>(c.w), static_cast<const float*>(c.bias));
    CUDA_CHECK_LAUNCH();
  });
}

void causal_conv_backward(Backend& be, CausalConvBackward& c) {
  if (c.s.batch == 0 || c.s.len == 0) return;
  float* part = static_cast<float*>(c.workspace);
  by_type_and_width(c.s, [&](auto tag, auto width) {
    conv_bwd_kernel<decltype(tag), decltype(width)::value><<<grid_of(c.s, kConvTile), kConvThreads, 0, stream_of(be)>>>(
        c.s, c.x, c.dy, c.dx, static_cast<const float*>(c.w), part);
    CUDA_CHECK_LAUNCH();
  });
  const int64_t n = c.s.channels * (c.s.width + 1);
  const int64_t bt = c.s.batch * ((c.s.len + kConvTile - 1) / kConvTile);
  conv_reduce_kernel<<<static_cast<unsigned>((n + kReduceCols - 1) / kReduceCols), kReduceWarps * 32, 0, stream_of(be)>>>(
      part, bt, c.s.channels, static_cast<int>(c.s.width), static_cast<float*>(c.dw), static_cast<float*>(c.dbias));
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
