// tests/test_attention_decode.cpp — one attention decode step as one call (kernels/attention_decode.h,
// ops.h attention_decode_step): token by token it equals the composite path (apply_rope at the token's
// position, scaled_dot_product_attention over the cache) in float64, writes the rotated key and the
// value into the cache and advances the counters; the CUDA kernels equal the CPU reference with their
// outputs poisoned; the layer's one-token step is that call.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention_decode.h"
#include "layers/attention.h"
#include "layers/rope.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"
#include "tests/profile_count.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

constexpr double kTheta = 10000.0;

// [B, T, H, D] -> [B, H, T, D] rotated at positions p0.. (the composite path's keys and queries).
Tensor rotated(const Tensor& x, int64_t p0) {
  return apply_rope(transpose(x, 1, 2), rope_positions(p0, x.shape()[1]), kTheta);
}

}  // namespace

TEST_CASE("attention_decode_step token by token equals RoPE + attention over the cache (float64, CPU)") {
  NoGradGuard ng;
  const int64_t B = 2, H = 3, D = 8, T = 13, cap = 16, p0 = 1000;
  for (int64_t window : {0, 4}) {
    CAPTURE(window);
    const Tensor q = rand64({B, T, H, D}, 1), k = rand64({B, T, H, D}, 2), v = rand64({B, T, H, D}, 3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    const Tensor qr = rotated(q, p0), kr = rotated(k, p0), vt = transpose(v, 1, 2);
    const Tensor ref = scaled_dot_product_attention(qr, kr, vt, true, window, scale);  // [B, H, T, D]
    const TensorOptions o = opts(DType::f64);
    Tensor K = full({B, H, cap, D}, 7.0, o), V = full({B, H, cap, D}, 7.0, o);
    Tensor counters = from_vector_i64({p0, 0}, {2});
    for (int64_t t = 0; t < T; ++t) {
      CAPTURE(t);
      const auto at = [&](const Tensor& x) { return narrow(x, 1, t, 1); };
      const Tensor y = attention_decode_step(at(q), at(k), at(v), K, V, counters, window, scale, kTheta);
      CHECK(max_abs_diff(transpose(y, 1, 2), narrow(ref, 2, t, 1)) < 1e-12);
    }
    CHECK(counters.tolist<int64_t>() == std::vector<int64_t>{p0 + T, T});
    CHECK(max_abs_diff(narrow(K, 2, 0, T), kr) < 1e-12);
    CHECK(max_abs_diff(narrow(V, 2, 0, T), vt) == 0.0);
    CHECK(max_abs_diff(narrow(K, 2, T, cap - T), full({B, H, cap - T, D}, 7.0, o)) == 0.0);  // untouched
  }
}

TEST_CASE("attention_decode_step checks its inputs") {
  NoGradGuard ng;
  const Tensor q = rand64({1, 1, 2, 8}, 1), K = zeros({1, 2, 4, 8}, opts(DType::f64));
  Tensor counters = from_vector_i64({0, 0}, {2});
  CHECK_THROWS_AS(attention_decode_step(rand64({1, 2, 2, 8}, 2), q, q, K, K, counters, 0, 1.0, kTheta),
                  std::invalid_argument);  // two tokens
  CHECK_THROWS_AS(attention_decode_step(q, q, q, zeros({1, 3, 4, 8}, opts(DType::f64)), K, counters, 0, 1.0, kTheta),
                  std::invalid_argument);  // heads differ
  CHECK_THROWS_AS(attention_decode_step(q, q, q, K, K, zeros({2}, opts(DType::f64)), 0, 1.0, kTheta),
                  std::invalid_argument);  // counters not int64
  Tensor full_counters = from_vector_i64({4, 4}, {2});
  CHECK_THROWS_AS(attention_decode_step(q, q, q, K, K, full_counters, 0, 1.0, kTheta), std::invalid_argument);
}

TEST_CASE("attention_decode_step on CUDA equals the CPU reference, writing every output (poisoned)") {
  TTT_REQUIRE_GPU();
  NoGradGuard ng;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t B = 2, H = 3, cap = 700;  // 6 splits of 128 keys
  for (int64_t D : {64, 128})
    for (int64_t window : {0, 100})
      for (int64_t n : {0, 1, 127, 128, 255, 600, 699}) {
        CAPTURE(D);
        CAPTURE(window);
        CAPTURE(n);
        const Tensor q = to_dtype(rand64({B, 1, H, D}, 10 + n), DType::f32);
        const Tensor k = to_dtype(rand64({B, 1, H, D}, 11 + n), DType::f32);
        const Tensor v = to_dtype(rand64({B, 1, H, D}, 12 + n), DType::f32);
        const Tensor K0 = to_dtype(rand64({B, H, cap, D}, 13), DType::f32), V0 = to_dtype(rand64({B, H, cap, D}, 14), DType::f32);
        const int64_t p = 5000 + n;
        Tensor K = K0.clone(), V = V0.clone(), counters = from_vector_i64({p, n}, {2});
        const double scale = 0.125;
        const Tensor ref = attention_decode_step(q, k, v, K, V, counters, window, scale, kTheta);
        // The kernels into a NaN-filled output, from the same cache.
        Tensor Kd = K0.to(cuda()), Vd = V0.to(cuda()), cd = from_vector_i64({p, n}, {2}).to(cuda());
        Tensor qd = q.to(cuda()), kd = k.to(cuda()), vd = v.to(cuda());
        Tensor out = full({B, 1, H, D}, nan, opts(DType::f32, cuda()));
        AttentionDecodeStep c;
        c.s = {B, H, D, cap, window, scale, kTheta, DType::f32};
        const auto heads = [](const Tensor& t) { return TokenHeads{t.data_ptr(), t.strides()[0], t.strides()[2]}; };
        c.q = heads(qd), c.k = heads(kd), c.v = heads(vd), c.out = heads(out);
        c.k_cache = Kd.data_ptr(), c.v_cache = Vd.data_ptr(), c.counters = static_cast<int64_t*>(cd.data_ptr());
        Tensor ws = full({static_cast<int64_t>(c.workspace_bytes() / 4)}, nan, opts(DType::f32, cuda()));
        c.workspace = ws.data_ptr();
        backend(cuda()).run(c);
        CHECK(max_abs_diff(out.to(cpu()), ref) < 2e-5);
        CHECK(max_abs_diff(Kd.to(cpu()), K) < 1e-5);  // the rotated key at n, the rest unchanged
        CHECK(max_abs_diff(Vd.to(cpu()), V) == 0.0);
        CHECK(cd.to(cpu()).tolist<int64_t>() == std::vector<int64_t>{p + 1, n + 1});
        // Through the op as well.
        Tensor cd2 = from_vector_i64({p, n}, {2}).to(cuda());
        const Tensor y = attention_decode_step(qd, kd, vd, K0.to(cuda()), V0.to(cuda()), cd2, window, scale, kTheta);
        CHECK(max_abs_diff(y.to(cpu()), ref) < 2e-5);
      }
}

TEST_CASE("attention layer: a one-token step is one attention_decode_step call, and equals forward") {
  NoGradGuard ng;
  ModelConfig cfg;
  cfg.d_model = 16, cfg.n_heads = 2, cfg.window = 0;
  Generator g(3);
  CausalSelfAttention attn(cfg, g);
  attn.to(DType::f64);
  const Tensor x = rand64({2, 9, 16}, 4);
  const Tensor ref = attn.forward(x);
  auto st = attn.init_state(2);
  Tensor y = attn.step(narrow(x, 1, 0, 5), *st);
  CHECK(backend_calls([&] { y = attn.step(narrow(x, 1, 5, 1), *st); }, "attention_decode_step") == 1);
  CHECK(max_abs_diff(y, narrow(ref, 1, 5, 1)) < 1e-12);
}
