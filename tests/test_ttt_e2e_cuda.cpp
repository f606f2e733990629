// tests/test_ttt_e2e_cuda.cpp — TTT-E2E on the GPU against the same model on the CPU (float32):
// the meta loss and every gradient through the second-order scan (remat on), token losses and
// decode; bf16 autocast close to float32. Skips itself without a GPU.
// Run: ./build/tests/test_ttt_e2e_cuda
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "layers/e2e_model.h"
#include "layers/language_model.h"
#include "tests/cuda_test_util.h"
#include "tests/e2e_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;

namespace {

// head_dim 32: the fused attention kernels; 4 chunks of 16 at T = 56.
ModelConfig small_e2e() {
  ModelConfig c = ttt::testing::e2e_config({.vocab = 97, .d_model = 64, .n_layers = 4, .n_heads = 2, .d_ff = 96,
                                            .window = 24, .suffix_blocks = 2, .chunk = 16});
  c.init_std = 0.02;
  c.seed = 5;
  return c;
}

double rel_err(const Tensor& a, const Tensor& ref) {
  auto x = a.to(cpu()).to(DType::f64).tolist<double>(), r = ref.to(DType::f64).tolist<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - r[i]) * (x[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

TEST_CASE("E2E on CUDA = E2E on the CPU: meta loss, every meta-gradient, token losses, decode") {
  TTT_REQUIRE_GPU();
  const ModelConfig c = small_e2e();
  LanguageModel on_cpu(c), on_gpu(c);
  on_gpu.to(cuda());
  const int64_t T = 56;  // 4 chunks: 3 inner steps, the last chunk shorter
  Tensor ids = ttt::testing::rand_ids({2, T}, c.vocab_size, 1), targets = ttt::testing::rand_ids({2, T}, c.vocab_size, 2);
  Tensor l_cpu = on_cpu.loss(ids, targets), l_gpu = on_gpu.loss(ids.to(cuda()), targets.to(cuda()));
  CHECK(std::fabs(l_cpu.item() - l_gpu.item()) <= 1e-4 * std::fabs(l_cpu.item()));
  tensor_list g_cpu = grad({l_cpu}, on_cpu.parameters()), g_gpu = grad({l_gpu}, on_gpu.parameters());
  auto named = on_cpu.named_parameters();
  for (size_t i = 0; i < g_cpu.size(); ++i) {
    INFO(named[i].first);
    CHECK(rel_err(g_gpu[i], g_cpu[i]) < 1e-3);
  }
  NoGradGuard ng;
  CHECK(rel_err(on_gpu.token_losses(ids.to(cuda()), targets.to(cuda())), on_cpu.token_losses(ids, targets)) < 1e-4);
  auto st = on_gpu.init_decode(2);
  tensor_list outs;
  for (int64_t t = 0; t < T; t += 7) outs.push_back(on_gpu.decode(contiguous(narrow(ids, 1, t, 7)).to(cuda()), *st));
  CHECK(rel_err(cat(outs, 1), on_cpu.forward(ids)) < 1e-4);
}

TEST_CASE("E2E on CUDA with bf16 autocast: close to float32, finite gradients") {
  TTT_REQUIRE_GPU();
  const ModelConfig c = small_e2e();
  LanguageModel lm(c);
  lm.to(cuda());
  Tensor ids = ttt::testing::rand_ids({2, 48}, c.vocab_size, 3).to(cuda());
  Tensor targets = ttt::testing::rand_ids({2, 48}, c.vocab_size, 4).to(cuda());
  const double f32 = lm.loss(ids, targets).item();
  Tensor l;
  {
    AutocastGuard amp(DType::bf16);
    l = lm.loss(ids, targets);
  }
  CHECK(std::fabs(l.item() - f32) < 2e-2 * std::fabs(f32));
  for (const Tensor& g : grad({l}, lm.parameters()))
    for (double v : g.to(cpu()).to(DType::f64).tolist<double>()) REQUIRE(std::isfinite(v));
}
