// autograd/gradcheck.h — numerical checks of analytic gradients (float64, central differences).
//
// gradcheck(fn, inputs): for every output element o and every input element x, compares
// d o / d x from grad() (one call per output element, with a one-hot grad_output) with
// (fn(x + eps) - fn(x - eps)) / (2 eps), requiring |analytic - numeric| <= atol + rtol |numeric|.
// Inputs must be float64 leaves; they may be non-contiguous views (the perturbation is written
// through the view). gradgradcheck does the same for the function
//   (inputs, v) -> grad(fn(inputs), inputs, v, create_graph=true)
// i.e. it checks second derivatives, including those with respect to the grad_outputs v.
#pragma once

#include <functional>
#include <string>

#include "autograd/tensor.h"

namespace ttt {

using TensorFn = std::function<tensor_list(const tensor_list&)>;

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  bool check_undefined = true;  // an undefined grad must equal a zero numerical gradient
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatches, naming input, element, analytic and numeric
  double max_abs_err = 0;
};

GradcheckResult gradcheck(const TensorFn& fn, const tensor_list& inputs, const GradcheckOptions& o = {});
// Second order: grad_outputs are random (seeded) float64 tensors of the outputs' shapes.
GradcheckResult gradgradcheck(const TensorFn& fn, const tensor_list& inputs, const GradcheckOptions& o = {},
                              uint64_t seed = 1234);

}  // namespace ttt
