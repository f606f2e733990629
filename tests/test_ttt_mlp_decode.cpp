// tests/test_ttt_mlp_decode.cpp — the one-kernel TTT-MLP decode step (kernels/ttt_mlp_decode.h, ops.h
// ttt_mlp_decode_step): token by token from a state it equals the fused TTT-MLP scan over the same
// tokens (the dual form over whole chunks), outputs, committed state and open accumulators, in
// float64 on the CPU; the CUDA kernel equals the CPU reference with its outputs poisoned; the layer's
// one-token step is that call and equals the forward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/ttt_mlp_decode.h"
#include "layers/ttt_layer.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"
#include "tests/profile_count.h"
#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

struct Case {
  int64_t B = 2, H = 2, f = 4, hd = 16, T = 11, K = 4;
  bool ln = true, bias = true;
};

struct Inputs {
  Tensor xq, xk, xv, lr, tok, ln_w, ln_b;
  tensor_list w0;  // W1 [H, f, h], b1 [H, h], W2 [H, h, f], b2 [H, f]
};

Inputs make_inputs(const Case& c, uint64_t seed, DType dt = DType::f64) {
  const auto r = [&](const Shape& s, uint64_t k, double std = 1.0) { return to_dtype(rand64(s, seed + k, false, std), dt); };
  Inputs in;
  in.xq = r({c.B, c.H, c.T, c.f}, 1), in.xk = r({c.B, c.H, c.T, c.f}, 2), in.xv = r({c.B, c.H, c.T, c.f}, 3);
  in.lr = to_dtype(add_scalar(mul_scalar(sigmoid(rand64({c.B, c.H, c.T}, seed + 4)), 0.4), 0.05), dt);
  in.tok = to_dtype(add_scalar(mul_scalar(sigmoid(rand64({c.K}, seed + 5)), 0.5), 0.2), dt);
  in.w0 = {r({c.H, c.f, c.hd}, 6, 0.4), c.bias ? r({c.H, c.hd}, 7, 0.3) : Tensor(), r({c.H, c.hd, c.f}, 8, 0.3),
           c.bias ? r({c.H, c.f}, 9, 0.3) : Tensor()};
  if (c.ln) in.ln_w = to_dtype(add_scalar(rand64({c.H, c.f}, seed + 10, false, 0.2), 1.0), dt), in.ln_b = r({c.H, c.f}, 11, 0.2);
  return in;
}

// The state [B, H, ...] broadcast from W0 (biases as rows [B, H, 1, c]).
tensor_list initial(const Case& c, const Inputs& in) {
  tensor_list w(4);
  for (int k = 0; k < 4; ++k) {
    if (!in.w0[k].defined()) continue;
    const Tensor t = k % 2 == 0 ? in.w0[k] : unsqueeze(in.w0[k], 1);
    Shape s = t.shape();
    s.insert(0, c.B);
    w[k] = expand(unsqueeze(t, 0), s);
  }
  return w;
}

}  // namespace

TEST_CASE("ttt_mlp_decode_step token by token equals the fused TTT-MLP scan over the same tokens (float64, CPU)") {
  NoGradGuard ng;
  for (bool ln : {true, false})
    for (bool bias : {true, false}) {
      Case c;
      c.ln = ln, c.bias = bias;
      CAPTURE(ln);
      CAPTURE(bias);
      const Inputs in = make_inputs(c, 200 + 10 * ln + bias);
      const TTTScanComposite none = [](const tensor_list&) -> Tensor { throw std::logic_error("not taped here"); };
      const tensor_list ref = ttt_mlp_scan(in.xq, in.xk, in.xv, in.lr, in.tok, in.w0[0], in.w0[1], in.w0[2], in.w0[3],
                                           in.ln_w, in.ln_b, TTTScanOptions{1, 1e-6}, none);
      tensor_list w = initial(c, in), acc(4);
      int64_t index = 0;
      for (int64_t t = 0; t < c.T; ++t) {
        CAPTURE(t);
        const auto at = [&](const Tensor& x) { return narrow(x, 2, t, 1); };
        const bool commit = index + 1 == c.K;
        const tensor_list r = ttt_mlp_decode_step(at(in.xq), at(in.xk), at(in.xv), narrow(in.lr, 2, t, 1),
                                                  narrow(in.tok, 0, index, 1), w, acc, in.ln_w, in.ln_b, 1e-6, commit);
        CHECK(max_abs_diff(r[0], narrow(ref[0], 2, t, 1)) < 1e-11);
        const tensor_list next(r.begin() + 1, r.end());
        if (commit) w = next, acc = tensor_list(4);
        else acc = next;
        index = commit ? 0 : index + 1;
      }
      REQUIRE(index == 3);
      for (int k = 0; k < 4; ++k) {
        CAPTURE(k);
        if (!w[k].defined()) {
          CHECK(!bias);
          continue;
        }
        CHECK(max_abs_diff(reshape(w[k], ref[1 + k].shape()), ref[1 + k]) < 1e-12);
        CHECK(max_abs_diff(reshape(acc[k], ref[5 + k].shape()), ref[5 + k]) < 1e-12);
      }
    }
}

TEST_CASE("ttt_mlp_decode_step on CUDA equals the CPU reference, writing every output (poisoned), f 16/64") {
  TTT_REQUIRE_GPU();
  NoGradGuard ng;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t f : {16, 64})
    for (bool ln : {true, false})
      for (bool first : {true, false})
        for (bool commit : {false, true}) {
          CAPTURE(f);
          CAPTURE(ln);
          CAPTURE(first);
          CAPTURE(commit);
          Case c;
          c.f = f, c.hd = 4 * f, c.ln = ln, c.T = 1, c.H = 3;
          const Inputs in = make_inputs(c, 400 + f + ln, DType::f32);
          tensor_list w = initial(c, in), acc(4);
          if (!first)
            for (int k = 0; k < 4; ++k) {
              w[k] = contiguous(add(w[k], to_dtype(rand64(w[k].shape(), 20 + k, false, 0.05), DType::f32)));
              acc[k] = to_dtype(rand64(w[k].shape(), 30 + k, false, 0.1), DType::f32);
            }
          const Tensor lr1 = reshape(in.lr, {c.B, c.H, 1}), tok = narrow(in.tok, 0, 1, 1);
          const tensor_list ref = ttt_mlp_decode_step(in.xq, in.xk, in.xv, lr1, tok, w, acc, in.ln_w, in.ln_b, 1e-6, commit);
          const auto dev = [](const Tensor& t) { return t.defined() ? t.to(cuda()) : Tensor(); };
          tensor_list wd(4), ad(4);
          for (int k = 0; k < 4; ++k) wd[k] = dev(w[k]), ad[k] = dev(acc[k]);
          const Tensor q = dev(in.xq), k = dev(in.xk), v = dev(in.xv), l = dev(lr1), tk = dev(tok), lw = dev(in.ln_w),
                       lb = dev(in.ln_b);
          const tensor_list r = ttt_mlp_decode_step(q, k, v, l, tk, wd, ad, lw, lb, 1e-6, commit);
          // The kernel call itself into NaN-filled outputs.
          const TensorOptions o = opts(DType::f32, cuda());
          Tensor out = full({c.B, c.H, 1, f}, nan, o);
          tensor_list next(4);
          TTTMLPDecodeStep call;
          call.s = {c.B, c.H, f, c.hd, 1e-6, ln, true, commit, DType::f32};
          const auto rows = [](const Tensor& t) { return BHTView{t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; };
          const auto blocks = [](const Tensor& t) {
            return t.defined() ? HeadBlocks{t.data_ptr(), t.strides()[0], t.strides()[1]} : HeadBlocks{};
          };
          for (int i = 0; i < 4; ++i) {
            next[i] = full(w[i].shape(), nan, o);
            call.w[i] = blocks(wd[i]), call.acc[i] = blocks(ad[i]), call.next[i] = next[i].data_ptr();
          }
          call.xq = rows(q), call.xk = rows(k), call.xv = rows(v), call.lr = rows(reshape(l, {c.B, c.H, 1, 1}));
          call.tok = tk.data_ptr(), call.ln_w = ln ? lw.data_ptr() : nullptr, call.ln_b = ln ? lb.data_ptr() : nullptr;
          call.out = rows(out);
          backend(cuda()).run(call);
          tensor_list direct = {out};
          direct.insert(direct.end(), next.begin(), next.end());
          for (const tensor_list& got : {r, direct})
            for (int i = 0; i < 5; ++i) {
              CAPTURE(i);
              CHECK(max_scaled_diff(got[i].to(cpu()), ref[i]) < 1e-5);
            }
        }
}

TEST_CASE("TTT-MLP layer: a one-token step is one ttt_mlp_decode_step call, and decoding equals forward") {
  NoGradGuard ng;
  for (const char* backbone : {"mamba", "transformer"}) {
    CAPTURE(backbone);
    ModelConfig cfg = tiny_ttt_config("ttt_mlp", 4, true, backbone);
    Generator g(5);
    TTTMixer layer(cfg, g);
    randomize(layer, 6);
    const Tensor x = rand64({2, 13, cfg.d_model}, 7);
    const Tensor ref = layer.forward(x);
    auto st = layer.init_state(2);
    (void)layer.step(narrow(x, 1, 0, 2), *st);
    for (int64_t t = 2; t < 13; ++t) {
      CAPTURE(t);
      Tensor y;
      CHECK(backend_calls([&] { y = layer.step(narrow(x, 1, t, 1), *st); }, "ttt_mlp_decode_step") == 1);
      CHECK(max_abs_diff(y, narrow(ref, 1, t, 1)) < 1e-12);
    }
  }
}
