// trainer/optimizer.h — AdamW over named parameters, and global gradient-norm clipping.
//
// One multi-tensor kernel call per device and step (AdamWMulti, kernels/multi_tensor.h: every
// parameter of the device in one or two launches, bit-identical to one Backend::adamw call per
// parameter, the path kept behind set_multi_tensor(false)): fp32 parameters (master weights), fp32
// moments m and v on the parameter's device, decoupled weight decay multiplied by the lr:
//   g' = g * grad_scale
//   m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;  t = t + 1
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p)
// This is optax.adamw (eps_root 0, weight decay times the scheduled lr), as the official JAX
// trainer uses it (ttt-lm-jax infra/optimizers.py). A parameter without a gradient in a step is
// updated with a zero gradient (its moments decay, weight decay applies), again as optax does.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  struct Slot {
    std::string name;
    Tensor param;  // the module's parameter (updated in place)
    Tensor m, v;   // fp32 moments, same shape and device
    bool decay = true;
  };

  // `decay(name, param)` says whether weight decay applies (default: every parameter).
  AdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, AdamWOptions opt,
        const std::function<bool(const std::string&, const Tensor&)>& decay = nullptr);

  // One update with learning rate `lr`; gradients are multiplied by grad_scale first.
  void step(double lr, double grad_scale = 1.0);
  void zero_grad();

  // false: one Backend::adamw call per parameter (the path before the multi-tensor kernel; the
  // same bits, kept for tests that compare the two). Default true.
  void set_multi_tensor(bool on) { multi_tensor_ = on; }

  int64_t step_count() const { return t_; }
  void set_step_count(int64_t t) { t_ = t; }
  const AdamWOptions& options() const { return opt_; }
  std::vector<Slot>& slots() { return slots_; }
  const std::vector<Slot>& slots() const { return slots_; }

 private:
  AdamWOptions opt_;
  std::vector<Slot> slots_;
  int64_t t_ = 0;
  bool multi_tensor_ = true;

  void step_per_tensor(double lr, double grad_scale, double bc1, double bc2);
  std::vector<std::pair<Tensor, Tensor>> step_multi_tensor(double lr, double grad_scale, double bc1, double bc2);
};

// The decay filter of `train.decay_all: false`: no decay for 1-D tensors (norm weights, biases,
// per-head scalars) and for parameters whose name mentions an embedding.
bool decay_only_matrices(const std::string& name, const Tensor& p);

// sqrt(sum of squares of every .grad), accumulated per tensor by the backend's sum_sq reduction
// and across tensors in double, in the order given (deterministic). The per-tensor sums of a
// device come from one multi-tensor call (SumSqMulti, kernels/multi_tensor.h), which gives each
// tensor's reduce(sum_sq) bit for bit; multi_tensor = false runs one reduction per tensor (tests).
double global_grad_norm(const std::vector<Tensor>& params, bool multi_tensor = true);
// The sum of squares under that square root (ZeRO-1 adds it over the ranks' shards).
double grad_sum_of_squares(const std::vector<Tensor>& params, bool multi_tensor = true);
// The factor clipping applies: 1 if norm <= max_norm (or max_norm <= 0), else max_norm / norm
// (optax.clip_by_global_norm, as the official code).
double clip_scale(double norm, double max_norm);

}  // namespace ttt
