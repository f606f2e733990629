// layers/ssm_util.h — small pieces the baseline mixers (Mamba, Mamba 2, Gated DeltaNet, TTT-KVB)
// share, written with differentiable ops (so gradients of gradients work through them):
//
//   softplus(x)        = log(1 + eˣ), computed as relu(x) + log(1 + e^{−|x|}) (no overflow)
//   l2_normalize(x)    = x / sqrt(Σ x² + eps) over the last dim (fla `l2norm`, eps 1e-6)
//   gated_rms_norm     Mamba 2:  RMSNorm(y ⊙ silu(z)) ⊙ w   (mamba2.py RMSNormGated, norm_before_gate=False)
//                      GDN:      RMSNorm(y) ⊙ w ⊙ silu(z)   (fla FusedRMSNormGated)
//   dt_bias_init       the Mamba dt initialization: dt ~ exp(U(log 0.001, log 0.1)), floored at
//                      1e-4, stored as softplus⁻¹(dt) (mamba_simple.py, mamba2.py, fla GDN: the same)
//   decay_matrix       exp(c_t − c_s) for s ≤ t and 0 above the diagonal, from cumulative log-decays
//                      c [..., L] (the "segsum" of the SSD paper): every exponent is ≤ 0 where it is
//                      kept, and the masked entries are zeroed before exp, so nothing overflows.
#pragma once

#include "autograd/tensor.h"

namespace ttt {

Tensor softplus(const Tensor& x);
double inv_softplus(double y);  // log(e^y − 1)
Tensor l2_normalize(const Tensor& x, double eps = 1e-6);
Tensor gated_rms_norm(const Tensor& y, const Tensor& z, const Tensor& weight, double eps, bool gate_before_norm);

// [n] float32 dt biases drawn from g (see above).
Tensor dt_bias_init(int64_t n, Generator& g, double dt_min = 1e-3, double dt_max = 0.1, double floor = 1e-4);

// c [..., L] -> [..., L, L]
Tensor decay_matrix(const Tensor& c);
// 1 on and below the diagonal (or strictly below with strict), [L, L], cached per (L, dtype, device).
Tensor lower_mask(int64_t L, DType dtype, Device device, bool strict = false);

// x cut into its size-1 slices along dim (one split node: the backward writes the gradient once,
// where a narrow per step would zero-pad a full-size gradient at every step).
tensor_list steps_of(const Tensor& x, int64_t dim);

// The dtype the recurrences run in: float64 for float64 inputs, float32 otherwise (the state of a
// bf16 model stays float32, as in the reference kernels).
DType scan_dtype(DType d);
// t as dtype d (t itself when it already is).
Tensor as_dtype(const Tensor& t, DType d);

}  // namespace ttt
