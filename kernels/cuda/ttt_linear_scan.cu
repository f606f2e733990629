// kernels/cuda/ttt_linear_scan.cu — launchers of the fused TTT-Linear scan (kernels/ttt_linear_scan.h):
// one block per (batch, head) for the forward (ttt_linear_fwd.cuh); the backward is one block per
// (batch, head, checkpoint group) replaying the states (ttt_linear_replay.cuh), then either one
// block per (batch, head) for the reverse walk (ttt_linear_bwd.cuh), or chunk-parallel
// (TTTLinearScanPlan, ttt_linear_chain.cuh) the direct pass, the serial state-gradient walk and the
// tokens pass, overlapped in one grid (bwd_overlap_block) or as three kernels (chunks-serial); then a
// deterministic reduction of the partials.
//
// Covered: float32 data, head_dim in {16, 32, 64, 96, 128}, mini_batch <= 16, shared memory within
// the device's opt-in limit (low_precision: bf16 operands on the tensor cores; otherwise exact
// float32 products). Anything else: ttt_linear_scan_unsupported says why, and the layer falls back
// to the composite dual form.
#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/scan_launch.cuh"
#include "kernels/cuda/ttt_linear_chain.cuh"
#include "kernels/cuda/ttt_linear_fwd_par.cuh"
#include "kernels/ttt_linear_scan.h"

namespace ttt::cuda_impl {

namespace {

using scan_launch::smem_optin;
using scan_launch::stream_of;

using tttk::Cfg;
using tttk::Params;

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_fwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::fwd_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_fwd_state_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::fwd_state_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS) ttt_linear_fwd_out_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::fwd_out_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS) ttt_linear_fwd_overlap_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::fwd_overlap_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

// Several forward calls in one launch per pass (TTTLinearScanForwardGroup): every call's B·H walks
// side by side, call c's (b, h) at block c·bh + (b, h); output blocks range-major over (call, b, h),
// the order in which the walks finish ranges (a call with fewer ranges leaves its late blocks idle).
struct ParamsGroup {
  Params p[TTTLinearScanForwardGroup::kMaxCalls];
  int count = 0, bh = 0, max_ranges = 1;
};

template <class C>
TTT_DEV void group_out_block(const ParamsGroup& g, int i, char* smem) {
  const int n = g.count * g.bh, r = i / n, j = i % n;
  const Params& p = g.p[j / g.bh];
  if (r < p.R) tttk::fwd_out_block<C>(p, (j % g.bh) * p.R + r, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_fwd_group_kernel(const __grid_constant__ ParamsGroup g) {
  extern __shared__ __align__(16) char smem[];
  const int blk = static_cast<int>(blockIdx.x);
  tttk::fwd_block<C>(g.p[blk / g.bh], blk % g.bh, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_fwd_state_group_kernel(const __grid_constant__ ParamsGroup g) {
  extern __shared__ __align__(16) char smem[];
  const int blk = static_cast<int>(blockIdx.x);
  tttk::fwd_state_block<C>(g.p[blk / g.bh], blk % g.bh, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS) ttt_linear_fwd_out_group_kernel(const __grid_constant__ ParamsGroup g) {
  extern __shared__ __align__(16) char smem[];
  group_out_block<C>(g, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS) ttt_linear_fwd_overlap_group_kernel(const __grid_constant__ ParamsGroup g) {
  extern __shared__ __align__(16) char smem[];
  const int blk = static_cast<int>(blockIdx.x), n = g.count * g.bh;
  if (blk < n) return tttk::fwd_state_block<C>(g.p[blk / g.bh], blk % g.bh, smem);
  group_out_block<C>(g, blk - n, smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS) ttt_linear_replay_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::replay_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C, tttk::Mode M>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_bwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::bwd_block<C, M>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_chain_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::chain_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1) ttt_linear_bwd_overlap_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  tttk::bwd_overlap_block<C>(p, static_cast<int>(blockIdx.x), smem);
}

// Sums the partial slots in index order (tttk::reduce_partials_at).
__global__ void ttt_linear_reduce_kernel(const float* partials, int B, int H, int F, int K, int R, float* dw0,
                                         float* db0, float* dlnw, float* dlnb, float* dtok) {
  const int64_t n = tttk::reduce_count(H, F, K);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tttk::reduce_partials_at(i, partials, B, H, F, K, R, dw0, db0, dlnw, dlnb, dtok);
}

template <class C>
constexpr size_t fwd_smem() { return sizeof(tttk::FwdSmem<C>); }
template <class C>
constexpr size_t bwd_smem() { return sizeof(tttk::BwdSmem<C>); }
template <class C>
constexpr size_t replay_smem() { return sizeof(tttk::ReplaySmem<C>); }
template <class C>
constexpr size_t chain_smem() { return sizeof(tttk::ChainSmem<C>); }


// Calls fn(Cfg<F, MMA, BIO>{}) for the shape's head_dim, precision and storage; false when none
// matches.
template <class Fn>
bool dispatch(const TTTLinearScanShape& s, Fn&& fn) {
  const bool mma = s.low_precision, bio = s.bf16_io;
  switch (s.head_dim) {
#define TTT_CASE(F)                          \
  case F:                                    \
    if (bio) fn(Cfg<F, true, true>{});       \
    else if (mma) fn(Cfg<F, true>{});        \
    else fn(Cfg<F, false>{});                \
    return true;
    TTT_CASE(16) TTT_CASE(32) TTT_CASE(64) TTT_CASE(96) TTT_CASE(128)
#undef TTT_CASE
    default: return false;
  }
}

// The kernels move [.., F] rows 16 bytes at a time (autograd/ops/ttt_linear_scan.cpp copies inputs
// that are not so aligned).
void require_aligned(const Params& p) {
  if (!p.vec)
    throw std::invalid_argument("ttt_linear_scan (CUDA): every [.., head_dim] row must start 16-byte aligned "
                                "(data pointer and B/H/T strides multiples of 4 floats)");
}


}  // namespace

std::string ttt_linear_scan_unsupported(const TTTLinearScanShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernel runs float32 data (got " + std::string(dtype_name(s.dtype)) + ")";
  if (s.mini_batch > tttk::KP)
    return "the CUDA kernel handles mini_batch <= 16 (got " + std::to_string(s.mini_batch) + ")";
  if (s.len >= (int64_t{1} << 31) || s.batch * s.heads * s.groups() >= (int64_t{1} << 31)) return "sequence too long";
  std::string why;
  const bool known = dispatch(s, [&](auto c) {
    using C = decltype(c);
    const size_t need = std::max({fwd_smem<C>(), bwd_smem<C>(), replay_smem<C>(), chain_smem<C>()});
    if (need > static_cast<size_t>(smem_optin()))
      why = "head_dim " + std::to_string(C::F) + (C::MMA ? " (bf16)" : " (float32)") + " needs " +
            std::to_string(need) + " bytes of shared memory, the device allows " + std::to_string(smem_optin()) +
            (C::BIO ? " (bf16 storage)" : "");
  });
  if (!known) return "the CUDA kernel handles head_dim 16, 32, 64, 96 or 128 (got " + std::to_string(s.head_dim) + ")";
  return why;
}


void ttt_linear_scan_forward(Backend& be, TTTLinearScanForward& c) {
  Params p = tttk::params_of(c);
  require_aligned(p);
  dispatch(c.s, [&](auto cfg) {
    using C = decltype(cfg);
    const int64_t bh = int64_t{p.B} * p.H;
    if (!p.par) {
      scan_launch::launch_blocks(ttt_linear_fwd_kernel<C>, C::THREADS, bh, fwd_smem<C>(), p, be);
      return;
    }
    // The state entering every chunk, between the two kernels (freed at once: the caching allocator
    // hands it out again only to work later on the same stream).
    // Overlapped: one grid, with a flag per (b, h, range) after the snapshots; one block per SM (at
    // three per SM a walk sharing its SM with output blocks took 4,806 cycles a chunk, against 4,062
    // alone: the forward did not gain).
    const size_t snap = static_cast<size_t>(tttk::fwd_snapshot_floats(p, C::F)) * sizeof(float);
    const size_t flags = p.overlap ? static_cast<size_t>(bh * p.R) * sizeof(unsigned) : 0;
    p.ws = static_cast<float*>(be.alloc(snap + flags));
    if (p.overlap) {
      CUDA_CHECK(cudaMemsetAsync(tttk::fwd_done(p, C::F, 0, 0), 0, flags, stream_of(be)));
      scan_launch::launch_blocks(ttt_linear_fwd_overlap_kernel<C>, C::THREADS, tttk::fwd_overlap_blocks(p),
                                 scan_launch::smem_one_block_per_sm(std::max(replay_smem<C>(), fwd_smem<C>())), p,
                                 be);
    } else {
      scan_launch::launch_blocks(ttt_linear_fwd_state_kernel<C>, C::THREADS, bh, replay_smem<C>(), p, be);
      scan_launch::launch_blocks(ttt_linear_fwd_out_kernel<C>, C::THREADS, bh * p.R, fwd_smem<C>(), p, be);
    }
    be.free(p.ws, snap + flags);
  });
}

namespace {

// Whether two forward calls can share a grouped launch: one kernel configuration, B·H and plan.
bool groupable(const TTTLinearScanForward& a, const Params& pa, const TTTLinearScanForward& b, const Params& pb) {
  return a.s.head_dim == b.s.head_dim && a.s.low_precision == b.s.low_precision && a.s.bf16_io == b.s.bf16_io &&
         pa.B * pa.H == pb.B * pb.H && pa.par == pb.par && pa.overlap == pb.overlap;
}

// Calls whose params are g.p[0 .. g.count): each pass of the forward as one launch.
void launch_group(Backend& be, const TTTLinearScanShape& s, ParamsGroup& g) {
  dispatch(s, [&](auto cfg) {
    using C = decltype(cfg);
    const int64_t walks = int64_t{g.count} * g.bh;
    const Params& p0 = g.p[0];
    if (!p0.par) {
      scan_launch::launch_blocks(ttt_linear_fwd_group_kernel<C>, C::THREADS, walks, fwd_smem<C>(), g, be);
      return;
    }
    // Every call's snapshots (and flags) in one workspace, 256-byte aligned per call.
    std::vector<size_t> offset(g.count + 1, 0), flags(g.count);
    for (int k = 0; k < g.count; ++k) {
      const size_t snap = static_cast<size_t>(tttk::fwd_snapshot_floats(g.p[k], C::F)) * sizeof(float);
      flags[k] = p0.overlap ? static_cast<size_t>(g.bh) * g.p[k].R * sizeof(unsigned) : 0;
      offset[k + 1] = offset[k] + (snap + flags[k] + 255) / 256 * 256;
    }
    const size_t total = offset[g.count];
    char* ws = static_cast<char*>(be.alloc(total));
    for (int k = 0; k < g.count; ++k) {
      g.p[k].ws = reinterpret_cast<float*>(ws + offset[k]);
      if (p0.overlap) CUDA_CHECK(cudaMemsetAsync(tttk::fwd_done(g.p[k], C::F, 0, 0), 0, flags[k], stream_of(be)));
    }
    const int64_t outs = walks * g.max_ranges;
    if (p0.overlap) {
      scan_launch::launch_blocks(ttt_linear_fwd_overlap_group_kernel<C>, C::THREADS, walks + outs,
                                 scan_launch::smem_one_block_per_sm(std::max(replay_smem<C>(), fwd_smem<C>())), g,
                                 be);
    } else {
      scan_launch::launch_blocks(ttt_linear_fwd_state_group_kernel<C>, C::THREADS, walks, replay_smem<C>(), g, be);
      scan_launch::launch_blocks(ttt_linear_fwd_out_group_kernel<C>, C::THREADS, outs, fwd_smem<C>(), g, be);
    }
    be.free(ws, total);
  });
}

}  // namespace

void ttt_linear_scan_forward_group(Backend& be, TTTLinearScanForwardGroup& grp) {
  const std::vector<TTTLinearScanForward*>& calls = grp.calls;
  std::vector<Params> ps;
  for (TTTLinearScanForward* c : calls) {
    ps.push_back(tttk::params_of(*c));
    require_aligned(ps.back());
  }
  // Runs of consecutive groupable calls, at most kMaxCalls each, as one launch per pass.
  for (size_t i = 0, j = 0; i < calls.size(); i = j) {
    for (j = i + 1; j < calls.size() && j - i < TTTLinearScanForwardGroup::kMaxCalls &&
                    groupable(*calls[i], ps[i], *calls[j], ps[j]);)
      ++j;
    if (j - i == 1) {
      ttt_linear_scan_forward(be, *calls[i]);
      continue;
    }
    ParamsGroup g;
    g.count = static_cast<int>(j - i);
    g.bh = ps[i].B * ps[i].H;
    for (size_t k = i; k < j; ++k) {
      g.p[k - i] = ps[k];
      g.max_ranges = std::max(g.max_ranges, ps[k].R);
    }
    launch_group(be, calls[i]->s, g);
  }
}

void ttt_linear_scan_backward(Backend& be, TTTLinearScanBackward& c) {
  const TTTLinearScanShape& s = c.s;
  Params p = tttk::params_of(c);
  require_aligned(p);
  // The overlapped grid's walks (B·H blocks) wait for direct blocks: they must leave an SM free.
  p.overlap = p.overlap && scan_launch::leaves_sm_free(int64_t{p.B} * p.H);
  dispatch(s, [&](auto cfg) {
    using C = decltype(cfg);
    scan_launch::launch_blocks(ttt_linear_replay_kernel<C>, C::THREADS, int64_t{p.B} * p.H * p.NG, replay_smem<C>(), p,
                               be);
    const int64_t bh = int64_t{p.B} * p.H;
    if (!p.par) {
      scan_launch::launch_blocks(ttt_linear_bwd_kernel<C, tttk::Mode::walk>, C::THREADS, bh, bwd_smem<C>(), p, be);
      return;
    }
    if (p.overlap) {
      CUDA_CHECK(cudaMemsetAsync(tttk::flags_base(p, C::F), 0, tttk::flag_count(p) * sizeof(unsigned), stream_of(be)));
      scan_launch::launch_blocks(ttt_linear_bwd_overlap_kernel<C>, C::THREADS, tttk::overlap_blocks(p),
                                 std::max(bwd_smem<C>(), chain_smem<C>()), p, be);
      return;
    }
    scan_launch::launch_blocks(ttt_linear_bwd_kernel<C, tttk::Mode::direct>, C::THREADS, bh * p.R, bwd_smem<C>(), p,
                               be);
    scan_launch::launch_blocks(ttt_linear_chain_kernel<C>, C::THREADS, bh, chain_smem<C>(), p, be);
    scan_launch::launch_blocks(ttt_linear_bwd_kernel<C, tttk::Mode::tokens>, C::THREADS, bh * p.R, bwd_smem<C>(), p,
                               be);
  });
  const int F = static_cast<int>(s.head_dim);
  const float* partials = tttk::partials_base(p, F);
  const int64_t n = tttk::reduce_count(p.H, F, p.K);
  ttt_linear_reduce_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream_of(be)>>>(
      partials, p.B, p.H, F, p.K, p.R, static_cast<float*>(c.dw0), static_cast<float*>(c.db0),
      static_cast<float*>(c.dln_w), static_cast<float*>(c.dln_b), static_cast<float*>(c.dtok));
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
