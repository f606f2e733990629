// kernels/cuda/ttt_mlp_scan.cu — launchers of the fused TTT-MLP scan (kernels/ttt_mlp_scan.h): one
// block of 8·head_dim threads per (batch, head) for the forward (ttt_mlp_fwd.cuh); the backward is
// one block per (batch, head, checkpoint group) replaying the states (only with checkpoint groups
// > 1), one block per (batch, head) for the reverse walk (ttt_mlp_bwd.cuh), both in one grid where
// the walks leave SMs free (ttt_mlp_bwd_overlap.cuh), then a deterministic reduction of the reverse
// walk's per-(b, h) partials. With TTTMLPScanShape::cluster 2 or 4 and
// bf16 products, each of those blocks is a cluster of that many blocks sharing the head's hidden
// units (ttt_mlp_fwd_cluster.cuh, ttt_mlp_bwd_cluster.cuh).
// With TTTMLPScanShape::split_walk the backward is the split one instead (one block a unit): the
// replay, every chunk's test path and a chain per (batch, head), as one grid where the chains leave
// SMs free (ttt_mlp_bwd_split.cuh, ttt_mlp_bwd_chain.cuh, ttt_mlp_bwd_split_grid.cuh).
//
// Covered: float32 data (XQ, XK, XV, out, dout and their gradients float32, or bf16 with bf16
// products: TTTMLPScanShape::bf16_io), head_dim 16, 32 or 64 with hidden 4·head_dim, mini_batch <= 16, shared
// memory within the device's opt-in limit (bf16 products: every covered head_dim; exact float32
// products: the operand copies of W1 and W2 need twice the space, which head_dim 64 exceeds).
// Anything else: ttt_mlp_scan_unsupported says why, and the layer falls back to the composite dual
// form.
#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/scan_launch.cuh"
#include "kernels/cuda/ttt_mlp_bwd.cuh"
#include "kernels/cuda/ttt_mlp_bwd_cluster.cuh"
#include "kernels/cuda/ttt_mlp_bwd_split_grid.cuh"
#include "kernels/cuda/ttt_mlp_bwd_overlap.cuh"
#include "kernels/ttt_mlp_scan.h"

namespace ttt::cuda_impl {

namespace {

using scan_launch::smem_optin;
using scan_launch::stream_of;

using tttm::Cfg;
using tttm::Params;

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_fwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::fwd_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_replay_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::replay_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

// Cluster c = blockIdx.x / NCTA (the cluster's blocks are consecutive in x).
template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_fwd_cluster_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::cluster_fwd_block<C>(p, static_cast<int>(blockIdx.x) / C::NCTA, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_replay_cluster_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::cluster_replay_block<C>(p, static_cast<int>(blockIdx.x) / C::NCTA, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_bwd_cluster_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::cluster_bwd_block<C>(p, static_cast<int>(blockIdx.x) / C::NCTA, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_bwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::bwd_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

// The split backward (TTTMLPScanShape::split_walk): the test path of chunk blockIdx.x % NC of
// (b, h) = blockIdx.x / NC, then the chain of (b, h) = blockIdx.x.
template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_prep_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::prep_block<C>(p, static_cast<int>(blockIdx.x), smem);
}
template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_chain_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::chain_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_split_grid_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::split_bwd_unit<C>(p, static_cast<int64_t>(blockIdx.x), smem);
}

// The backward's replay and reverse walks as one grid: unit blockIdx.x / blocks a unit (a block, or
// a cluster whose blocks are consecutive in x).
template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_mlp_bwd_overlap_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttm::overlap_bwd_unit<C>(p, static_cast<int>(blockIdx.x) / tttm::blocks_of_unit<C>(), smem);
}

// Sums the per-(b, h) partials over the batch (and over heads for tok) in index order.
__global__ void ttt_mlp_reduce_kernel(Params p, int F, float* dw1, float* db1, float* dw2, float* db2, float* dlnw,
                                      float* dlnb, float* dtok) {
  const int64_t n = tttm::reduce_count(p, F);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tttm::reduce_partials_at(i, p, F, dw1, db1, dw2, db2, dlnw, dlnb, dtok);
}


// Calls fn(Cfg<F, MMA>{}) for the shape's head_dim and precision; false when none matches. head_dim
// 64 with exact float32 products is not instantiated: its shared memory (FwdSmem/BwdSmem of
// Cfg<64, false>: 255 / 405 KiB) exceeds every device's limit.
template <class Fn>
bool dispatch(const TTTMLPScanShape& s, Fn&& fn) {
  const bool mma = s.low_precision;
  switch (s.head_dim) {
    case 16: mma ? fn(Cfg<16, true>{}) : fn(Cfg<16, false>{}); return true;
    case 32: mma ? fn(Cfg<32, true>{}) : fn(Cfg<32, false>{}); return true;
    case 64:
      if (!mma) return false;
      fn(Cfg<64, true>{});
      return true;
    default: return false;
  }
}


// The blocks a head runs on (TTTMLPScanShape::cluster): 1 for float32 products or before sm_90;
// cluster 0 (auto): 2 where batch · heads · 2 blocks fit the SMs at once (the cluster kernels'
// blocks hold an SM each), else 1. Measured on an H100 (BENCHMARKS.md, 2026-12-05), one 125M layer
// at 2 × 8192: clusters of 2 16.1 ms fwd+bwd, of 4 18.2, one block 21.4; at 8 × 2048 (192 blocks
// for 132 SMs) clusters of 2 took 9.0 ms against one block's 6.7.
int blocks_per_head(const TTTMLPScanShape& s) {
  if (!s.low_precision || scan_launch::compute_major() < 9) return 1;
  if (s.cluster != 0) return static_cast<int>(s.cluster);
  return s.batch * s.heads * 2 <= scan_launch::sm_count() ? 2 : 1;
}

// Whether the cluster kernels complete their exchanges through transaction barriers (`async`, the
// default; ttt_mlp_fwd_cluster.cuh) or through cluster barriers (TTT_MLP_SCAN_EXCHANGE=barrier).
// Measured on an H100 (BENCHMARKS.md, session 26): one 125M layer at 2 × 8192, fwd+bwd 14.32 →
// 13.87 ms on clusters of 2 and 16.36 → 15.29 ms on clusters of 4; the model 73.8k → 75.6k tok/s.
// Both modes give the same results bit for bit (test_ttt_mlp_scan).
bool async_exchanges() {
  const char* env = std::getenv("TTT_MLP_SCAN_EXCHANGE");
  const std::string mode = env ? env : "async";
  if (mode != "barrier" && mode != "async")
    throw std::invalid_argument("TTT_MLP_SCAN_EXCHANGE must be barrier or async (got '" + mode + "')");
  return mode == "async";
}

// Calls fn with the configuration a head runs on: a cluster of `blocks` blocks (ClusterCfg; bf16
// products only) or one block (C).
template <class C, class Fn>
void with_unit_cfg(int blocks, Fn&& fn) {
  if constexpr (C::MMA) {
    const bool xa = blocks > 1 && async_exchanges();
    if (blocks == 2) return xa ? fn(tttm::ClusterCfg<C::F, true, 2, true>{}) : fn(tttm::ClusterCfg<C::F, true, 2>{});
    if (blocks == 4) return xa ? fn(tttm::ClusterCfg<C::F, true, 4, true>{}) : fn(tttm::ClusterCfg<C::F, true, 4>{});
  }
  fn(C{});
}

// What a unit of configuration U launches, a cluster of U::NCTA blocks (ClusterCfg) or one block
// (Cfg) a head: the forward or the backward's replay, the reverse walk, and their shared memory.
template <class U, bool = tttm::is_cluster_cfg<U>::value>
struct UnitKernels {
  static auto forward(bool replay) { return replay ? ttt_mlp_replay_cluster_kernel<U> : ttt_mlp_fwd_cluster_kernel<U>; }
  static auto walk() { return ttt_mlp_bwd_cluster_kernel<U>; }
  static constexpr size_t forward_smem = sizeof(tttm::ClusterFwdSmem<U>), walk_smem = sizeof(tttm::ClusterBwdSmem<U>);
};
template <class U>
struct UnitKernels<U, false> {
  static auto forward(bool replay) { return replay ? ttt_mlp_replay_kernel<U> : ttt_mlp_fwd_kernel<U>; }
  static auto walk() { return ttt_mlp_bwd_kernel<U>; }
  static constexpr size_t forward_smem = sizeof(tttm::FwdSmem<U>), walk_smem = sizeof(tttm::BwdSmem<U>);
};

// Launches `kernel` on `units` units of configuration U: clusters of U::NCTA blocks, or blocks.
template <class U, class K>
void launch_units(K kernel, int64_t units, size_t smem, const Params& p, Backend& be) {
  if constexpr (tttm::is_cluster_cfg<U>::value)
    scan_launch::launch_clusters(kernel, U::THREADS, units * U::NCTA, U::NCTA, smem, p, be);
  else
    scan_launch::launch_blocks(kernel, U::THREADS, units, smem, p, be);
}

// Runs the forward (replay false) or the backward's replay (true) of shape s: on clusters of
// blocks_per_head(s) blocks where that is more than one, else one block each.
template <class C>
void launch_forward_kind(const TTTMLPScanShape& s, const Params& p, bool replay, Backend& be) {
  const int64_t units = int64_t{p.B} * p.H * (replay ? p.NG : 1);
  with_unit_cfg<C>(blocks_per_head(s), [&](auto u) {
    using U = decltype(u);
    launch_units<U>(UnitKernels<U>::forward(replay), units, UnitKernels<U>::forward_smem, p, be);
  });
}

// The backward's reverse walk: one block, or one cluster of s.cluster blocks (bf16 products), a head.
template <class C>
void launch_walk(const TTTMLPScanShape& s, const Params& p, Backend& be) {
  with_unit_cfg<C>(blocks_per_head(s), [&](auto u) {
    using U = decltype(u);
    launch_units<U>(UnitKernels<U>::walk(), int64_t{p.B} * p.H, UnitKernels<U>::walk_smem, p, be);
  });
}

// The [B, H, T, F] tensors' rows as IORows reads and writes them: 16-byte aligned (float32) or
// 8-byte (bf16), for its vector loads and stores. The op's tensors always are (unit stride in F,
// F a multiple of 16); a caller's that are not get an error instead of a misaligned access.
void check_rows(const Params& p, std::initializer_list<tttk::Ten> ts) {
  const int align = p.bio ? 8 : 16;
  if (!tttk::detail::rows_aligned(ts, p.bio ? 2 : 4, align))
    throw std::invalid_argument("ttt_mlp_scan (CUDA): the [B, H, T, f] tensors' rows must be " +
                                std::to_string(align) + "-byte aligned (data pointer and strides)");
}

// Whether the backward runs its replay and walks as one grid (ttt_mlp_bwd_overlap.cuh): with groups
// to replay, where the walks (B·H units of `blocks` blocks) leave an SM free for the replays, unless
// TTT_MLP_SCAN_BWD=launches (the replay's launch, then the walks'). Measured on an H200 (125M shapes,
// G 32, bf16 storage, BENCHMARKS.md session 23): fwd+bwd 14.16 ms against 15.32 at 2 × 8192
// (clusters of 2), 5.93 against 5.96 at 8 × 2048 (one block a head).
// The split backward (split) overlaps its test paths with its chains with any checkpoint group.
bool overlapped_backward(const Params& p, int blocks, bool split = false) {
  const char* env = std::getenv("TTT_MLP_SCAN_BWD");
  const std::string mode = env ? env : "auto";
  if (mode != "auto" && mode != "overlap" && mode != "launches")
    throw std::invalid_argument("TTT_MLP_SCAN_BWD must be auto, overlap or launches (got '" + mode + "')");
  return mode != "launches" && (p.G > 1 || split) && scan_launch::leaves_sm_free(int64_t{p.B} * p.H * blocks);
}

// The split backward: the replay (with groups > 1; clusters where the shape runs them), every
// chunk's test path (one block each), the chain (one block a head). The records are sized on the
// host by TTTMLPScanShape::split_record_bytes, which must agree with the kernels' Rec.
template <class C>
void launch_split_backward(const TTTMLPScanShape& s, const Params& p, Backend& be) {
  if (tttm::Rec<C>::bytes != s.split_record_bytes())
    throw std::logic_error("ttt_mlp_scan (CUDA): split record of " + std::to_string(tttm::Rec<C>::bytes) +
                           " bytes, the shape sizes " + std::to_string(s.split_record_bytes()));
  if (overlapped_backward(p, 1, true)) {  // one grid (ttt_mlp_bwd_split_grid.cuh)
    Params q = p;
    q.overlap = true;
    if (p.G > 1)
      CUDA_CHECK(cudaMemsetAsync(tttm::replay_flags<C>(q), 0, tttm::replay_flag_count(q) * sizeof(unsigned),
                                 stream_of(be)));
    CUDA_CHECK(cudaMemsetAsync(tttm::prep_flags<C>(q), 0, tttm::prep_flag_count(q) * sizeof(unsigned), stream_of(be)));
    const size_t smem = std::max({sizeof(tttm::FwdSmem<C>), sizeof(tttm::BwdSmem<C>), sizeof(tttm::ChainSmem<C>)});
    return scan_launch::launch_blocks(ttt_mlp_split_grid_kernel<C>, C::THREADS, tttm::split_units(q), smem, q, be);
  }
  if (p.G > 1) launch_forward_kind<C>(s, p, true, be);
  scan_launch::launch_blocks(ttt_mlp_prep_kernel<C>, C::THREADS, int64_t{p.B} * p.H * p.NC, sizeof(tttm::BwdSmem<C>),
                             p, be);
  scan_launch::launch_blocks(ttt_mlp_chain_kernel<C>, C::THREADS, int64_t{p.B} * p.H, sizeof(tttm::ChainSmem<C>), p,
                             be);
}

// The backward's replay (with groups > 1) and reverse walks: one overlapped grid, or the replay's
// launch then the walks'.
template <class C>
void launch_replay_and_walks(const TTTMLPScanShape& s, const Params& p, Backend& be) {
  if (s.split_walk) return launch_split_backward<C>(s, p, be);
  const int blocks = blocks_per_head(s);
  if (!overlapped_backward(p, blocks)) {
    if (p.G > 1) launch_forward_kind<C>(s, p, true, be);  // the state entering every chunk, all groups at once
    return launch_walk<C>(s, p, be);
  }
  Params q = p;
  q.overlap = true;
  with_unit_cfg<C>(blocks, [&](auto u) {
    using U = decltype(u);
    CUDA_CHECK(cudaMemsetAsync(tttm::replay_flags<U>(q), 0, tttm::replay_flag_count(q) * sizeof(unsigned),
                               stream_of(be)));
    launch_units<U>(ttt_mlp_bwd_overlap_kernel<U>, tttm::overlap_units(q),
                    std::max(UnitKernels<U>::forward_smem, UnitKernels<U>::walk_smem), q, be);
  });
}

}  // namespace

std::string ttt_mlp_scan_unsupported(const TTTMLPScanShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernel runs float32 data (got " + std::string(dtype_name(s.dtype)) + ")";
  if (s.bf16_io && !s.low_precision) return "bf16 storage comes with bf16 products (low_precision)";
  if (s.mini_batch > tttk::KP)
    return "the CUDA kernel handles mini_batch <= 16 (got " + std::to_string(s.mini_batch) + ")";
  if (s.hidden != 4 * s.head_dim)
    return "the CUDA kernel handles hidden = 4 · head_dim (got " + std::to_string(s.hidden) + ")";
  if (s.len >= (int64_t{1} << 31) || s.batch * s.heads * s.groups() >= (int64_t{1} << 31)) return "sequence too long";
  std::string why;
  const bool known = dispatch(s, [&](auto c) {
    using C = decltype(c);
    size_t need = std::max(UnitKernels<C>::forward_smem, UnitKernels<C>::walk_smem);  // one block a head too
    if (s.split_walk) need = std::max(need, sizeof(tttm::ChainSmem<C>));
    with_unit_cfg<C>(blocks_per_head(s), [&](auto u) {
      using U = decltype(u);
      need = std::max({need, UnitKernels<U>::forward_smem, UnitKernels<U>::walk_smem});
    });
    if (need > static_cast<size_t>(smem_optin()))
      why = "head_dim " + std::to_string(C::F) + (C::MMA ? " (bf16 products)" : " (float32 products)") + " needs " +
            std::to_string(need) + " bytes of shared memory, the device allows " + std::to_string(smem_optin()) +
            (C::MMA ? "" : " (bf16 products, i.e. autocast, fit)");
  });
  if (!known && s.head_dim == 64)
    return "head_dim 64 with float32 products needs " + std::to_string(sizeof(tttm::BwdSmem<Cfg<64, false>>)) +
           " bytes of shared memory (bf16 products, i.e. autocast, need " +
           std::to_string(sizeof(tttm::BwdSmem<Cfg<64, true>>)) + ")";
  if (!known) return "the CUDA kernel handles head_dim 16, 32 or 64 (got " + std::to_string(s.head_dim) + ")";
  if (why.empty() && s.cluster > 1 && s.low_precision && scan_launch::compute_major() < 9)
    why = "clusters of " + std::to_string(s.cluster) + " blocks need an sm_90 device (model.ttt.mlp_cluster=1 runs "
          "one block a head)";
  return why;
}

void ttt_mlp_scan_forward(Backend& be, TTTMLPScanForward& c) {
  const Params p = tttm::params_of(c);
  check_rows(p, {p.xq, p.xk, p.xv, p.out});
  dispatch(c.s, [&](auto cfg) {
    using C = decltype(cfg);
    launch_forward_kind<C>(c.s, p, false, be);
  });
}

void ttt_mlp_scan_backward(Backend& be, TTTMLPScanBackward& c) {
  const Params p = tttm::params_of(c);
  check_rows(p, {p.xq, p.xk, p.xv, p.dout, p.dxq, p.dxk, p.dxv});
  dispatch(c.s, [&](auto cfg) {
    using C = decltype(cfg);
    launch_replay_and_walks<C>(c.s, p, be);
  });
  const int F = static_cast<int>(c.s.head_dim);
  const int64_t n = tttm::reduce_count(p, F);
  ttt_mlp_reduce_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream_of(be)>>>(
      p, F, static_cast<float*>(c.dw1), static_cast<float*>(c.db1), static_cast<float*>(c.dw2),
      static_cast<float*>(c.db2), static_cast<float*>(c.dln_w), static_cast<float*>(c.dln_b),
      static_cast<float*>(c.dtok));
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
