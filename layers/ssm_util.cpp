// layers/ssm_util.cpp — see ssm_util.h.
#include "layers/ssm_util.h"

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "autograd/ops.h"

namespace ttt {

Tensor softplus(const Tensor& x) { return add(relu(x), log(add_scalar(exp(neg(abs(x))), 1.0))); }

double inv_softplus(double y) { return y + std::log(-std::expm1(-y)); }

Tensor l2_normalize(const Tensor& x, double eps) {
  return mul(x, rsqrt(add_scalar(sum(square(x), {-1}, true), eps)));
}

Tensor gated_rms_norm(const Tensor& y, const Tensor& z, const Tensor& weight, double eps, bool gate_before_norm) {
  if (gate_before_norm) return rms_norm(mul(y, silu(z)), weight, eps);
  return mul(rms_norm(y, weight, eps), silu(z));
}

Tensor dt_bias_init(int64_t n, Generator& g, double dt_min, double dt_max, double floor) {
  std::vector<double> u = rand({n}, g, opts(DType::f64)).tolist<double>();
  for (double& v : u) {
    const double dt = std::max(floor, std::exp(v * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min)));
    v = inv_softplus(dt);
  }
  return from_vector(u, {n}, opts(DType::f32));
}

Tensor lower_mask(int64_t L, DType dtype, Device device, bool strict) {
  // Built on the host once per (L, dtype, device, strict); the layers ask for the same few sizes.
  // Never destroyed (as rope.cpp's table cache): device tensors must not be freed during static
  // destruction, after the CUDA runtime may be gone.
  static std::mutex& mu = *new std::mutex();
  static auto& cache = *new std::map<std::tuple<int64_t, int, int, int, bool>, Tensor>();
  const auto key = std::make_tuple(L, static_cast<int>(dtype), static_cast<int>(device.type), device.index, strict);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::vector<double> m(static_cast<size_t>(L * L), 0.0);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < (strict ? i : i + 1); ++j) m[i * L + j] = 1.0;
  Tensor t = from_vector(m, {L, L}, opts(dtype)).to(device);
  if (cache.size() > 64) cache.clear();
  cache.emplace(key, t);
  return t;
}

Tensor decay_matrix(const Tensor& c) {
  const int64_t L = c.shape().back();
  Tensor m = lower_mask(L, c.dtype(), c.device());
  Tensor diff = sub(unsqueeze(c, -1), unsqueeze(c, -2));  // [..., t, s] = c_t − c_s
  return mul(exp(mul(diff, m)), m);
}

tensor_list steps_of(const Tensor& x, int64_t dim) {
  const int d = dim < 0 ? x.dim() + static_cast<int>(dim) : static_cast<int>(dim);
  return split(x, std::vector<int64_t>(static_cast<size_t>(x.shape()[d]), 1), d);
}

DType scan_dtype(DType d) { return d == DType::f64 ? DType::f64 : DType::f32; }

Tensor as_dtype(const Tensor& t, DType d) { return !t.defined() || t.dtype() == d ? t : to_dtype(t, d); }

}  // namespace ttt
