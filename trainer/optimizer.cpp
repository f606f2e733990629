// trainer/optimizer.cpp — see optimizer.h.
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "kernels/multi_tensor.h"

namespace ttt {

AdamW::AdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, AdamWOptions opt,
             const std::function<bool(const std::string&, const Tensor&)>& decay)
    : opt_(opt) {
  for (const auto& [name, p] : named_params) {
    if (p.dtype() != DType::f32)
      throw std::invalid_argument("AdamW: parameter '" + name + "' is " + dtype_name(p.dtype()) +
                                  "; the optimizer keeps fp32 master weights (convert the model to float32)");
    if (!p.is_contiguous()) throw std::invalid_argument("AdamW: parameter '" + name + "' is not contiguous");
    Slot s;
    s.name = name;
    s.param = p;
    s.m = zeros(p.shape(), opts(DType::f32, p.device()));
    s.v = zeros(p.shape(), opts(DType::f32, p.device()));
    s.decay = decay ? decay(name, p) : true;
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr, double grad_scale) {
  ++t_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t_));
  std::vector<std::pair<Tensor, Tensor>> casts;
  if (multi_tensor_) casts = step_multi_tensor(lr, grad_scale, bc1, bc2);
  else step_per_tensor(lr, grad_scale, bc1, bc2);
  // The parameters changed behind autograd's back: saved copies of them are now stale.
  for (auto& s : slots_) s.param.bump_version();
  // The bf16 casts of the new weights that the update wrote: the next step's products read them.
  for (const auto& [p, c] : casts) Autocast::refresh_weight_casts(p, c);
}

namespace {
// The slot's gradient, checked and contiguous; undefined when the parameter has none this step.
Tensor checked_grad(const AdamW::Slot& s) {
  Tensor g = s.param.grad();
  if (!g.defined()) return g;
  if (g.shape() != s.param.shape())
    throw std::logic_error("AdamW: gradient of '" + s.name + "' has shape " + g.shape().str() + ", parameter " +
                           s.param.shape().str());
  if (g.dtype() != DType::f32 && g.dtype() != DType::bf16)
    throw std::invalid_argument("AdamW: gradient of '" + s.name + "' is " + dtype_name(g.dtype()));
  return g.contiguous();
}
}  // namespace

void AdamW::step_per_tensor(double lr, double grad_scale, double bc1, double bc2) {
  for (auto& s : slots_) {
    Tensor g = checked_grad(s);
    // No gradient (the parameter did not take part in the loss): optax still updates it with a
    // zero gradient, so do we, to follow the official trainer exactly.
    if (!g.defined()) g = zeros(s.param.shape(), opts(DType::f32, s.param.device()));
    AdamWArgs a;
    a.param = s.param.data<float>();
    a.grad = g.data_ptr();
    a.grad_dtype = g.dtype();
    a.m = s.m.data<float>();
    a.v = s.v.data<float>();
    a.n = s.param.numel();
    a.lr = lr;
    a.beta1 = opt_.beta1;
    a.beta2 = opt_.beta2;
    a.eps = opt_.eps;
    a.weight_decay = s.decay ? opt_.weight_decay : 0.0;
    a.bias_correction1 = bc1;
    a.bias_correction2 = bc2;
    a.grad_scale = grad_scale;
    backend(s.param.device()).adamw(a);
  }
}

// One AdamWMulti per device. A parameter without a gradient gets a null grad: the kernel's zero
// gradient, the same update as the per-tensor path's zeros without allocating or filling them.
// A parameter that autocast products cast to bf16 at its current version (the last step's) gets
// its next cast written by the same kernel (AdamWTensor::low): returned as (parameter, cast) for
// step() to hand to autocast once the version is bumped. That saves a cast kernel per weight and
// step (about a hundred launches for a 125M model) and reading the float32 weights again.
std::vector<std::pair<Tensor, Tensor>> AdamW::step_multi_tensor(double lr, double grad_scale, double bc1, double bc2) {
  std::vector<std::pair<Tensor, Tensor>> casts;
  std::vector<Tensor> grads;  // contiguous copies stay alive until their kernels are enqueued
  grads.reserve(slots_.size());
  std::vector<std::pair<Device, std::vector<AdamWTensor>>> by_device;
  for (auto& s : slots_) {
    Tensor g = checked_grad(s);
    AdamWTensor t;
    t.param = s.param.data<float>();
    t.grad = g.defined() ? g.data_ptr() : nullptr;
    t.grad_dtype = g.defined() ? g.dtype() : DType::f32;
    t.m = s.m.data<float>();
    t.v = s.v.data<float>();
    t.n = s.param.numel();
    t.weight_decay = s.decay ? opt_.weight_decay : 0.0;
    if (Autocast::weight_cast_kept(s.param, DType::bf16)) {
      casts.emplace_back(s.param, empty(s.param.shape(), opts(DType::bf16, s.param.device())));
      t.low = static_cast<bf16*>(casts.back().second.data_ptr());
    }
    grads.push_back(std::move(g));
    const Device dev = s.param.device();
    auto it = std::find_if(by_device.begin(), by_device.end(), [&](const auto& d) { return d.first == dev; });
    if (it == by_device.end()) it = by_device.insert(by_device.end(), {dev, {}});
    it->second.push_back(t);
  }
  for (auto& [dev, list] : by_device) {
    AdamWMulti call;
    call.tensors = list.data();
    call.count = list.size();
    call.lr = lr;
    call.beta1 = opt_.beta1;
    call.beta2 = opt_.beta2;
    call.eps = opt_.eps;
    call.bias_correction1 = bc1;
    call.bias_correction2 = bc2;
    call.grad_scale = grad_scale;
    backend(dev).run(call);
  }
  return casts;
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.zero_grad();
}

bool decay_only_matrices(const std::string& name, const Tensor& p) {
  if (p.dim() < 2) return false;
  return name.find("embed") == std::string::npos;
}

namespace {
// The sums of squares of `grads` (float32 on `dev`), one per slot of `sums` (a float32 buffer
// there): by one SumSqMulti for the contiguous f32/bf16 ones, by reduce() for any other.
void sum_squares_multi(const std::vector<Tensor>& grads, const Tensor& sums) {
  const Device dev = sums.device();
  std::vector<SumSqTensor> list;
  float* out = sums.data<float>();
  for (size_t j = 0; j < grads.size(); ++j) {
    const Tensor& g = grads[j];
    if (g.is_contiguous() && (g.dtype() == DType::f32 || g.dtype() == DType::bf16)) {
      list.push_back({g.data_ptr(), g.dtype(), g.numel(), out + j});
      continue;
    }
    Tensor gf = g.dtype() == DType::f32 ? g : g.to(DType::f32);
    View o = sums.view();
    o.data = out + j;
    o.ndim = gf.dim();
    for (int d = 0; d < gf.dim(); ++d) o.size[d] = 1, o.stride[d] = 1;
    backend(dev).reduce(ReduceOp::sum_sq, o, gf.view());
  }
  SumSqMulti call;
  call.tensors = list.data();
  call.count = list.size();
  if (call.count) backend(dev).run(call);
}
}  // namespace

double global_grad_norm(const std::vector<Tensor>& params, bool multi_tensor) {
  return std::sqrt(grad_sum_of_squares(params, multi_tensor));
}

double grad_sum_of_squares(const std::vector<Tensor>& params, bool multi_tensor) {
  // One backend reduction per tensor (on its device) into its own slot of one buffer per device,
  // read back once, then a host sum in double over tensors in parameter order: the same norm on
  // every run, and one device synchronisation per step instead of one per parameter. The multi-
  // tensor path reads bf16 gradients as they are; the per-tensor one reduces their float32 copy
  // (the same values).
  std::vector<Tensor> grads;
  for (const auto& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.dtype() == DType::bf16 && !multi_tensor) g = g.to(DType::f32);  // accumulate bf16 gradients in fp32
    grads.push_back(g);
  }
  // Groups of (device, accumulation dtype): bf16 gradients sum in float32.
  auto acc_dtype = [](const Tensor& g) { return g.dtype() == DType::bf16 ? DType::f32 : g.dtype(); };
  double total = 0;
  std::vector<bool> done(grads.size(), false);
  for (size_t first = 0; first < grads.size(); ++first) {
    if (done[first]) continue;
    const Device dev = grads[first].device();
    const DType dt = acc_dtype(grads[first]);
    std::vector<size_t> idx;
    for (size_t i = first; i < grads.size(); ++i)
      if (!done[i] && grads[i].device() == dev && acc_dtype(grads[i]) == dt) idx.push_back(i);
    Tensor sums = zeros({static_cast<int64_t>(idx.size())}, opts(dt, dev));
    if (multi_tensor && dt == DType::f32) {
      std::vector<Tensor> group;
      for (size_t i : idx) group.push_back(grads[i]);
      sum_squares_multi(group, sums);
    } else {
      for (size_t j = 0; j < idx.size(); ++j) {
        const Tensor& g = grads[idx[j]];
        View out = sums.view();
        out.data = static_cast<char*>(out.data) + j * dtype_size(sums.dtype());
        out.ndim = g.dim();
        for (int d = 0; d < g.dim(); ++d) out.size[d] = 1, out.stride[d] = 1;
        backend(dev).reduce(ReduceOp::sum_sq, out, g.view());
      }
    }
    for (size_t i : idx) done[i] = true;
    for (double v : sums.to(DType::f64).tolist<double>()) total += v;
  }
  return total;
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  return max_norm / norm;
}

}  // namespace ttt
