// tests/test_ttt_linear_decode.cpp — the one-kernel TTT-Linear decode step (kernels/ttt_linear_decode.h,
// ops.h ttt_linear_decode_step): token by token from a state it equals the fused scan over the same
// tokens (a different implementation: the dual form over whole chunks), outputs, committed state and
// open accumulators, in float64 on the CPU; the CUDA kernel equals the CPU reference with its outputs
// poisoned; and the layer's decoding through it equals its forward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/ttt_linear_decode.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

struct Case {
  int64_t B = 2, H = 3, f = 8, T = 11, K = 4;
  bool ln = true, bias = true;
};

struct Inputs {
  Tensor xq, xk, xv, lr, tok, w0, b0, ln_w, ln_b;
};

Inputs make_inputs(const Case& c, uint64_t seed, DType dt = DType::f64) {
  const auto r = [&](const Shape& s, uint64_t k, double std = 1.0) { return to_dtype(rand64(s, seed + k, false, std), dt); };
  Inputs in;
  in.xq = r({c.B, c.H, c.T, c.f}, 1), in.xk = r({c.B, c.H, c.T, c.f}, 2), in.xv = r({c.B, c.H, c.T, c.f}, 3);
  in.lr = to_dtype(add_scalar(mul_scalar(sigmoid(rand64({c.B, c.H, c.T}, seed + 4)), 0.4), 0.05), dt);
  in.tok = to_dtype(add_scalar(mul_scalar(sigmoid(rand64({c.K}, seed + 5)), 0.5), 0.2), dt);
  in.w0 = r({c.H, c.f, c.f}, 6, 0.3);
  if (c.bias) in.b0 = r({c.H, c.f}, 7, 0.3);
  if (c.ln) in.ln_w = to_dtype(add_scalar(rand64({c.H, c.f}, seed + 8, false, 0.2), 1.0), dt), in.ln_b = r({c.H, c.f}, 9, 0.2);
  return in;
}

tensor_list scan(const Inputs& in) {
  const TTTScanComposite none = [](const tensor_list&) -> Tensor { throw std::logic_error("not taped here"); };
  return ttt_linear_scan(in.xq, in.xk, in.xv, in.lr, in.tok, in.w0, in.b0, in.ln_w, in.ln_b, TTTScanOptions{1, 1e-6}, none);
}

// The decode state: W [B, H, f, f], b [B, H, 1, f] and the accumulators (undefined = zero).
struct State {
  Tensor w, b, acc_w, acc_b;
  int64_t index = 0;
};

State initial(const Case& c, const Inputs& in) {
  State s;
  s.w = expand(unsqueeze(in.w0, 0), {c.B, c.H, c.f, c.f});
  if (c.bias) s.b = expand(reshape(in.b0, {1, c.H, 1, c.f}), {c.B, c.H, 1, c.f});
  return s;
}

// One token t through the op; returns out [B, H, 1, f].
Tensor step(const Case& c, const Inputs& in, State& s, int64_t t) {
  const auto at = [&](const Tensor& x) { return narrow(x, 2, t, 1); };
  const bool commit = s.index + 1 == c.K;
  const tensor_list r = ttt_linear_decode_step(at(in.xq), at(in.xk), at(in.xv), narrow(in.lr, 2, t, 1),
                                               narrow(in.tok, 0, s.index, 1), s.w, s.b, s.acc_w, s.acc_b, in.ln_w,
                                               in.ln_b, 1e-6, commit);
  if (commit) {
    s.w = r[1], s.b = r[2], s.acc_w = Tensor(), s.acc_b = Tensor();
  } else {
    s.acc_w = r[1], s.acc_b = r[2];
  }
  s.index = commit ? 0 : s.index + 1;
  return r[0];
}

}  // namespace

TEST_CASE("ttt_linear_decode_step token by token equals the fused scan over the same tokens (float64, CPU)") {
  NoGradGuard ng;
  for (bool ln : {true, false})
    for (bool bias : {true, false}) {
      Case c;
      c.ln = ln, c.bias = bias;
      CAPTURE(ln);
      CAPTURE(bias);
      const Inputs in = make_inputs(c, 100 + 10 * ln + bias);
      const tensor_list ref = scan(in);  // out, W_T, b_T, accW, accb (T = 11, K = 4: 3 tokens open)
      State s = initial(c, in);
      for (int64_t t = 0; t < c.T; ++t) {
        CAPTURE(t);
        const Tensor y = step(c, in, s, t);
        CHECK(max_abs_diff(y, narrow(ref[0], 2, t, 1)) < 1e-11);
      }
      CHECK(s.index == 3);
      CHECK(max_abs_diff(s.w, ref[1]) < 1e-12);
      CHECK(max_abs_diff(s.acc_w, ref[3]) < 1e-12);
      if (bias) {
        CHECK(max_abs_diff(reshape(s.b, {c.B, c.H, c.f}), ref[2]) < 1e-12);
        CHECK(max_abs_diff(reshape(s.acc_b, {c.B, c.H, c.f}), ref[4]) < 1e-12);
      } else {
        CHECK(!s.b.defined());
      }
    }
}

TEST_CASE("ttt_linear_decode_step checks its inputs and refuses to be taped") {
  Case c;
  const Inputs in = make_inputs(c, 7);
  State s = initial(c, in);
  NoGradGuard ng;
  const Tensor lr1 = contiguous(narrow(in.lr, 2, 0, 1));
  const auto call = [&](const Tensor& xq, const Tensor& w) {
    return ttt_linear_decode_step(xq, narrow(in.xk, 2, 0, 1), narrow(in.xv, 2, 0, 1), lr1, narrow(in.tok, 0, 0, 1), w,
                                  s.b, Tensor(), Tensor(), in.ln_w, in.ln_b, 1e-6, false);
  };
  CHECK_THROWS_AS(call(narrow(in.xq, 2, 0, 2), s.w), std::invalid_argument);            // two tokens
  CHECK_THROWS_AS(call(narrow(in.xq, 2, 0, 1), in.w0), std::invalid_argument);          // W without the batch
  CHECK_THROWS_AS(call(to_dtype(narrow(in.xq, 2, 0, 1), DType::f32), s.w), std::invalid_argument);  // mixed dtypes
  GradModeGuard on(true);
  Tensor w = contiguous(s.w).detach().set_requires_grad(true);
  CHECK_THROWS_AS(call(narrow(in.xq, 2, 0, 1), w), std::invalid_argument);
}

TEST_CASE("ttt_linear_decode_step on CUDA equals the CPU reference, writing every output (poisoned), f 16/64/128") {
  TTT_REQUIRE_GPU();
  NoGradGuard ng;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t f : {16, 64, 128})
    for (bool ln : {true, false})
      for (int first : {0, 1}) {  // the mini-batch's first token (no accumulators) or a later one
        for (bool commit : {false, true}) {
          CAPTURE(f);
          CAPTURE(ln);
          CAPTURE(first);
          CAPTURE(commit);
          Case c;
          c.f = f, c.ln = ln, c.T = 1, c.B = 2, c.H = 3;
          const Inputs in = make_inputs(c, 300 + f + ln, DType::f32);
          State s = initial(c, in);
          if (!first) {
            s.w = contiguous(add(s.w, to_dtype(rand64({c.B, c.H, f, f}, 9, false, 0.05), DType::f32)));
            s.acc_w = to_dtype(rand64({c.B, c.H, f, f}, 10, false, 0.1), DType::f32);
            s.acc_b = to_dtype(rand64({c.B, c.H, 1, f}, 11, false, 0.1), DType::f32);
          }
          const Tensor lr1 = reshape(in.lr, {c.B, c.H, 1});
          const Tensor tok = narrow(in.tok, 0, 1, 1);
          const tensor_list ref = ttt_linear_decode_step(in.xq, in.xk, in.xv, lr1, tok, s.w, s.b, s.acc_w, s.acc_b,
                                                         in.ln_w, in.ln_b, 1e-6, commit);
          const auto dev = [](const Tensor& t) { return t.defined() ? t.to(cuda()) : Tensor(); };
          const Tensor q = dev(in.xq), k = dev(in.xk), v = dev(in.xv), l = dev(lr1), tk = dev(tok), w = dev(s.w),
                       b = dev(s.b), aw = dev(s.acc_w), ab = dev(s.acc_b), lw = dev(in.ln_w), lb = dev(in.ln_b);
          // Through the op, then the kernel call itself into NaN-filled outputs.
          const tensor_list r = ttt_linear_decode_step(q, k, v, l, tk, w, b, aw, ab, lw, lb, 1e-6, commit);
          const TensorOptions o = opts(DType::f32, cuda());
          Tensor out = full({c.B, c.H, 1, f}, nan, o), nw = full({c.B, c.H, f, f}, nan, o), nb = full({c.B, c.H, 1, f}, nan, o);
          TTTLinearDecodeStep call;
          call.s = {c.B, c.H, f, 1e-6, ln, true, commit, DType::f32};
          const auto rows = [](const Tensor& t) { return BHTView{t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; };
          const auto blocks = [](const Tensor& t) {
            return t.defined() ? HeadBlocks{t.data_ptr(), t.strides()[0], t.strides()[1]} : HeadBlocks{};
          };
          call.xq = rows(q), call.xk = rows(k), call.xv = rows(v), call.lr = rows(reshape(l, {c.B, c.H, 1, 1}));
          call.tok = tk.data_ptr(), call.w = blocks(w), call.b = blocks(b), call.acc_w = blocks(aw), call.acc_b = blocks(ab);
          call.ln_w = ln ? lw.data_ptr() : nullptr, call.ln_b = ln ? lb.data_ptr() : nullptr;
          call.out = rows(out), call.next_w = nw.data_ptr(), call.next_b = nb.data_ptr();
          backend(cuda()).run(call);
          for (const tensor_list& got : {r, tensor_list{out, nw, nb}}) {
            CHECK(max_scaled_diff(got[0].to(cpu()), ref[0]) < 1e-5);
            CHECK(max_scaled_diff(got[1].to(cpu()), ref[1]) < 1e-5);
            CHECK(max_scaled_diff(got[2].to(cpu()), ref[2]) < 1e-5);
          }
        }
      }
}
