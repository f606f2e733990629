// tests/test_trainer_optimizer.cpp — AdamW against the formula computed by hand, weight-decay
// exclusion, gradient-norm clipping, the warmup + cosine schedule at known points, and the
// trainer's optimizer step through the multi-tensor kernels against the per-tensor path they
// replaced (a tiny model trained a few steps both ways: the same bits; CPU, and CUDA when present).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/profiler.h"
#include "layers/language_model.h"
#include "tests/cuda_test_util.h"
#include "trainer/config.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"

using namespace ttt;

namespace {

// The AdamW update of optimizer.h, in double, for one element over several steps.
struct RefAdamW {
  double p, m = 0, v = 0;
  int t = 0;
  void step(double g, double lr, double b1, double b2, double eps, double wd) {
    ++t;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    double mh = m / (1 - std::pow(b1, t)), vh = v / (1 - std::pow(b2, t));
    p -= lr * (mh / (std::sqrt(vh) + eps) + wd * p);
  }
};

Tensor param(const std::vector<double>& v) { return from_vector(v, {static_cast<int64_t>(v.size())}).set_requires_grad(true); }

}  // namespace

TEST_CASE("first AdamW step: lr * (sign(g) + wd * p)") {
  // With bias correction, step 1 has m_hat = g and v_hat = g^2, so the update is g/|g| (+eps).
  Tensor w = param({1.0, -2.0, 3.0});
  AdamW opt({{"w", w}}, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  w.set_grad(from_vector({0.5, -0.25, 2.0}, {3}));
  opt.step(0.01);
  auto got = w.tolist<double>();
  CHECK(got[0] == doctest::Approx(1.0 - 0.01 * (1 + 0.1 * 1.0)).epsilon(1e-6));
  CHECK(got[1] == doctest::Approx(-2.0 - 0.01 * (-1 + 0.1 * -2.0)).epsilon(1e-6));
  CHECK(got[2] == doctest::Approx(3.0 - 0.01 * (1 + 0.1 * 3.0)).epsilon(1e-6));
  CHECK(opt.step_count() == 1);
  CHECK(opt.slots()[0].m.tolist<double>()[2] == doctest::Approx(0.1 * 2.0));
  CHECK(opt.slots()[0].v.tolist<double>()[2] == doctest::Approx(0.05 * 4.0));
}

TEST_CASE("AdamW over several steps matches the formula, with clipping scale and decay exclusion") {
  Tensor w = param({0.3, -0.7});
  Tensor b = param({0.2});
  AdamWOptions o{0.8, 0.9, 1e-6, 0.05};
  AdamW opt({{"layer.weight", w}, {"layer.bias", b}}, o,
            [](const std::string& name, const Tensor&) { return name != "layer.bias"; });
  RefAdamW rw0{0.3}, rw1{-0.7}, rb{0.2};
  const double grads[3][3] = {{0.1, -0.4, 0.3}, {-0.2, 0.05, 0.0}, {0.7, 0.7, -1.0}};
  const double lrs[3] = {0.1, 0.05, 0.02}, scales[3] = {1.0, 0.5, 0.25};
  for (int s = 0; s < 3; ++s) {
    w.set_grad(from_vector({grads[s][0], grads[s][1]}, {2}));
    b.set_grad(from_vector({grads[s][2]}, {1}));
    opt.step(lrs[s], scales[s]);
    rw0.step(grads[s][0] * scales[s], lrs[s], o.beta1, o.beta2, o.eps, o.weight_decay);
    rw1.step(grads[s][1] * scales[s], lrs[s], o.beta1, o.beta2, o.eps, o.weight_decay);
    rb.step(grads[s][2] * scales[s], lrs[s], o.beta1, o.beta2, o.eps, 0.0);
  }
  CHECK(w.tolist<double>()[0] == doctest::Approx(rw0.p).epsilon(1e-6));
  CHECK(w.tolist<double>()[1] == doctest::Approx(rw1.p).epsilon(1e-6));
  CHECK(b.tolist<double>()[0] == doctest::Approx(rb.p).epsilon(1e-6));
  CHECK(opt.slots()[1].decay == false);
}

TEST_CASE("a parameter without gradient gets a zero-gradient update (optax semantics)") {
  Tensor w = param({2.0});
  AdamW opt({{"w", w}}, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  opt.step(0.5);  // m = v = 0: only the decay acts
  CHECK(w.tolist<double>()[0] == doctest::Approx(2.0 - 0.5 * 0.1 * 2.0));
}

TEST_CASE("AdamW refuses non-fp32 parameters") {
  Tensor w = from_vector({1.0}, {1}, opts(DType::f64)).set_requires_grad(true);
  CHECK_THROWS_WITH_AS(AdamW({{"blocks.0.w", w}}, {}), doctest::Contains("'blocks.0.w' is float64"),
                       std::invalid_argument);
}

TEST_CASE("decay exclusion of norms, biases and embeddings") {
  CHECK(decay_only_matrices("blocks.0.mixer.wq", zeros({4, 4})));
  CHECK_FALSE(decay_only_matrices("blocks.0.norm.weight", zeros({4})));
  CHECK_FALSE(decay_only_matrices("embed.weight", zeros({10, 4})));
}

TEST_CASE("global gradient norm and clipping") {
  Tensor a = param({0, 0}), b = param({0}), unused = param({5});
  a.set_grad(from_vector({3, 4}, {2}));
  b.set_grad(from_vector({12}, {1}));
  double n = global_grad_norm({a, b, unused});
  CHECK(n == doctest::Approx(13.0));
  CHECK(clip_scale(n, 1.0) == doctest::Approx(1.0 / 13.0));
  CHECK(clip_scale(n, 20.0) == 1.0);
  CHECK(clip_scale(n, 0.0) == 1.0);  // 0 = off
  // 2-D gradients reduce over every element.
  Tensor m = from_vector({0, 0, 0, 0}, {2, 2}).set_requires_grad(true);
  m.set_grad(from_vector({1, 1, 1, 1}, {2, 2}));
  CHECK(global_grad_norm({m}) == doctest::Approx(2.0));
}

TEST_CASE("warmup + cosine schedule (optax warmup_cosine_decay_schedule)") {
  LRSchedule s{1.0, 0.1, 10, 110};
  CHECK(s.at(0) == 0.0);
  CHECK(s.at(5) == doctest::Approx(0.5));
  CHECK(s.at(10) == doctest::Approx(1.0));
  CHECK(s.at(60) == doctest::Approx(0.1 + 0.9 * 0.5));             // halfway through the decay
  CHECK(s.at(35) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4))));
  CHECK(s.at(110) == doctest::Approx(0.1));
  CHECK(s.at(500) == doctest::Approx(0.1));
  LRSchedule none{2.0, 0.0, 0, 4};
  CHECK(none.at(0) == 2.0);
  CHECK(none.at(2) == doctest::Approx(1.0));
  CHECK(warmup_steps_for(4800, 0.1, -1) == 480);
  CHECK(warmup_steps_for(4800, 0.1, 100) == 100);
}

namespace {

// Bit patterns of a float32 tensor (on any device).
std::vector<uint32_t> bits_of(const Tensor& t) {
  const std::vector<float> f = t.to(cpu()).tolist<float>();
  std::vector<uint32_t> b(f.size());
  std::memcpy(b.data(), f.data(), f.size() * sizeof(float));
  return b;
}

// The train loop's optimizer step (global_grad_norm, clip_scale, AdamW::step with the decay
// filter) on two copies of a tiny TTT-Linear model, one through the multi-tensor kernels and one
// through the per-tensor path: 3 steps of the same batches, one parameter without a gradient in
// step 2, clipping active. Norms, parameters and moments must agree bit for bit.
void check_multi_vs_per_tensor_steps(Device dev) {
  const RunConfig cfg = load_config("", {"model.vocab_size=64", "model.d_model=16", "model.n_layers=2",
                                         "model.n_heads=2", "model.d_ff=32", "model.max_seq_len=16",
                                         "model.ttt.mini_batch=4"});
  LanguageModel multi(cfg.model), per(cfg.model);
  {
    NoGradGuard ng;
    auto src = multi.named_parameters(), dst = per.named_parameters();
    REQUIRE(src.size() == dst.size());
    for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  multi.to(dev);
  per.to(dev);
  const auto before = bits_of(multi.named_parameters().front().second);
  AdamW opt_multi(multi.named_parameters(), {}, decay_only_matrices);
  AdamW opt_per(per.named_parameters(), {}, decay_only_matrices);
  opt_per.set_multi_tensor(false);
  REQUIRE(opt_multi.slots().size() > 10);
  Generator gen(5);
  for (int step = 0; step < 3; ++step) {
    const Tensor tokens = rand({2, 17}, gen, opts(DType::f64), 0, 64).to(DType::i64);
    const Tensor ids = tokens.narrow(1, 0, 16).contiguous().to(dev), targets = tokens.narrow(1, 1, 16).contiguous().to(dev);
    // One backward (on `multi`), its gradients copied to `per`: what is compared is the optimizer
    // step alone, not whether two backward passes give the same bits (on a GPU some reductions
    // in the backward use atomics).
    backward({multi.loss(ids, targets)});
    if (step == 1) opt_multi.slots()[1].param.zero_grad();  // as if the loss had not reached it
    {
      auto src = multi.named_parameters(), dst = per.named_parameters();
      for (size_t i = 0; i < src.size(); ++i)
        if (src[i].second.grad().defined()) dst[i].second.set_grad(src[i].second.grad().clone());
    }
    double norms[2];
    for (int k = 0; k < 2; ++k) {
      LanguageModel& model = k ? per : multi;
      AdamW& opt = k ? opt_per : opt_multi;
      norms[k] = global_grad_norm(model.parameters(), /*multi_tensor=*/k == 0);
      opt.step(1e-2, clip_scale(norms[k], 0.5));
      model.zero_grad();
    }
    CHECK(norms[0] == norms[1]);
    CHECK(clip_scale(norms[0], 0.5) < 1.0);
  }
  for (size_t i = 0; i < opt_multi.slots().size(); ++i) {
    const auto& a = opt_multi.slots()[i];
    const auto& b = opt_per.slots()[i];
    CHECK_MESSAGE(bits_of(a.param) == bits_of(b.param), a.name);
    CHECK_MESSAGE(bits_of(a.m) == bits_of(b.m), a.name);
    CHECK_MESSAGE(bits_of(a.v) == bits_of(b.v), a.name);
  }
  CHECK(bits_of(multi.named_parameters().front().second) != before);  // the steps moved the weights
}

}  // namespace

TEST_CASE("the optimizer step: multi-tensor kernels and the per-tensor path give the same bits (CPU)") {
  check_multi_vs_per_tensor_steps(cpu());
}

TEST_CASE("the optimizer step: multi-tensor kernels and the per-tensor path give the same bits (CUDA)") {
  TTT_REQUIRE_GPU();
  check_multi_vs_per_tensor_steps(cuda());
}

namespace {

// Under bf16 autocast a training step casts W (read as Wᵀ by x Wᵀ) and V (read as it is): the
// optimizer's kernel writes their next casts, which the next step's products read (no cast
// kernel), equal bit for bit to casting the updated weights; b, never cast, gets none.
void check_optimizer_writes_weight_casts(Device dev) {
  Generator g(21);
  Tensor W = randn({6, 5}, g).to(dev).set_requires_grad(true), V = randn({6, 4}, g).to(dev).set_requires_grad(true);
  Tensor b = randn({4}, g).to(dev).set_requires_grad(true);
  const Tensor x = randn({3, 5}, g).to(dev);
  AdamW opt({{"W", W}, {"V", V}, {"b", b}}, {});
  const auto step_loss = [&] {
    AutocastGuard ac(DType::bf16);
    return sum(add(matmul(matmul(x, transpose(W, 0, 1)), V), b));
  };
  backward({step_loss()});
  CHECK(Autocast::weight_cast_kept(W, DType::bf16));
  CHECK(Autocast::weight_cast_kept(V, DType::bf16));
  CHECK_FALSE(Autocast::weight_cast_kept(b, DType::bf16));
  opt.step(1e-2);
  CHECK(Autocast::weight_cast_kept(W, DType::bf16));  // at the new version: written by the update
  CHECK_FALSE(Autocast::weight_cast_kept(b, DType::bf16));
  {
    AutocastGuard ac(DType::bf16);
    Profiler::reset();
    Profiler::set_enabled(true);
    const Tensor wt = Autocast::cached_cast(transpose(W, 0, 1), DType::bf16), v = Autocast::cached_cast(V, DType::bf16);
    Profiler::set_enabled(false);
    CHECK(Profiler::snapshot().empty());  // no kernel: the optimizer's casts
    CHECK(bits_of(contiguous(transpose(wt, 0, 1))) == bits_of(W.detach().to(DType::bf16)));
    CHECK(bits_of(v.contiguous()) == bits_of(V.detach().to(DType::bf16)));
  }
  // A second step reads them and the optimizer writes the next ones.
  W.zero_grad(), V.zero_grad(), b.zero_grad();
  backward({step_loss()});
  opt.step(1e-2);
  AutocastGuard ac(DType::bf16);
  CHECK(bits_of(Autocast::cached_cast(V, DType::bf16).contiguous()) == bits_of(V.detach().to(DType::bf16)));
}

}  // namespace

TEST_CASE("AdamW writes the next bf16 casts of the weights autocast products cast (CPU)") {
  check_optimizer_writes_weight_casts(cpu());
}

TEST_CASE("AdamW writes the next bf16 casts of the weights autocast products cast (CUDA)") {
  TTT_REQUIRE_GPU();
  check_optimizer_writes_weight_casts(cuda());
}
