// layers/linear.cpp — see linear.h.
#include "layers/linear.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

Linear::Linear(int64_t in, int64_t out, Generator& g, double std, bool with_bias)
    : in_features(in), out_features(out) {
  if (in <= 0 || out <= 0)
    throw std::invalid_argument("Linear: sizes must be positive, got in=" + std::to_string(in) +
                                " out=" + std::to_string(out));
  weight = register_parameter("weight", init_normal({out, in}, g, std));
  if (with_bias) bias = register_parameter("bias", zeros({out}));
}

Tensor Linear::forward(const Tensor& x, bool low_output) const {
  check_defined("Linear", x);
  if (x.dim() < 1 || x.shape().back() != in_features)
    throw std::invalid_argument("Linear: expected input [..., " + std::to_string(in_features) + "], got " +
                                x.shape().str());
  return linear(x, weight, bias, low_output);
}

}  // namespace ttt
