// layers/norm.cpp — see norm.h.
#include "layers/norm.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

namespace {
void check_last_dim(const char* who, const Tensor& x, int64_t dim) {
  check_defined(who, x);
  if (x.dim() < 1 || x.shape().back() != dim)
    throw std::invalid_argument(std::string(who) + ": expected input [..., " + std::to_string(dim) + "], got " +
                                x.shape().str());
}
}  // namespace

RMSNorm::RMSNorm(int64_t d, double e) : dim(d), eps(e) { weight = register_parameter("weight", ones({d})); }

Tensor RMSNorm::forward(const Tensor& x) const {
  check_last_dim("RMSNorm", x, dim);
  return rms_norm(x, weight, eps);
}

tensor_list RMSNorm::add_forward(const Tensor& h, const Tensor& y) const {
  check_last_dim("RMSNorm", h, dim);
  return add_rms_norm(h, y, weight, eps);
}

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : dim(d), eps(e) {
  if (affine) {
    weight = register_parameter("weight", ones({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  check_last_dim("LayerNorm", x, dim);
  return layer_norm(x, weight, bias, eps);
}

}  // namespace ttt
