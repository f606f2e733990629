// tests/test_trainer_eval.cpp — perplexity and loss-by-position on hand-checkable cases: a stub
// "model" whose per-token loss is the target token id, over validation tokens 0, 1, 2, ...
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "autograd/ops.h"
#include "trainer/eval.h"

using namespace ttt;

namespace {

// Per-token loss = the target id (as a float): every number below follows by hand.
Tensor loss_is_target(const Tensor& ids, const Tensor& targets) {
  CHECK(ids.shape() == targets.shape());
  return targets.to(DType::f32);
}

std::vector<int64_t> iota_tokens(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST_CASE("windows of L+1 tokens start every L tokens; loss is the mean over every target") {
  // 21 val tokens 0..20, context 4: windows 0-4, 4-8, 8-12, 12-16, 16-20 -> targets 1..20, each once.
  auto src = make_memory_source(iota_tokens(100), iota_tokens(21), 1000, 0);
  CHECK(src->val_windows(4) == 5);
  ContextResult r = evaluate_context(loss_is_target, *src, 4, 0, 2, 4);
  CHECK(r.windows == 5);
  CHECK(r.tokens == 20);
  CHECK(r.loss == doctest::Approx(10.5));  // mean of 1..20
  CHECK(r.ppl == doctest::Approx(std::exp(10.5)));
  // Position p predicts token k*4 + p + 1 in window k: mean over k = 8 + p + 1.
  REQUIRE(r.bucket_loss.size() == 4);
  CHECK(r.bucket_size == 1);
  for (int p = 0; p < 4; ++p) CHECK(r.bucket_loss[p] == doctest::Approx(9.0 + p));
  CHECK(r.bucket_start == std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("buckets average positions; max_windows limits; batch size does not change the result") {
  auto src = make_memory_source(iota_tokens(100), iota_tokens(61), 1000, 0);  // context 6: 10 windows
  ContextResult a = evaluate_context(loss_is_target, *src, 6, 0, 1, 3);
  ContextResult b = evaluate_context(loss_is_target, *src, 6, 0, 4, 3);
  CHECK(a.loss == b.loss);
  CHECK(a.bucket_loss == b.bucket_loss);
  CHECK(a.bucket_size == 2);
  // Bucket 0 = positions 0, 1: targets 6k+1, 6k+2 over k = 0..9: mean 27 + 1.5.
  CHECK(a.bucket_loss[0] == doctest::Approx(28.5));
  CHECK(a.bucket_loss[2] == doctest::Approx(32.5));
  ContextResult c = evaluate_context(loss_is_target, *src, 6, 2, 1, 3);  // windows 0, 1: targets 1..12
  CHECK(c.windows == 2);
  CHECK(c.loss == doctest::Approx(6.5));
  // More buckets than positions: one per position. Uneven buckets: 5 positions in buckets of 2.
  CHECK(evaluate_context(loss_is_target, *src, 6, 0, 1, 64).bucket_loss.size() == 6);
  ContextResult d = evaluate_context(loss_is_target, *src, 5, 1, 1, 3);  // window 0: targets 1..5
  CHECK(d.bucket_start == std::vector<int64_t>{0, 2, 4});
  CHECK(d.bucket_loss[2] == doctest::Approx(5.0));
}

TEST_CASE("errors: no window of that length, bad arguments") {
  auto src = make_memory_source(iota_tokens(100), iota_tokens(10), 1000, 0);
  CHECK_THROWS_WITH_AS(evaluate_context(loss_is_target, *src, 10, 0, 1, 1),
                       doctest::Contains("holds no window of 11 tokens (context 10)"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_context(loss_is_target, *src, INT64_MAX, 0, 1, 1),
                       doctest::Contains("holds no window of 9223372036854775807 + 1 tokens"), std::invalid_argument);
  CHECK_THROWS_AS(evaluate_context(loss_is_target, *src, 0, 0, 1, 1), std::invalid_argument);
  auto wrong_shape = [](const Tensor& ids, const Tensor&) { return zeros({ids.size(0)}); };
  CHECK_THROWS_AS(evaluate_context(wrong_shape, *src, 3, 0, 1, 1), std::logic_error);
}

TEST_CASE("JSON and table carry every number") {
  auto src = make_memory_source(iota_tokens(100), iota_tokens(21), 1000, 0);
  ContextResult r = evaluate_context(loss_is_target, *src, 4, 0, 1, 2);
  auto j = context_result_json(r);
  CHECK(j["context"] == 4);
  CHECK(j["tokens"] == 20);
  CHECK(j["loss_by_position"]["loss"].size() == 2);
  std::string table = format_eval_table({r});
  CHECK(table.find("10.5000") != std::string::npos);
}

TEST_CASE("in-memory training rows are a pure function of (seed, step, rank, world)") {
  auto src = make_memory_source(iota_tokens(1000), {}, 1000, 7);
  Tensor a = src->train_rows(3, 0, 1, 4, 8), b = src->train_rows(3, 0, 1, 4, 8);
  CHECK(a.tolist<int64_t>() == b.tolist<int64_t>());
  CHECK(a.shape() == Shape{4, 9});
  auto r = a.tolist<int64_t>();
  for (int j = 0; j < 4; ++j)
    for (int t = 1; t < 9; ++t) CHECK(r[j * 9 + t] == r[j * 9 + t - 1] + 1);  // consecutive tokens
  CHECK(src->train_rows(4, 0, 1, 4, 8).tolist<int64_t>() != r);
  // Rank 1 of 2 gets rows 4..7 of the world-1 batch of 8.
  auto whole = src->train_rows(3, 0, 1, 8, 8).tolist<int64_t>();
  auto rank1 = src->train_rows(3, 1, 2, 4, 8).tolist<int64_t>();
  CHECK(std::vector<int64_t>(whole.begin() + 36, whole.end()) == rank1);
  CHECK(src->val_windows(8) == 0);
}
