// trainer/optimizer.cpp — see optimizer.h.
#include "trainer/optimizer.h"

#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"

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
  for (auto& s : slots_) {
    Tensor g = s.param.grad();
    // No gradient (the parameter did not take part in the loss): optax still updates it with a
    // zero gradient, so do we, to follow the official trainer exactly.
    if (!g.defined()) g = zeros(s.param.shape(), opts(DType::f32, s.param.device()));
    if (g.shape() != s.param.shape())
      throw std::logic_error("AdamW: gradient of '" + s.name + "' has shape " + g.shape().str() + ", parameter " +
                             s.param.shape().str());
    if (g.dtype() != DType::f32 && g.dtype() != DType::bf16)
      throw std::invalid_argument("AdamW: gradient of '" + s.name + "' is " + dtype_name(g.dtype()));
    g = g.contiguous();
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
    // The parameter changed behind autograd's back: saved copies of it are now stale.
    s.param.bump_version();
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.zero_grad();
}

bool decay_only_matrices(const std::string& name, const Tensor& p) {
  if (p.dim() < 2) return false;
  return name.find("embed") == std::string::npos;
}

double global_grad_norm(const std::vector<Tensor>& params) {
  // One backend reduction per tensor (on its device) into its own slot of one buffer per device,
  // read back once, then a host sum in double over tensors in parameter order: the same norm on
  // every run, and one device synchronisation per step instead of one per parameter.
  std::vector<Tensor> grads;
  for (const auto& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.dtype() == DType::bf16) g = g.to(DType::f32);  // accumulate bf16 gradients in fp32
    grads.push_back(g);
  }
  double total = 0;
  std::vector<bool> done(grads.size(), false);
  for (size_t first = 0; first < grads.size(); ++first) {
    if (done[first]) continue;
    const Device dev = grads[first].device();
    std::vector<size_t> idx;
    for (size_t i = first; i < grads.size(); ++i)
      if (!done[i] && grads[i].device() == dev && grads[i].dtype() == grads[first].dtype()) idx.push_back(i);
    Tensor sums = zeros({static_cast<int64_t>(idx.size())}, opts(grads[first].dtype(), dev));
    for (size_t j = 0; j < idx.size(); ++j) {
      const Tensor& g = grads[idx[j]];
      View out = sums.view();
      out.data = static_cast<char*>(out.data) + j * dtype_size(sums.dtype());
      out.ndim = g.dim();
      for (int d = 0; d < g.dim(); ++d) out.size[d] = 1, out.stride[d] = 1;
      backend(dev).reduce(ReduceOp::sum_sq, out, g.view());
      done[idx[j]] = true;
    }
    for (double v : sums.to(DType::f64).tolist<double>()) total += v;
  }
  return std::sqrt(total);
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  return max_norm / norm;
}

}  // namespace ttt
