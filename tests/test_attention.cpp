// tests/test_attention.cpp — causal self-attention (full and sliding-window) and causal linear
// attention (Theorem 1's form and Katharopoulos' elu + 1 with normalizer): values against a
// plain-loop reference, causality, window masking, incremental decoding == the matching slice of
// forward, gradcheck in fp64.
// Run: ./build/tests/test_attention
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/graph_memory.h"
#include "kernels/profiler.h"
#include "layers/attention.h"
#include "layers/linear_attention.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig small_cfg(int64_t window = 0) {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.window = window;
  c.rope_theta = 50.0;
  c.init_std = 0.4;  // large enough that attention weights are far from uniform
  return c;
}

// y = x Wᵀ for row-major x [N, in], W [out, in].
std::vector<double> proj(const std::vector<double>& x, const Tensor& W, int64_t N) {
  const int64_t out = W.shape()[0], in = W.shape()[1];
  auto w = W.tolist<double>();
  std::vector<double> y(N * out, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[n * out + o] += x[n * in + i] * w[o * in + i];
  return y;
}

// Rotates interleaved pairs of each head of row-major [T, H, dh] at positions 0..T−1.
void rope_ref(std::vector<double>& a, int64_t T, int64_t H, int64_t dh, double theta) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < dh / 2; ++i) {
        const double ang = t * std::pow(theta, -2.0 * i / dh);
        double* p = &a[(t * H + h) * dh + 2 * i];
        const double x0 = p[0], x1 = p[1];
        p[0] = x0 * std::cos(ang) - x1 * std::sin(ang);
        p[1] = x0 * std::sin(ang) + x1 * std::cos(ang);
      }
}

// Softmax attention with explicit loops over the allowed keys (batch 1); or linear attention.
Tensor attention_ref(const Tensor& x, const Tensor& wq, const Tensor& wk, const Tensor& wv, const Tensor& wo,
                     int64_t H, int64_t window, double theta, bool linear) {
  const int64_t T = x.shape()[1], D = x.shape()[2], dh = D / H;
  auto xv = x.tolist<double>();
  auto q = proj(xv, wq, T), k = proj(xv, wk, T), v = proj(xv, wv, T);
  if (!linear) rope_ref(q, T, H, dh, theta), rope_ref(k, T, H, dh, theta);
  std::vector<double> z(T * D, 0.0);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> w(T, 0.0);
      double mx = -std::numeric_limits<double>::infinity(), den = 0;
      for (int64_t s = 0; s <= t; ++s) {
        if (window > 0 && t - s >= window) continue;
        double dot = 0;
        for (int64_t i = 0; i < dh; ++i) dot += q[t * D + h * dh + i] * k[s * D + h * dh + i];
        w[s] = linear ? dot : dot / std::sqrt(double(dh));
        mx = std::max(mx, w[s]);
      }
      if (!linear) {
        for (int64_t s = 0; s <= t; ++s)
          if (!(window > 0 && t - s >= window)) w[s] = std::exp(w[s] - mx), den += w[s];
        for (int64_t s = 0; s <= t; ++s) w[s] /= den;
      }
      for (int64_t s = 0; s <= t; ++s) {
        if (window > 0 && t - s >= window) continue;
        for (int64_t i = 0; i < dh; ++i) z[t * D + h * dh + i] += w[s] * v[s * D + h * dh + i];
      }
    }
  return from_vector(proj(z, wo, T), {1, T, D}, opts(DType::f64));
}

// Katharopoulos et al. (2020) causal linear attention with explicit loops (batch 1):
// z_t = Σ_{s<=t} φ(k_s)·φ(q_t) v_s / (Σ_{s<=t} φ(k_s)·φ(q_t) + eps), φ(x) = x + 1 (x > 0), eˣ (x <= 0).
Tensor katharopoulos_ref(const Tensor& x, const Tensor& wq, const Tensor& wk, const Tensor& wv, const Tensor& wo,
                         int64_t H, double eps) {
  const int64_t T = x.shape()[1], D = x.shape()[2], dh = D / H;
  auto xv = x.tolist<double>();
  auto q = proj(xv, wq, T), k = proj(xv, wk, T), v = proj(xv, wv, T);
  for (auto* a : {&q, &k})
    for (double& e : *a) e = e > 0 ? e + 1 : std::exp(e);
  std::vector<double> z(T * D, 0.0);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < T; ++t) {
      double den = 0;
      for (int64_t s = 0; s <= t; ++s) {
        double w = 0;
        for (int64_t i = 0; i < dh; ++i) w += q[t * D + h * dh + i] * k[s * D + h * dh + i];
        den += w;
        for (int64_t i = 0; i < dh; ++i) z[t * D + h * dh + i] += w * v[s * D + h * dh + i];
      }
      for (int64_t i = 0; i < dh; ++i) z[t * D + h * dh + i] /= den + eps;
    }
  return from_vector(proj(z, wo, T), {1, T, D}, opts(DType::f64));
}

ModelConfig katharopoulos_cfg() {
  ModelConfig c = small_cfg();
  c.linear_attention.feature_map = "elu_plus_one";
  c.linear_attention.normalize = true;
  return c;
}

// Perturbs x at positions >= from.
Tensor perturb_after(const Tensor& x, int64_t from, uint64_t seed) {
  Tensor x2 = x.clone();
  const int64_t T = x.shape()[1];
  NoGradGuard ng;
  x2.narrow(1, from, T - from).add_(rand64({x.shape()[0], T - from, x.shape()[2]}, seed));
  return x2;
}

// Feeds x through step() in chunks of the given sizes and compares with forward().
void check_decode_matches(SequenceMixer& m, const Tensor& x, const std::vector<int64_t>& chunks, double tol) {
  Tensor full = m.forward(x);
  auto st = m.init_state(x.shape()[0]);
  int64_t t0 = 0;
  for (int64_t len : chunks) {
    Tensor y = m.step(x.narrow(1, t0, len), *st);
    CHECK_MESSAGE(max_abs_diff(y, full.narrow(1, t0, len)) < tol, "chunk at ", t0, " of ", len);
    t0 += len;
    CHECK(st->position == t0);
  }
  REQUIRE(t0 == x.shape()[1]);
}

}  // namespace

TEST_CASE("attention_mask: causal, and a window of w keys ending at the query") {
  auto m = attention_mask(4, 4, 0, 0, 2, DType::f64, cpu()).tolist<double>();
  const double ninf = -std::numeric_limits<double>::infinity();
  const std::vector<double> want = {0, ninf, ninf, ninf, 0, 0, ninf, ninf, ninf, 0, 0, ninf, ninf, ninf, 0, 0};
  CHECK(m == want);
  // Queries at 10..11 over keys 8..11, full causal.
  auto m2 = attention_mask(2, 4, 10, 8, 0, DType::f64, cpu()).tolist<double>();
  CHECK(m2 == std::vector<double>{0, 0, 0, ninf, 0, 0, 0, 0});
}

TEST_CASE("attention: forward equals a loop reference, full and sliding window") {
  for (int64_t window : {0, 1, 3}) {
    Generator g(1);
    CausalSelfAttention attn(small_cfg(window), g);
    attn.to(DType::f64);
    Tensor x = rand64({1, 7, 8}, 2);
    Tensor want = attention_ref(x, attn.wq->weight, attn.wk->weight, attn.wv->weight, attn.wo->weight, 2, window,
                                50.0, false);
    CHECK_MESSAGE(max_abs_diff(attn.forward(x), want) < 1e-12, "window ", window);
  }
}

TEST_CASE("attention: window >= T is full attention; window changes the result otherwise") {
  Generator g1(3), g2(3), g3(3);
  CausalSelfAttention full(small_cfg(0), g1), wide(small_cfg(6), g2), narrow(small_cfg(2), g3);
  full.to(DType::f64), wide.to(DType::f64), narrow.to(DType::f64);
  Tensor x = rand64({2, 6, 8}, 4);
  CHECK(max_abs_diff(full.forward(x), wide.forward(x)) < 1e-14);
  CHECK(max_abs_diff(full.forward(x), narrow.forward(x)) > 1e-3);
}

TEST_CASE("causality: attention (full, windowed) and linear attention") {
  ModelConfig cfgs[] = {small_cfg(0), small_cfg(3)};
  for (int kind = 0; kind < 3; ++kind) {
    Generator g(5);
    std::shared_ptr<SequenceMixer> m;
    if (kind < 2) m = std::make_shared<CausalSelfAttention>(cfgs[kind], g);
    else m = std::make_shared<LinearAttention>(small_cfg(), g);
    m->to(DType::f64);
    Tensor x = rand64({2, 9, 8}, 6);
    Tensor y = m->forward(x);
    for (int64_t t = 0; t < 8; ++t) {
      Tensor y2 = m->forward(perturb_after(x, t + 1, 100 + t));
      CHECK_MESSAGE(max_abs_diff(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1)) < 1e-14, "kind ", kind, " t ", t);
      CHECK(max_abs_diff(y.narrow(1, t + 1, 1), y2.narrow(1, t + 1, 1)) > 1e-6);
    }
  }
}

TEST_CASE("sliding window: tokens older than the window do not matter, the oldest inside does") {
  const int64_t w = 3;
  Generator g(7);
  CausalSelfAttention attn(small_cfg(w), g);
  attn.to(DType::f64);
  Tensor x = rand64({1, 8, 8}, 8);
  Tensor y = attn.forward(x);
  const int64_t t = 7;
  // Change token t − w (outside the window of query t): output t unchanged.
  Tensor x_out = x.clone();
  {
    NoGradGuard ng;
    x_out.narrow(1, t - w, 1).add_(rand64({1, 1, 8}, 9));
  }
  CHECK(max_abs_diff(attn.forward(x_out).narrow(1, t, 1), y.narrow(1, t, 1)) < 1e-14);
  // Change token t − w + 1 (the oldest inside the window): output t changes.
  Tensor x_in = x.clone();
  {
    NoGradGuard ng;
    x_in.narrow(1, t - w + 1, 1).add_(rand64({1, 1, 8}, 9));
  }
  CHECK(max_abs_diff(attn.forward(x_in).narrow(1, t, 1), y.narrow(1, t, 1)) > 1e-6);
}

TEST_CASE("attention decode (KV cache) reproduces forward, full and windowed, any chunking") {
  for (int64_t window : {0, 3}) {
    Generator g(11);
    CausalSelfAttention attn(small_cfg(window), g);
    attn.to(DType::f64);
    Tensor x = rand64({2, 23, 8}, 12);
    check_decode_matches(attn, x, {1, 1, 5, 1, 2, 7, 1, 1, 4}, 1e-12);
    check_decode_matches(attn, x, std::vector<int64_t>(23, 1), 1e-12);
  }
}

TEST_CASE("linear attention: z_t = sum_{s<=t} v_s (k_s . q_t), and decode reproduces forward") {
  Generator g(13);
  LinearAttention la(small_cfg(), g);
  la.to(DType::f64);
  Tensor x = rand64({1, 6, 8}, 14);
  Tensor want = attention_ref(x, la.wq->weight, la.wk->weight, la.wv->weight, la.wo->weight, 2, 0, 0, true);
  CHECK(max_abs_diff(la.forward(x), want) < 1e-12);
  Tensor xb = rand64({2, 13, 8}, 15);
  check_decode_matches(la, xb, {1, 4, 1, 1, 6}, 1e-12);
  check_decode_matches(la, xb, std::vector<int64_t>(13, 1), 1e-12);
}

TEST_CASE("linear attention, Katharopoulos (elu + 1, normalized): loop reference, decode, causality") {
  Generator g(21);
  LinearAttention la(katharopoulos_cfg(), g);
  la.to(DType::f64);
  Tensor x = rand64({1, 7, 8}, 22);
  Tensor want = katharopoulos_ref(x, la.wq->weight, la.wk->weight, la.wv->weight, la.wo->weight, 2, 1e-6);
  CHECK(max_abs_diff(la.forward(x), want) < 1e-12);
  // Not the plain form with the same weights.
  CHECK(max_abs_diff(want, attention_ref(x, la.wq->weight, la.wk->weight, la.wv->weight, la.wo->weight, 2, 0, 0,
                                         true)) > 1e-3);
  Tensor xb = rand64({2, 13, 8}, 23);
  check_decode_matches(la, xb, {1, 4, 1, 1, 6}, 1e-12);
  check_decode_matches(la, xb, std::vector<int64_t>(13, 1), 1e-12);
  Tensor y = la.forward(xb);
  Tensor y2 = la.forward(perturb_after(xb, 5, 24));
  CHECK(max_abs_diff(y.narrow(1, 0, 5), y2.narrow(1, 0, 5)) < 1e-14);
  CHECK(max_abs_diff(y.narrow(1, 5, 1), y2.narrow(1, 5, 1)) > 1e-6);
  // Each switch alone is used: the feature map without the normalizer differs from both.
  ModelConfig c = katharopoulos_cfg();
  c.linear_attention.normalize = false;
  Generator g2(21);
  LinearAttention phi_only(c, g2);
  phi_only.to(DType::f64);
  CHECK(max_abs_diff(phi_only.forward(x), want) > 1e-3);
  c.linear_attention.feature_map = "relu";
  CHECK_THROWS_AS(LinearAttention(c, g2), std::invalid_argument);
}

TEST_CASE("gradcheck: attention (windowed) and linear attention, fp64") {
  ModelConfig c = small_cfg(2);
  c.d_model = 4;
  c.n_heads = 2;
  Generator g(17);
  CausalSelfAttention attn(c, g);
  LinearAttention la(c, g);
  ModelConfig ck = c;
  ck.linear_attention.feature_map = "elu_plus_one";
  ck.linear_attention.normalize = true;
  LinearAttention kat(ck, g);
  attn.to(DType::f64), la.to(DType::f64), kat.to(DType::f64);
  Tensor x = rand64({1, 4, 4}, 18, true);
  for (SequenceMixer* m : {static_cast<SequenceMixer*>(&attn), static_cast<SequenceMixer*>(&la),
                           static_cast<SequenceMixer*>(&kat)}) {
    tensor_list in = {x};
    for (auto& p : m->parameters()) in.push_back(p);
    auto r = gradcheck([&](const tensor_list& i) { return tensor_list{m->forward(i[0])}; }, in);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("attention: bad shapes and configs are clear errors") {
  Generator g(0);
  ModelConfig c = small_cfg();
  CausalSelfAttention attn(c, g);
  CHECK_THROWS_AS(attn.forward(zeros({1, 3, 6})), std::invalid_argument);
  c.n_heads = 3;
  CHECK_THROWS_AS(CausalSelfAttention(c, g), std::invalid_argument);
}

TEST_CASE("attention with bf16_activations under autocast: bf16 q, k, v and output, fewer casts; same results to bf16") {
  // The projections write bf16, so the op casts nothing: its bf16 buffers are the projections' own
  // outputs, and Wo reads the bf16 output as it is (no cast kept beside it).
  const auto run = [&](bool low, int64_t* saved, int64_t* copies) {
    ModelConfig c = small_cfg(3);
    c.bf16_activations = low;
    Generator g(21);
    CausalSelfAttention m(c, g);
    Tensor x = rand64({2, 9, c.d_model}, 22, false, 0.8).to(DType::f32).set_requires_grad(true);
    Profiler::reset();
    Profiler::set_enabled(true);
    Tensor y;
    {
      AutocastGuard ac(DType::bf16);
      y = m.forward(x);
    }
    CHECK(y.dtype() == DType::f32);
    Tensor loss = sum(square(y));
    *saved = 0;
    for (const SavedBytes& r : saved_bytes_by_op(loss)) *saved += r.bytes;
    tensor_list in = {x};
    for (const Tensor& p : m.parameters()) in.push_back(p);
    tensor_list gr = grad({loss}, in);
    Profiler::set_enabled(false);
    *copies = 0;
    for (const KernelStat& k : Profiler::snapshot())
      if (k.name == "unary copy") *copies += k.calls;
    gr.insert(gr.begin(), y.detach());
    return gr;
  };
  int64_t s_low = 0, s_f32 = 0, c_low = 0, c_f32 = 0;
  const tensor_list a = run(true, &s_low, &c_low), b = run(false, &s_f32, &c_f32);
  check_near_reference(a, b, 3e-2);
  CHECK(s_low <= s_f32);
  INFO("copies and casts, forward and backward: ", c_low, " with bf16 activations, ", c_f32, " without");
  CHECK(c_low < c_f32);
}
