// tests/test_prefill_wavefront.cpp — a prompt prefilled as a wavefront of segments over the layers
// (LanguageModel::set_prefill_segment, Note [Wavefront prefill] in layers/language_model.cpp):
//   - CPU, fp64: the logits and the state it leaves equal the forward's and one pass's, for
//     segments ending on and inside mini-batches, both backbones; the profile shows S + L − 1
//     waves, each one group of scans (so the wavefront did run); mixers that do not allow it, and
//     grad mode, run one pass;
//   - the automatic rule: TTT_PREFILL_SEGMENT decides until set_prefill_segment; on the GPU, four
//     segments from 8k tokens while batch × heads < 64;
//   - CUDA: the wavefront on the GPU equals one pass and the CPU.
// Run: ./build/tests/test_prefill_wavefront
#include <doctest/doctest.h>

#include <climits>
#include <cstdlib>

#include "autograd/ops.h"
#include "layers/language_model.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"
#include "tests/profile_count.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig small_ttt(const std::string& backbone, int64_t d_model, int64_t heads, int64_t layers) {
  ModelConfig c;
  c.vocab_size = 41;
  c.d_model = d_model;
  c.n_layers = layers;
  c.n_heads = heads;
  c.d_ff = 2 * d_model;
  c.mixer = "ttt_linear";
  c.backbone = backbone;
  c.init_std = 0.2;  // large enough that every layer visibly changes the logits
  c.max_seq_len = 1024;
  c.ttt.mini_batch = 4;
  c.seed = 7;
  return c;
}

// The logits of a decode call over the prompt and of the next `more` single tokens after it.
std::vector<Tensor> prefill_then_decode(LanguageModel& lm, const Tensor& ids, int64_t prompt, int64_t more,
                                        bool last_only = false) {
  auto st = lm.init_decode(ids.shape()[0]);
  std::vector<Tensor> out{lm.decode(ids.narrow(1, 0, prompt), *st, last_only)};
  for (int64_t t = prompt; t < prompt + more; ++t) out.push_back(lm.decode(ids.narrow(1, t, 1), *st));
  CHECK(st->position == prompt + more);
  return out;
}

// The waves a prefill of `prompt` tokens ran in: each one grouped launch of scans.
int64_t waves(LanguageModel& lm, const Tensor& ids, int64_t prompt) {
  return backend_calls([&] { prefill_then_decode(lm, ids, prompt, 0); }, "ttt_linear_scan_fwd_group");
}

}  // namespace

TEST_CASE("wavefront prefill (CPU, fp64) = the forward, and = one pass, for any segment length") {
  for (std::string backbone : {"transformer", "mamba"}) {
    LanguageModel lm(small_ttt(backbone, 16, 2, 3));
    lm.to(DType::f64);
    NoGradGuard ng;
    const int64_t T = 30, P = 27;
    Tensor ids = rand_ids({2, T}, 41, 5);
    const Tensor full = lm.forward(ids);
    // 4, 8, 24: segments end on mini-batch boundaries (24: two segments); 5 and 10: inside them.
    for (int64_t seg : {4, 5, 8, 10, 24}) {
      lm.set_prefill_segment(seg);
      const int64_t S = (P + seg - 1) / seg, L = 3;
      const std::vector<Tensor> got = prefill_then_decode(lm, ids, P, T - P);
      CHECK_MESSAGE(max_abs_diff(got[0], full.narrow(1, 0, P)) < 1e-10, backbone, " segment ", seg);
      for (int64_t t = P; t < T; ++t)
        CHECK_MESSAGE(max_abs_diff(got[t - P + 1], full.narrow(1, t, 1)) < 1e-10, backbone, " segment ", seg, " t ", t);
      // Segments on mini-batch boundaries: S + L − 1 waves, each one group of scans and nothing
      // else. Segments inside them: the layers whose segment starts inside a mini-batch step it
      // whole (one scan of their own, decode_scan's), so fewer groups.
      const int64_t groups = waves(lm, ids, P);
      const int64_t singles = backend_calls([&] { prefill_then_decode(lm, ids, P, 0); }, "ttt_linear_scan_fwd") - groups;
      if (seg % 4 == 0) {
        CHECK_MESSAGE(groups == S + L - 1, backbone, " segment ", seg);
        CHECK_MESSAGE(singles == 0, backbone, " segment ", seg);
      } else {
        CHECK_MESSAGE((groups >= L && singles > 0), backbone, " segment ", seg);
      }
      const std::vector<Tensor> last = prefill_then_decode(lm, ids, P, 1, /*last_only=*/true);
      CHECK(last[0].shape() == Shape{2, 1, 41});
      CHECK(max_abs_diff(last[0], full.narrow(1, P - 1, 1)) < 1e-10);
      CHECK(max_abs_diff(last[1], full.narrow(1, P, 1)) < 1e-10);
    }
    // Automatic (0: a GPU only) and never (< 0): one pass, no waves.
    for (int64_t off : {0, -1}) {
      lm.set_prefill_segment(off);
      CHECK(waves(lm, ids, P) == 0);
      CHECK(backend_calls([&] { prefill_then_decode(lm, ids, P, 0); }, "ttt_linear_scan_fwd") == 3);
    }
  }
}

TEST_CASE("wavefront prefill: only when every layer allows it, and never under grad mode") {
  ModelConfig c = small_ttt("mamba", 16, 2, 2);
  c.pattern = "ttt_linear,attention";  // attention's step over a later segment is not a resumed scan
  LanguageModel mixed(c);
  mixed.to(DType::f64);
  mixed.set_prefill_segment(8);
  Tensor ids = rand_ids({1, 24}, 41, 6);
  {
    NoGradGuard ng;
    CHECK(waves(mixed, ids, 24) == 0);
  }
  LanguageModel lm(small_ttt("mamba", 16, 2, 2));
  lm.to(DType::f64);
  lm.set_prefill_segment(8);
  CHECK(waves(lm, ids, 24) == 0);  // grad mode on
  NoGradGuard ng;
  CHECK(waves(lm, ids, 24) == 4);
}

TEST_CASE("wavefront prefill: automatic by default; TTT_PREFILL_SEGMENT decides until set_prefill_segment") {
  Tensor ids = rand_ids({1, 24}, 41, 9);
  NoGradGuard ng;
  const auto waves_with = [&](const char* env, int64_t set = INT64_MIN) {
    if (env) setenv("TTT_PREFILL_SEGMENT", env, 1);
    else unsetenv("TTT_PREFILL_SEGMENT");
    LanguageModel lm(small_ttt("mamba", 16, 2, 2));
    lm.to(DType::f64);
    if (set != INT64_MIN) lm.set_prefill_segment(set);
    const int64_t n = waves(lm, ids, 24);
    unsetenv("TTT_PREFILL_SEGMENT");
    return n;
  };
  CHECK(waves_with(nullptr) == 0);  // automatic: a GPU only
  CHECK(waves_with("8") == 4);     // 3 segments, 2 layers
  CHECK(waves_with("auto") == 0);
  CHECK(waves_with("off") == 0);
  CHECK(waves_with("0") == 0);
  CHECK(waves_with("8", -1) == 0);       // the model's setting wins
  CHECK(waves_with(nullptr, 12) == 3);   // 2 segments
  // The setting in effect, as `ttt bench` reports it.
  const auto setting = [&](const char* env, int64_t set = INT64_MIN) {
    setenv("TTT_PREFILL_SEGMENT", env, 1);
    LanguageModel lm(small_ttt("mamba", 16, 2, 2));
    if (set != INT64_MIN) lm.set_prefill_segment(set);
    const int64_t v = lm.prefill_segment();
    unsetenv("TTT_PREFILL_SEGMENT");
    return v;
  };
  CHECK(setting("8") == 8);
  CHECK(setting("auto") == 0);
  CHECK(setting("off") == -1);
  CHECK(setting("0") == -1);
  CHECK(setting("8", -1) == -1);
  CHECK(setting("off", 12) == 12);
  CHECK(LanguageModel(small_ttt("mamba", 16, 2, 2)).prefill_segment() == 0);  // unset: automatic
  setenv("TTT_PREFILL_SEGMENT", "eight", 1);
  LanguageModel lm(small_ttt("mamba", 16, 2, 2));
  CHECK_THROWS_WITH_AS(prefill_then_decode(lm, ids, 24, 0), doctest::Contains("TTT_PREFILL_SEGMENT"), std::invalid_argument);
  unsetenv("TTT_PREFILL_SEGMENT");
}

TEST_CASE("CUDA wavefront prefill = one pass on the GPU = the CPU") {
  TTT_REQUIRE_GPU();
  for (std::string backbone : {"transformer", "mamba"}) {
    LanguageModel cpu_lm(small_ttt(backbone, 64, 2, 4));  // head_dim 32
    LanguageModel gpu_lm(small_ttt(backbone, 64, 2, 4));
    gpu_lm.to(cuda());
    NoGradGuard ng;
    const int64_t T = 520, P = 500;  // 500 = 4 · 125: the last segment ends inside a mini-batch
    Tensor ids = rand_ids({2, T}, 41, 8);
    cpu_lm.set_prefill_segment(-1);
    gpu_lm.set_prefill_segment(-1);
    const std::vector<Tensor> ref = prefill_then_decode(cpu_lm, ids, P, T - P);
    const std::vector<Tensor> one = prefill_then_decode(gpu_lm, ids.to(cuda()), P, T - P);
    for (int64_t seg : {64, 125, 256}) {
      gpu_lm.set_prefill_segment(seg);
      const std::vector<Tensor> got = prefill_then_decode(gpu_lm, ids.to(cuda()), P, T - P);
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK_MESSAGE(max_abs_diff(got[i], one[i]) < 2e-4, backbone, " segment ", seg, " call ", i);
        CHECK_MESSAGE(max_abs_diff(got[i], ref[i]) < 2e-4, backbone, " segment ", seg, " call ", i);
      }
    }
  }
}

TEST_CASE("CUDA wavefront prefill, automatic: four segments from 8k tokens while batch x heads < 64") {
  TTT_REQUIRE_GPU();
  LanguageModel lm(small_ttt("mamba", 64, 2, 4));
  lm.to(cuda());
  lm.set_prefill_segment(0);
  NoGradGuard ng;
  const auto waves_at = [&](int64_t B, int64_t T) { return waves(lm, rand_ids({B, T}, 41, 3).to(cuda()), T); };
  CHECK(waves_at(1, 8192) == 4 + 4 - 1);
  CHECK(waves_at(31, 8192) == 4 + 4 - 1);  // 62 walks
  CHECK(waves_at(32, 8192) == 0);          // 64 walks: one pass
  CHECK(waves_at(1, 8191) == 0);
}
