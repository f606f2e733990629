// tests/ttt_scan_cases.h — random inputs of the fused TTT-Linear scan (autograd/ops.h
// ttt_linear_scan) for the tests that compare it with the composite dual form, the CPU reference
// with the CUDA kernels, and gradcheck it. Not a test unit itself.
#pragma once

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "autograd/tensor.h"
#include "kernels/ttt_linear_scan.h"
#include "kernels/ttt_mlp_scan.h"
#include "tests/check_close.h"
#include "tests/layer_helpers.h"

namespace ttt::testing {

struct ScanCase {
  int64_t B = 2, H = 2, T = 37, f = 8, K = 16;
  bool ln = true, bias = true;
  int64_t G = 1;  // checkpoint group
  std::string str() const {
    std::ostringstream o;
    o << "B" << B << " H" << H << " T" << T << " f" << f << " K" << K << (ln ? " ln" : " no-ln")
      << (bias ? " bias" : " no-bias") << " G" << G;
    return o.str();
  }
};

// XQ, XK, XV [B, H, T, f] ~ N(0, 1); lr [B, H, T] in [0.05, 0.35]; tok[i] = 1/(i+1) + N(0, 0.05)²;
// W0, b0 ~ N(0, 0.3²); LN weight 1 + N(0, 0.2²), bias N(0, 0.2²). Leaves requiring grad (b0 and
// the LN undefined when switched off), dtype dt on device dev; drawn in float64 on the CPU.
inline tensor_list scan_inputs(const ScanCase& c, uint64_t seed, DType dt = DType::f64, Device dev = cpu()) {
  Generator g(seed);
  const TensorOptions o = opts(DType::f64);
  auto leaf = [&](Tensor t) { return t.to(dt).to(dev).set_requires_grad(true); };
  tensor_list x;
  for (int i = 0; i < 3; ++i) x.push_back(leaf(randn({c.B, c.H, c.T, c.f}, g, o)));
  x.push_back(leaf(rand({c.B, c.H, c.T}, g, o, 0.05, 0.35)));
  std::vector<double> tok(c.K);
  Tensor noise = randn({c.K}, g, o, 0.0, 0.05);
  for (int64_t i = 0; i < c.K; ++i) tok[i] = 1.0 / static_cast<double>(i + 1) + noise.tolist<double>()[i];
  x.push_back(leaf(from_vector(tok, {c.K}, o)));
  x.push_back(leaf(randn({c.H, c.f, c.f}, g, o, 0.0, 0.3)));
  x.push_back(c.bias ? leaf(randn({c.H, c.f}, g, o, 0.0, 0.3)) : Tensor());
  x.push_back(c.ln ? leaf(randn({c.H, c.f}, g, o, 1.0, 0.2)) : Tensor());
  x.push_back(c.ln ? leaf(randn({c.H, c.f}, g, o, 0.0, 0.2)) : Tensor());
  return x;
}

inline TTTScanOptions scan_options(const ScanCase& c) { return {c.G, 1e-6}; }

// Gradients of sum(out · w) w.r.t. every defined input.
inline tensor_list input_grads(const Tensor& out, const tensor_list& x, const Tensor& w) {
  tensor_list leaves;
  for (const Tensor& t : x)
    if (t.defined()) leaves.push_back(t);
  return grad({sum(mul(out, w))}, leaves);
}

// A fused scan's output `out` against its composite twin's `ref` on the same inputs x (float64):
// the values, and the gradients of sum(out · w) for a random w w.r.t. every defined input
// (names[i] names x[i]).
inline void check_scan_matches_twin(const Tensor& out, const Tensor& ref, const tensor_list& x, const char* const* names,
                                    uint64_t seed) {
  check_close(out, ref, {1e-10, 1e-9}, "out");
  const Tensor w = rand64(out.shape(), seed);
  const tensor_list g = input_grads(out, x, w), gr = input_grads(ref, x, w);
  size_t j = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!x[i].defined()) continue;
    check_close(g[j], gr[j], {1e-9, 1e-8}, std::string("d") + names[i]);
    ++j;
  }
}

// The same for the fused TTT-MLP scan (autograd/ops.h ttt_mlp_scan), hidden h = expansion · f:
// XQ, XK, XV, lr, tok as above; W1 [H, f, h] ~ N(0, 1/f), b1 [H, h] ~ N(0, 0.3²),
// W2 [H, h, f] ~ N(0, 1/h), b2 [H, f] ~ N(0, 0.3²) (so Z1 and Z2 are O(1) and GELU is curved), LN
// as above.
inline tensor_list mlp_scan_inputs(const ScanCase& c, uint64_t seed, int64_t expansion = 4, DType dt = DType::f64) {
  const tensor_list lin = scan_inputs(c, seed, dt);
  Generator g(seed + 1000);
  const TensorOptions o = opts(DType::f64);
  auto leaf = [&](Tensor t) { return t.to(dt).set_requires_grad(true); };
  const int64_t h = expansion * c.f;
  const double sf = 1.0 / std::sqrt(static_cast<double>(c.f)), sh = 1.0 / std::sqrt(static_cast<double>(h));
  tensor_list x(lin.begin(), lin.begin() + 5);
  x.push_back(leaf(randn({c.H, c.f, h}, g, o, 0.0, sf)));
  x.push_back(c.bias ? leaf(randn({c.H, h}, g, o, 0.0, 0.3)) : Tensor());
  x.push_back(leaf(randn({c.H, h, c.f}, g, o, 0.0, sh)));
  x.push_back(c.bias ? leaf(randn({c.H, c.f}, g, o, 0.0, 0.3)) : Tensor());
  x.push_back(lin[7]);
  x.push_back(lin[8]);
  return x;
}

// x with W0 [B, H, f, f] and b0 [B, H, f] (when c.bias) drawn per sequence, N(0, 0.3²), not
// requiring grad: the inputs of a decode call that resumes each sequence from its own state.
inline tensor_list with_per_sequence_init(tensor_list x, const ScanCase& c, uint64_t seed) {
  Generator g(seed);
  const TensorOptions o = opts(DType::f64);
  const DType dt = x[5].dtype();
  const Device dev = x[5].device();
  for (Tensor& t : x)
    if (t.defined()) t = t.detach();
  x[5] = randn({c.B, c.H, c.f, c.f}, g, o, 0.0, 0.3).to(dt).to(dev);
  if (c.bias) x[6] = randn({c.B, c.H, c.f}, g, o, 0.0, 0.3).to(dt).to(dev);
  return x;
}

// An environment variable set for one scope (the kernels' variant switches, read at each call).
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

// Forces the CUDA backward's plan (TTTLinearScanPlan: walk, chunks, chunks:N) for one scope; a
// ScanRun sizes its workspace for the plan in force when it is constructed.
struct ForceScanPlan : ScopedEnv {
  explicit ForceScanPlan(const char* v) : ScopedEnv("TTT_LINEAR_SCAN_PLAN", v) {}
};

// Buffers of one kernel-level run of the scan (forward and backward call structs over them), on
// the inputs' device, every output poisoned with NaN. dout: the gradient of `out`. bf16_io: XQ,
// XK, XV, dout and out, dXQ, dXK, dXV stored as bf16 (the inputs rounded to it).
struct ScanRun {
  TTTLinearScanShape s;
  tensor_list in;  // contiguous detached copies of the inputs
  Tensor out, states, w_final, b_final, acc_w, acc_b;
  Tensor dout, dxq, dxk, dxv, dlr, dtok, dw0, db0, dlnw, dlnb, ws;

  ScanRun(const ScanCase& c, const tensor_list& x, const Tensor& d, bool low_precision, bool bf16_io = false) {
    for (const Tensor& t : x) in.push_back(t.defined() ? t.detach().contiguous() : Tensor());
    const Tensor& lr = in[3];
    s.batch = c.B, s.heads = c.H, s.len = c.T, s.head_dim = c.f, s.mini_batch = c.K;
    s.checkpoint_group = c.G, s.eps = 1e-6, s.ln_residual = c.ln, s.bias = c.bias;
    s.low_precision = low_precision, s.dtype = lr.dtype(), s.bf16_io = bf16_io;
    s.per_sequence_init = in[5].dim() == 4;  // then only forward() may run
    const TensorOptions o = opts(lr.dtype(), lr.device()), oio = opts(s.io_dtype(), lr.device());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto poisoned = [&](const Shape& sh) { return full(sh, nan, o); };
    auto poisoned_io = [&](const Shape& sh) { return full(sh, nan, oio); };
    for (int i = 0; i < 3; ++i) in[i] = in[i].to(s.io_dtype()).contiguous();
    const Shape bhtf = in[0].shape();
    out = poisoned_io(bhtf), states = poisoned({s.state_elems()});
    w_final = poisoned({c.B, c.H, c.f, c.f}), b_final = poisoned({c.B, c.H, c.f});
    acc_w = poisoned({c.B, c.H, c.f, c.f}), acc_b = poisoned({c.B, c.H, c.f});
    dout = d.detach().to(s.io_dtype()).contiguous();
    dxq = poisoned_io(bhtf), dxk = poisoned_io(bhtf), dxv = poisoned_io(bhtf);
    dlr = poisoned(in[3].shape()), dtok = poisoned(in[4].shape()), dw0 = poisoned(in[5].shape());
    if (c.bias) db0 = poisoned(in[6].shape());
    if (c.ln) dlnw = poisoned(in[7].shape()), dlnb = poisoned(in[8].shape());
    TTTLinearScanBackward probe;
    probe.s = s;
    // Sized for the CUDA kernels whatever the device: the emulator tests run them on CPU tensors.
    ws = poisoned({static_cast<int64_t>(probe.workspace_bytes(cuda()) / dtype_size(s.dtype)) + 1});
  }
  static BHTView v(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; }
  static void* p(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
  TTTLinearScanForward forward() {
    TTTLinearScanForward c;
    c.s = s;
    c.xq = v(in[0]), c.xk = v(in[1]), c.xv = v(in[2]), c.lr = v(in[3]);
    c.tok = p(in[4]), c.w0 = p(in[5]), c.b0 = p(in[6]), c.ln_w = p(in[7]), c.ln_b = p(in[8]);
    c.out = v(out), c.states = p(states), c.w_final = p(w_final), c.b_final = p(b_final);
    c.acc_w = p(acc_w), c.acc_b = p(acc_b);
    return c;
  }
  TTTLinearScanBackward backward() {
    TTTLinearScanBackward c;
    c.s = s;
    c.xq = v(in[0]), c.xk = v(in[1]), c.xv = v(in[2]), c.lr = v(in[3]);
    c.tok = p(in[4]), c.w0 = p(in[5]), c.b0 = p(in[6]), c.ln_w = p(in[7]), c.ln_b = p(in[8]);
    c.states = p(states), c.dout = v(dout);
    c.dxq = v(dxq), c.dxk = v(dxk), c.dxv = v(dxv), c.dlr = v(dlr);
    c.dtok = p(dtok), c.dw0 = p(dw0), c.db0 = p(db0), c.dln_w = p(dlnw), c.dln_b = p(dlnb);
    c.workspace = p(ws);
    return c;
  }
  // (name, tensor) of the forward's results (bf16 ones widened to float32).
  std::vector<std::pair<std::string, Tensor>> forward_results() const {
    std::vector<std::pair<std::string, Tensor>> r = results();
    r.resize(5);  // out, w_final, b_final, acc_w, acc_b
    return r;
  }
  // (name, tensor) of every result (bf16 ones widened to float32), forward then backward.
  std::vector<std::pair<std::string, Tensor>> results() const {
    auto wide = [&](const Tensor& t) { return s.bf16_io ? t.to(s.dtype) : t; };
    std::vector<std::pair<std::string, Tensor>> r = {{"out", wide(out)}, {"w_final", w_final}, {"b_final", b_final},
                                                     {"acc_w", acc_w}, {"acc_b", acc_b},    {"dxq", wide(dxq)},
                                                     {"dxk", wide(dxk)}, {"dxv", wide(dxv)},        {"dlr", dlr},
                                                     {"dtok", dtok}, {"dw0", dw0}};
    if (db0.defined()) r.push_back({"db0", db0});
    if (dlnw.defined()) r.push_back({"dln_w", dlnw}), r.push_back({"dln_b", dlnb});
    return r;
  }
};

// The same for the fused TTT-MLP scan (kernels/ttt_mlp_scan.h) on the inputs of mlp_scan_inputs
// (expansion 4): buffers on the inputs' device, every output poisoned with NaN. bf16_io: XQ, XK,
// XV, dout and out, dXQ, dXK, dXV stored as bf16 (the inputs rounded to it).
struct MlpScanRun {
  TTTMLPScanShape s;
  tensor_list in;  // contiguous detached copies of the 11 inputs
  Tensor out, states, fin, acc;
  Tensor dout, ws;
  tensor_list grads;  // dXQ, dXK, dXV, dlr, dtok, dW1, db1, dW2, db2, dln_w, dln_b (undefined where the input is)

  MlpScanRun(const ScanCase& c, const tensor_list& x, const Tensor& d, bool low_precision, bool bf16_io = false,
             bool split_walk = false) {
    for (const Tensor& t : x) in.push_back(t.defined() ? t.detach().contiguous() : Tensor());
    s.batch = c.B, s.heads = c.H, s.len = c.T, s.head_dim = c.f, s.hidden = in[5].shape()[2], s.mini_batch = c.K;
    s.checkpoint_group = c.G, s.eps = 1e-6, s.ln_residual = c.ln, s.bias = c.bias;
    s.low_precision = low_precision, s.dtype = in[3].dtype(), s.bf16_io = bf16_io, s.split_walk = split_walk;
    const TensorOptions o = opts(s.dtype, in[3].device()), oio = opts(s.io_dtype(), in[3].device());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto poisoned = [&](const Shape& sh) { return full(sh, nan, o); };
    for (int i = 0; i < 3; ++i) in[i] = in[i].to(s.io_dtype()).contiguous();
    out = full(in[0].shape(), nan, oio), states = poisoned({s.state_elems()});
    fin = poisoned({c.B, c.H, s.state_size()}), acc = poisoned({c.B, c.H, s.state_size()});
    dout = d.detach().to(s.io_dtype()).contiguous();
    for (size_t i = 0; i < in.size(); ++i)
      grads.push_back(in[i].defined() ? full(in[i].shape(), nan, i < 3 ? oio : o) : Tensor());
    TTTMLPScanBackward probe;
    probe.s = s;
    ws = poisoned({static_cast<int64_t>(probe.workspace_bytes() / dtype_size(s.dtype)) + 1});
  }
  static BHTView v(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; }
  static void* p(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
  TTTMLPScanForward forward() {
    TTTMLPScanForward c;
    c.s = s;
    c.xq = v(in[0]), c.xk = v(in[1]), c.xv = v(in[2]), c.lr = v(in[3]);
    c.tok = p(in[4]), c.w1 = p(in[5]), c.b1 = p(in[6]), c.w2 = p(in[7]), c.b2 = p(in[8]);
    c.ln_w = p(in[9]), c.ln_b = p(in[10]);
    c.out = v(out), c.states = p(states), c.final_state = p(fin), c.acc = p(acc);
    return c;
  }
  TTTMLPScanBackward backward() {
    TTTMLPScanBackward c;
    c.s = s;
    c.xq = v(in[0]), c.xk = v(in[1]), c.xv = v(in[2]), c.lr = v(in[3]);
    c.tok = p(in[4]), c.w1 = p(in[5]), c.b1 = p(in[6]), c.w2 = p(in[7]), c.b2 = p(in[8]);
    c.ln_w = p(in[9]), c.ln_b = p(in[10]);
    c.states = p(states), c.dout = v(dout);
    c.dxq = v(grads[0]), c.dxk = v(grads[1]), c.dxv = v(grads[2]), c.dlr = v(grads[3]);
    c.dtok = p(grads[4]), c.dw1 = p(grads[5]), c.db1 = p(grads[6]), c.dw2 = p(grads[7]), c.db2 = p(grads[8]);
    c.dln_w = p(grads[9]), c.dln_b = p(grads[10]);
    c.workspace = p(ws);
    return c;
  }
  // (name, tensor) of the forward's results, then (with_backward) every gradient (bf16 ones widened
  // to float32).
  std::vector<std::pair<std::string, Tensor>> results(bool with_backward) const {
    auto wide = [&](const Tensor& t) { return s.bf16_io ? t.to(s.dtype) : t; };
    std::vector<std::pair<std::string, Tensor>> r = {{"out", wide(out)}, {"states", states}, {"final_state", fin}, {"acc", acc}};
    if (!with_backward) return r;
    const char* names[] = {"dXQ", "dXK", "dXV", "dlr", "dtok", "dW1", "db1", "dW2", "db2", "dln_w", "dln_b"};
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i].defined()) r.push_back({names[i], i < 3 ? wide(grads[i]) : grads[i]});
    return r;
  }
};

}  // namespace ttt::testing
