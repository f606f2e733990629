// tests/test_data_sampler.cpp — the stateless random-window sampler (determinism, rank
// disjointness, window contents, uniform coverage, single-document mode) and the sequential
// evaluation windows (stride, exact coverage, rank split).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "data/sampler.h"
#include "data_test_util.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

struct Fixture {
  TempDir dir;
  std::vector<int64_t> stream;
  std::shared_ptr<const TokenDataset> ds;
  // 300 synthetic documents of 1..60 tokens (+EOS) over several shards.
  explicit Fixture(int64_t docs = 300, int64_t max_len = 60) {
    stream = write_synth_split(dir.path.string(), "train", docs, max_len, /*shard_tokens=*/1500);
    ds = TokenDataset::open(dir.path.string(), "train");
  }
  std::vector<int64_t> window(int64_t start, int64_t width) const {
    return {stream.begin() + start, stream.begin() + start + width};
  }
};

std::vector<int64_t> row(const Batch& b, int64_t r) {
  auto all = b.tokens.tolist<int64_t>();
  int64_t w = b.tokens.size(1);
  return {all.begin() + r * w, all.begin() + (r + 1) * w};
}

}  // namespace

TEST_CASE("random sampler: a batch is a pure function of (seed, step, rank, world) and holds the stream's tokens") {
  Fixture f;
  RandomWindowSampler s(f.ds, {/*seq_len=*/16, 0}, /*seed=*/1234);
  CHECK(s.num_windows() == f.ds->num_tokens() - 16);
  Batch a = s.sample(7, 1, 4, 8);
  CHECK(a.tokens.dtype() == DType::i64);
  CHECK(a.tokens.shape() == Shape{8, 17});
  CHECK(a.rows() == 8);
  // Same arguments, a fresh sampler object: identical (nothing is carried between calls).
  RandomWindowSampler s2(f.ds, {16, 0}, 1234);
  Batch b = s2.sample(7, 1, 4, 8);
  CHECK(a.starts == b.starts);
  CHECK(a.tokens.tolist<int64_t>() == b.tokens.tolist<int64_t>());
  for (int64_t r = 0; r < 8; ++r) {
    int64_t st = a.starts[static_cast<size_t>(r)];
    CHECK((st >= 0 && st + 17 <= f.ds->num_tokens()));
    CHECK(row(a, r) == f.window(st, 17));
  }
  // Another step, rank or seed draws other windows.
  CHECK(s.sample(8, 1, 4, 8).starts != a.starts);
  CHECK(s.sample(7, 2, 4, 8).starts != a.starts);
  CHECK(RandomWindowSampler(f.ds, {16, 0}, 1235).sample(7, 1, 4, 8).starts != a.starts);
  CHECK_THROWS_AS(s.sample(0, 4, 4, 8), std::invalid_argument);
  CHECK_THROWS_AS(s.sample(-1, 0, 1, 8), std::invalid_argument);
}

TEST_CASE("random sampler: ranks split one global batch, so they never share a draw and resume is exact") {
  Fixture f;
  RandomWindowSampler s(f.ds, {8, 0}, 99);
  const int64_t B = 5;
  for (int world : {1, 2, 3, 8}) {
    for (int64_t step : {0, 1, 17}) {
      Batch global = s.sample(step, 0, 1, world * B);
      std::set<uint64_t> draws;
      for (int r = 0; r < world; ++r) {
        Batch local = s.sample(step, r, world, B);
        for (int64_t j = 0; j < B; ++j) {
          CHECK(local.starts[static_cast<size_t>(j)] == global.starts[static_cast<size_t>(r * B + j)]);
          draws.insert(static_cast<uint64_t>((step * world + r) * B + j));
        }
      }
      CHECK(draws.size() == static_cast<size_t>(world * B));  // draw numbers are disjoint across ranks
    }
  }
  // Consecutive steps continue the draw sequence: step 1 at world 2 = draws 10..19 at B = 5.
  Batch s1 = s.sample(1, 1, 2, 5);
  for (int64_t j = 0; j < 5; ++j) CHECK(s1.starts[static_cast<size_t>(j)] == s.draw_start(15 + j));
}

TEST_CASE("random sampler: starts cover every possible window about uniformly") {
  Fixture f(40, 12);  // a small stream, so every start is drawn many times
  RandomWindowSampler s(f.ds, {4, 0}, 7);
  const int64_t n = s.num_windows();
  std::vector<int64_t> hits(static_cast<size_t>(n));
  const int64_t draws = 400 * n;
  for (int64_t g = 0; g < draws; ++g) ++hits[static_cast<size_t>(s.draw_start(static_cast<uint64_t>(g)))];
  // Pearson chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)); allow 6 sd.
  double chi2 = 0;
  for (int64_t h : hits) chi2 += (h - 400.0) * (h - 400.0) / 400.0;
  CHECK(*std::min_element(hits.begin(), hits.end()) > 0);
  CHECK(chi2 < (n - 1) + 6 * std::sqrt(2.0 * (n - 1)));
}

TEST_CASE("random sampler: single-document mode keeps every window inside one long-enough document") {
  Fixture f;
  const int64_t T = 20, L = 40;
  RandomWindowSampler s(f.ds, {T, L}, 5);
  // Eligible documents and their spans, from the synthetic lengths.
  std::vector<std::pair<int64_t, int64_t>> spans;
  int64_t expected_windows = 0;
  f.ds->for_each_doc([&](int64_t, int64_t b, int64_t e) {
    if (e - b >= L) { spans.push_back({b, e}); expected_windows += e - b - T; }
  });
  REQUIRE(spans.size() > 5);
  CHECK(s.num_windows() == expected_windows);
  std::set<int64_t> docs_seen;
  Batch batch = s.sample(3, 0, 1, 3000);
  auto tokens = batch.tokens.tolist<int64_t>();
  for (int64_t r = 0; r < batch.rows(); ++r) {
    int64_t st = batch.starts[static_cast<size_t>(r)];
    std::vector<int64_t> w(tokens.begin() + r * (T + 1), tokens.begin() + (r + 1) * (T + 1));
    auto it = std::find_if(spans.begin(), spans.end(), [&](auto sp) { return st >= sp.first && st + T + 1 <= sp.second; });
    REQUIRE(it != spans.end());
    docs_seen.insert(it->first);
    CHECK(w == f.window(st, T + 1));
    // EOS appears only as the document's last token, never before it inside the window.
    CHECK(std::find(w.begin(), w.end() - 1, 2) == w.end() - 1);
  }
  CHECK(docs_seen.size() == spans.size());  // 3000 draws reach every eligible document
  CHECK_THROWS_WITH_AS(RandomWindowSampler(f.ds, {T, 1000}, 5), doctest::Contains("no document has at least 1000"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(RandomWindowSampler(f.ds, {f.ds->num_tokens(), 0}, 5), doctest::Contains("fewer than one window"),
                       std::invalid_argument);
}

TEST_CASE("sequential windows: stride T, every token after the first predicted exactly once, ranks cover all") {
  Fixture f;
  const int64_t T = 32;
  SequentialWindows v(f.ds, {T, 0});
  CHECK(v.num_windows() == (f.ds->num_tokens() - 1) / T);
  for (int64_t k = 0; k < v.num_windows(); ++k) CHECK(v.window_start(k) == k * T);
  Batch b = v.read(2, 3);
  CHECK(b.rows() == 3);
  CHECK(row(b, 1) == f.window(3 * T, T + 1));
  CHECK(v.read(v.num_windows() - 1, 10).rows() == 1);  // clipped at the end
  CHECK(v.read(v.num_windows(), 10).rows() == 0);
  // Rank split: every window exactly once across ranks and batches, in order within a rank.
  for (int world : {1, 3}) {
    std::map<int64_t, int> seen;
    int64_t batches = v.num_batches(world, 4);
    for (int64_t i = 0; i < batches; ++i)
      for (int r = 0; r < world; ++r)
        for (int64_t st : v.batch(i, r, world, 4).starts) ++seen[st];
    CHECK(static_cast<int64_t>(seen.size()) == v.num_windows());
    for (auto [st, n] : seen) CHECK(n == 1);
  }
  // Deterministic: a second object gives the same tokens.
  CHECK(SequentialWindows(f.ds, {T, 0}).read(5, 2).tokens.tolist<int64_t>() == v.read(5, 2).tokens.tolist<int64_t>());
}

TEST_CASE("sequential windows: single-document mode cuts each long document from its start") {
  Fixture f;
  const int64_t T = 10, L = 30;
  SequentialWindows v(f.ds, {T, L});
  std::vector<int64_t> expected;
  f.ds->for_each_doc([&](int64_t, int64_t b, int64_t e) {
    if (e - b < L) return;
    for (int64_t st = b; st + T + 1 <= e; st += T) expected.push_back(st);
  });
  REQUIRE(v.num_windows() == static_cast<int64_t>(expected.size()));
  Batch all = v.read(0, v.num_windows());
  CHECK(all.starts == expected);
  for (int64_t r = 0; r < all.rows(); r += 7) CHECK(row(all, r) == f.window(expected[static_cast<size_t>(r)], T + 1));
}

TEST_CASE("counter hash: distinct counters give distinct values; the seed changes them") {
  std::set<uint64_t> values;
  for (uint64_t c = 0; c < 10000; ++c) values.insert(counter_hash(42, c));
  CHECK(values.size() == 10000);
  CHECK(counter_hash(42, 0) != counter_hash(43, 0));
  CHECK(counter_hash(42, 5) == counter_hash(42, 5));
}
