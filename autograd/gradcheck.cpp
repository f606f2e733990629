// autograd/gradcheck.cpp — see gradcheck.h.
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

// Pointer to element `linear` (row-major over the shape) of a float64 CPU tensor view.
double* element(const Tensor& t, int64_t linear) {
  int64_t off = 0;
  for (int d = t.dim() - 1; d >= 0; --d) {
    int64_t i = linear % t.shape()[d];
    linear /= t.shape()[d];
    off += i * t.strides()[d];
  }
  return t.data<double>() + off;
}

std::vector<double> flatten_outputs(const tensor_list& outs) {
  std::vector<double> v;
  for (const Tensor& o : outs) {
    if (!o.defined()) continue;
    auto x = o.tolist<double>();
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

void check_inputs(const tensor_list& inputs) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined()) continue;
    if (t.requires_grad() && (t.dtype() != DType::f64 || !t.device().is_cpu()))
      throw std::invalid_argument("gradcheck: input " + std::to_string(i) + " must be a float64 CPU tensor, got " +
                                  t.str());
  }
}

}  // namespace

GradcheckResult gradcheck(const TensorFn& fn, const tensor_list& inputs, const GradcheckOptions& o) {
  check_inputs(inputs);
  GradcheckResult res;
  std::ostringstream msg;
  int reported = 0;

  tensor_list outs = fn(inputs);
  std::vector<int64_t> out_sizes;
  int64_t n_out = 0;
  for (const Tensor& t : outs) {
    out_sizes.push_back(t.defined() ? t.numel() : 0);
    n_out += t.defined() ? t.numel() : 0;
  }

  // Differentiable inputs.
  std::vector<size_t> diff;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) diff.push_back(i);

  for (size_t di = 0; di < diff.size(); ++di) {
    const Tensor& x = inputs[diff[di]];
    const int64_t nx = x.numel();
    // Numerical Jacobian column by column: J[o][j].
    std::vector<std::vector<double>> num(static_cast<size_t>(nx));
    for (int64_t j = 0; j < nx; ++j) {
      double* p = element(x, j);
      const double orig = *p;
      std::vector<double> plus, minus;
      {
        NoGradGuard ng;
        *p = orig + o.eps;
        plus = flatten_outputs(fn(inputs));
        *p = orig - o.eps;
        minus = flatten_outputs(fn(inputs));
        *p = orig;
      }
      num[j].resize(plus.size());
      for (size_t k = 0; k < plus.size(); ++k) num[j][k] = (plus[k] - minus[k]) / (2 * o.eps);
    }
    // Analytic Jacobian row by row: one grad() per output element.
    int64_t row = 0;
    for (size_t oi = 0; oi < outs.size(); ++oi) {
      const Tensor& out = outs[oi];
      if (!out.defined()) continue;
      for (int64_t k = 0; k < out.numel(); ++k, ++row) {
        std::vector<double> ana(static_cast<size_t>(nx), 0.0);
        if (out.requires_grad()) {
          std::vector<double> onehot(static_cast<size_t>(out.numel()), 0.0);
          onehot[k] = 1.0;
          Tensor go = from_vector(onehot, out.shape(), opts(out.dtype(), out.device()));
          tensor_list g = grad({out}, {x}, {go}, /*retain_graph=*/true, false, /*allow_unused=*/true);
          if (g[0].defined()) ana = g[0].tolist<double>();
        }
        for (int64_t j = 0; j < nx; ++j) {
          double a = ana[j], n = num[j][row];
          double err = std::fabs(a - n);
          res.max_abs_err = std::max(res.max_abs_err, err);
          if (!(err <= o.atol + o.rtol * std::fabs(n))) {
            res.ok = false;
            if (reported++ < 8)
              msg << "input " << diff[di] << " element " << j << ", output " << oi << " element " << k
                  << ": analytic " << a << " vs numeric " << n << "\n";
          }
        }
      }
    }
  }
  res.message = msg.str();
  return res;
}

GradcheckResult gradgradcheck(const TensorFn& fn, const tensor_list& inputs, const GradcheckOptions& o,
                              uint64_t seed) {
  check_inputs(inputs);
  tensor_list outs;
  {
    NoGradGuard ng;
    outs = fn(inputs);
  }
  Generator gen(seed);
  tensor_list vs;
  for (const Tensor& out : outs)
    vs.push_back(out.defined() && is_floating(out.dtype())
                     ? randn(out.shape(), gen, {DType::f64, cpu(), true})
                     : Tensor());
  const size_t n_in = inputs.size();
  tensor_list all = inputs;
  all.insert(all.end(), vs.begin(), vs.end());
  // The first-order gradient as a function of (inputs, v). It is taped (create_graph) when the
  // caller has grad mode on (the analytic pass) and plain under NoGradGuard (the numeric pass).
  TensorFn first_order = [&fn, n_in](const tensor_list& args) {
    const bool create = GradMode::is_enabled();
    GradModeGuard on(true);
    tensor_list ins(args.begin(), args.begin() + n_in);
    tensor_list v(args.begin() + n_in, args.end());
    tensor_list out = fn(ins);
    tensor_list diff_in, live_out, live_v;
    for (const Tensor& t : ins)
      if (t.defined() && t.requires_grad()) diff_in.push_back(t);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].defined() && out[i].requires_grad() && v[i].defined()) {
        live_out.push_back(out[i]);
        live_v.push_back(v[i]);
      }
    tensor_list g;
    if (!live_out.empty()) g = grad(live_out, diff_in, live_v, create, create, /*allow_unused=*/true);
    tensor_list result;
    for (size_t i = 0; i < diff_in.size(); ++i) {
      Tensor r = i < g.size() && g[i].defined() ? g[i] : zeros_like(diff_in[i]);
      result.push_back(create ? r : r.detach());
    }
    return result;
  };
  return gradcheck(first_order, all, o);
}

}  // namespace ttt
