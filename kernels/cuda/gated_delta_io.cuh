// kernels/cuda/gated_delta_io.cuh — what the two CUDA forms of the gated delta rule (the token walk,
// gated_delta.cuh, and the chunked WY form, gated_delta_chunk.cuh) take alike from a call: the
// shape's sizes and the call's buffers, into their Params (whose members of these names agree).
#pragma once

#include "kernels/gated_delta.h"

namespace ttt::cuda_impl {

template <class P> void set_gated_delta_sizes(P& p, const GatedDeltaShape& s) {
  p.batch = s.batch;
  p.len = s.len;
  p.heads = static_cast<int>(s.heads);
  p.qk_heads = static_cast<int>(s.groups());
  p.heads_per_group = static_cast<int>(s.heads_per_group());
  p.dk_dim = static_cast<int>(s.dk);
  p.dv_dim = static_cast<int>(s.dv);
  p.erase = s.erase;
}

template <class P> void set_gated_delta_buffers(P& p, const GatedDeltaForward& c) {
  p.q = static_cast<const float*>(c.q), p.k = static_cast<const float*>(c.k), p.v = static_cast<const float*>(c.v);
  p.g = static_cast<const float*>(c.g), p.beta = static_cast<const float*>(c.beta);
  p.M0 = static_cast<const float*>(c.M0);
  p.o = static_cast<float*>(c.o), p.M_final = static_cast<float*>(c.M_final);
}

template <class P> void set_gated_delta_buffers(P& p, const GatedDeltaBackward& c) {
  p.q = static_cast<const float*>(c.q), p.k = static_cast<const float*>(c.k), p.v = static_cast<const float*>(c.v);
  p.g = static_cast<const float*>(c.g), p.beta = static_cast<const float*>(c.beta);
  p.M0 = static_cast<const float*>(c.M0);
  p.d_o = static_cast<const float*>(c.d_o), p.dM_final = static_cast<const float*>(c.dM_final);
  p.dq = static_cast<float*>(c.dq), p.dk = static_cast<float*>(c.dk), p.dv = static_cast<float*>(c.dv);
  p.dg = static_cast<float*>(c.dg), p.dbeta = static_cast<float*>(c.dbeta), p.dM0 = static_cast<float*>(c.dM0);
}

}  // namespace ttt::cuda_impl
