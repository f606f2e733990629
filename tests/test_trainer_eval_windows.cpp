// tests/test_trainer_eval_windows.cpp — `ttt eval --windows documents`, log-spaced loss by token
// index, and bits per byte / word perplexity (trainer/eval_windows.h, trainer/text_units.h), on
// synthetic shards with known tokens and on a real tokenizer whose decode() checks the byte counts.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <sstream>

#include "data/dataset.h"
#include "data/tokenizer.h"
#include "tests/data_test_util.h"
#include "trainer/eval_windows.h"
#include "trainer/text_units.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// Per-token loss = the target id, so every mean follows from the tokens.
Tensor loss_is_target(const Tensor& ids, const Tensor& targets) {
  CHECK(ids.shape() == targets.shape());
  return targets.to(DType::f32);
}

Tensor loss_is_one(const Tensor& ids, const Tensor&) { return ones(ids.shape()); }

}  // namespace

TEST_CASE("log-spaced bucket edges") {
  CHECK(log_bucket_edges(20, 1) == std::vector<int64_t>{1, 2, 4, 8, 16, 21});
  // ceil(2^(j/4)): 1, 1.19, 1.41, 1.68, 2, 2.38, 2.83, 3.36, 4, 4.76, 5.66, 6.73, 8, 9.51, 11.3 ...
  CHECK(log_bucket_edges(10, 4) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 10, 11});
  CHECK(log_bucket_edges(1, 4) == std::vector<int64_t>{1, 2});
  CHECK(log_bucket_edges(16, 2) == std::vector<int64_t>{1, 2, 3, 4, 6, 8, 12, 16, 17});
  CHECK_THROWS_AS(log_bucket_edges(8, 0), std::invalid_argument);
}

TEST_CASE("packed windows: loss by token index in log buckets is the mean over windows and indices") {
  std::vector<int64_t> val(41);
  std::iota(val.begin(), val.end(), 0);  // context 10: 4 windows, window k starts at 10k
  auto src = make_memory_source(val, val, 1000, 0);
  EvalOptions o;
  o.batch = 3;
  o.buckets_per_octave = 4;
  ContextResult r = evaluate_windows(loss_is_target, packed_windows(*src, 10), o);
  CHECK(r.window_mode == "packed");
  CHECK(r.windows == 4);
  // Token index t (= p + 1) of window k predicts token 10k + t: mean over k = 15 + t.
  REQUIRE(r.index_start == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 10});
  CHECK(r.index_end == std::vector<int64_t>{2, 3, 4, 5, 6, 7, 8, 10, 11});
  for (size_t k = 0; k < r.index_start.size(); ++k) {
    const double mean_t = (r.index_start[k] + r.index_end[k] - 1) / 2.0;
    CHECK(r.index_loss[k] == doctest::Approx(15 + mean_t));
  }
  CHECK(r.loss == doctest::Approx(20.5));  // targets 1..40
  CHECK_FALSE(r.has_text);
}

TEST_CASE("documents windows stay inside documents; short documents are skipped and counted") {
  TempDir dir;
  // Document d has 1 + (d*37) % 50 tokens + EOS; ids from 3 up, EOS = 2.
  auto stream = write_synth_split(dir.path.string(), "val", 30, 50, 400);
  auto val = TokenDataset::open(dir.path.string(), "val");
  const int64_t L = 12;
  EvalWindows w = document_windows(val, L);
  int64_t expect_windows = 0, docs = 0, skipped = 0;
  std::vector<int64_t> expect_rows;
  val->for_each_doc([&](int64_t, int64_t b, int64_t e) {
    if (e - b < L + 1) {
      ++skipped;
      return;
    }
    ++docs;
    for (int64_t s = b; s + L + 1 <= e; s += L) {
      ++expect_windows;
      expect_rows.insert(expect_rows.end(), stream.begin() + s, stream.begin() + s + L + 1);
    }
  });
  CHECK(w.documents == docs);
  CHECK(w.documents_skipped == skipped);
  CHECK(docs + skipped == 30);
  REQUIRE(w.count == expect_windows);
  Tensor rows = w.rows(0, w.count);
  CHECK(rows.tolist<int64_t>() == expect_rows);
  // No window crosses a boundary: EOS only as the last token of a window.
  auto r = rows.tolist<int64_t>();
  for (int64_t k = 0; k < w.count; ++k)
    for (int64_t t = 0; t < L; ++t) CHECK(r[static_cast<size_t>(k * (L + 1) + t)] != 2);
  // The loss is the mean of the targets of exactly these windows.
  double sum = 0;
  for (int64_t k = 0; k < w.count; ++k)
    for (int64_t t = 1; t <= L; ++t) sum += static_cast<double>(r[static_cast<size_t>(k * (L + 1) + t)]);
  ContextResult res = evaluate_windows(loss_is_target, w, EvalOptions{0, 4, 3, 2, nullptr});
  CHECK(res.window_mode == "documents");
  CHECK(res.loss == doctest::Approx(sum / static_cast<double>(w.count * L)));
  CHECK(res.documents == docs);
  // A context no document reaches: a clear error.
  EvalWindows none = document_windows(val, 60);
  CHECK(none.count == 0);
  CHECK_THROWS_WITH_AS(evaluate_windows(loss_is_target, none, EvalOptions{}), doctest::Contains("has 61 tokens"),
                       std::invalid_argument);
  CHECK_THROWS_AS(window_mode_from_string("docs"), std::invalid_argument);
}

TEST_CASE("bytes and words of scored tokens match the tokenizer's decode of the text") {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_tiny_tokenizer(dir));
  REQUIRE(tok.add_dummy_prefix());
  const std::vector<std::string> docs = {
      "the whale and the sea.",
      "  leading spaces, trailing space ",
      "line one\nline two\n\nafter a blank line\ttab",
      "caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 bytes beyond the vocabulary",
      "x",
      "The old man was on the boat with his harpoon.",
  };
  // The stream: EOS, then each document followed by EOS (packed, as `data prepare` writes it).
  std::vector<int64_t> stream = {tok.eos_id()};
  int64_t expect_bytes = 0, expect_words = 0, text_tokens = 0;
  for (const auto& d : docs) {
    auto ids = tok.encode(d);
    CHECK(tok.decode(ids) == d);
    expect_bytes += static_cast<int64_t>(d.size());
    std::istringstream words(d);  // whitespace-separated words, counted independently
    for (std::string w; words >> w;) ++expect_words;
    text_tokens += static_cast<int64_t>(ids.size());
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(tok.eos_id());
  }
  TokenText text = TokenText::from_tokenizer(tok, tok.vocab_size() + 8);  // a padded model vocabulary
  CHECK(text.bytes.size() == static_cast<size_t>(tok.vocab_size() + 8));
  // Windows of every length cover the targets stream[1..] once; the last one may be shorter.
  const int64_t n = static_cast<int64_t>(stream.size()) - 1;
  for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{7}, int64_t{64}, n}) {
    CAPTURE(T);
    TextUnits u;
    std::vector<double> losses(static_cast<size_t>(T), 0.5);
    for (int64_t s = 0; s < n; s += T) add_window_text_units(text, stream.data() + s, losses.data(), std::min(T, n - s), u);
    CHECK(u.bytes == expect_bytes);
    CHECK(u.words == expect_words);
    CHECK(u.tokens == text_tokens);  // EOS targets excluded
    CHECK(u.nll == doctest::Approx(0.5 * static_cast<double>(text_tokens)));
    CHECK(u.bits_per_byte() == doctest::Approx(0.5 * text_tokens / (std::log(2.0) * expect_bytes)));
    CHECK(u.word_perplexity() == doctest::Approx(std::exp(0.5 * text_tokens / expect_words)));
  }
  // Through evaluate_windows over an in-memory stream.
  auto src = make_memory_source(stream, stream, tok.vocab_size(), 0);
  EvalOptions o;
  o.text = &text;
  const int64_t L = 5;
  ContextResult r = evaluate_windows(loss_is_one, packed_windows(*src, L), o);
  REQUIRE(r.has_text);
  TextUnits direct;
  std::vector<double> ones_l(static_cast<size_t>(L), 1.0);
  for (int64_t k = 0; k < r.windows; ++k) add_window_text_units(text, stream.data() + k * L, ones_l.data(), L, direct);
  CHECK(r.text.bytes == direct.bytes);
  CHECK(r.text.words == direct.words);
  CHECK(r.text.nll == doctest::Approx(static_cast<double>(direct.tokens)));
  TextUnits empty;
  CHECK(std::isnan(empty.bits_per_byte()));
  CHECK(std::isnan(empty.word_perplexity()));
}

TEST_CASE("token_bytes: spaces, byte-fallback pieces and control ids") {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_tiny_tokenizer(dir));
  CHECK(tok.token_bytes(tok.eos_id()).empty());
  CHECK(tok.token_bytes(tok.bos_id()).empty());
  CHECK(tok.token_bytes(0).empty());  // unk
  auto ids = tok.encode("\xe2\x80\x94");  // not in the tiny vocabulary: three byte pieces
  std::string joined;
  for (int id : ids) joined += tok.token_bytes(id);
  CHECK(joined == " \xe2\x80\x94");  // the dummy-prefix space, then the bytes
  CHECK_THROWS_AS(tok.token_bytes(static_cast<int>(tok.vocab_size())), std::out_of_range);
}
