// tests/test_data_shards.cpp — shard writer/reader and TokenDataset (format, counts, reads across
// shards, damage detection, tokenizer/vocab checks), and `data prepare` end to end: round trip
// text -> shards -> text, EOS placement, the split rule, thread-count independence, safe output.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/prepare.h"
#include "data/shard_reader.h"
#include "data/text_sources.h"
#include "data_test_util.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Byte offset of the first chunk of token data of a synthetic uint16 shard: the little-endian
// bytes of synthetic document 1's first tokens.
size_t find_token_bytes(const std::string& file) {
  auto t = synth_doc(1, 40, 1000);
  std::string pat;
  for (int i = 0; i < 4; ++i) pat += std::string{char(t[i] & 0xFF), char(t[i] >> 8)};
  size_t at = file.find(pat);
  REQUIRE(at != std::string::npos);
  return at;
}

}  // namespace

TEST_CASE("token dtype: uint16 up to 65536 ids, uint32 beyond, refused past uint32") {
  CHECK(token_type_for_vocab(320) == TokenType::u16);
  CHECK(token_type_for_vocab(65536) == TokenType::u16);
  CHECK(token_type_for_vocab(65537) == TokenType::u32);
  CHECK(token_type_for_vocab(int64_t(1) << 32) == TokenType::u32);
  CHECK(contains(error_of([] { token_type_for_vocab((int64_t(1) << 32) + 1); }), "does not fit uint32"));
  CHECK_THROWS_AS(token_type_for_vocab(0), std::invalid_argument);
  CHECK(shard_file_name("train", 3) == "train_00003.h5");
}

TEST_CASE("shards: written documents read back exactly, across shard boundaries, with their offsets") {
  TempDir dir;
  auto stream = write_synth_split(dir.path.string(), "train", 50, 40, /*shard_tokens=*/200);
  auto ds = TokenDataset::open(dir.path.string(), "train");
  CHECK(ds->num_shards() > 3);
  CHECK(ds->num_docs() == 50);
  CHECK(ds->num_tokens() == static_cast<int64_t>(stream.size()));
  CHECK(ds->vocab_size() == 1000);
  CHECK(ds->eos_id() == 2);
  CHECK(ds->tokenizer_sha256() == "feedbeef");
  int64_t total = 0;
  for (size_t s = 0; s < ds->num_shards(); ++s) {
    const ShardInfo& si = ds->shard(s);
    CHECK(si.shard_index == static_cast<int64_t>(s));
    CHECK(si.num_shards == static_cast<int64_t>(ds->num_shards()));
    CHECK(si.token_type == TokenType::u16);
    CHECK(si.sources_json == "[\"synthetic\"]");
    // A shard closes on the first document boundary at or after shard_tokens.
    if (s + 1 < ds->num_shards()) CHECK(si.num_tokens >= 200);
    if (s + 1 < ds->num_shards()) CHECK(si.num_tokens < 200 + 41);
    total += si.num_tokens;
  }
  CHECK(total == ds->num_tokens());
  // The whole stream, and every range straddling a shard boundary.
  std::vector<int64_t> all(stream.size());
  ds->read(0, ds->num_tokens(), all.data());
  CHECK(all == stream);
  int64_t boundary = ds->shard(0).num_tokens;
  std::vector<int64_t> piece(10);
  ds->read(boundary - 5, 10, piece.data());
  CHECK(piece == std::vector<int64_t>(stream.begin() + boundary - 5, stream.begin() + boundary + 5));
  // Documents: spans tile the stream, each ends with EOS and has the synthetic length.
  int64_t expect_begin = 0;
  ds->for_each_doc([&](int64_t d, int64_t b, int64_t e) {
    CHECK(b == expect_begin);
    CHECK(e - b == static_cast<int64_t>(synth_doc(d, 40, 1000).size()));
    CHECK(stream[static_cast<size_t>(e - 1)] == 2);
    CHECK(ds->doc_span(d) == std::make_pair(b, e));
    expect_begin = e;
  });
  CHECK(expect_begin == ds->num_tokens());
  ds->verify();
  CHECK_THROWS_AS(ds->read(ds->num_tokens() - 2, 3, piece.data()), std::out_of_range);
  CHECK_FALSE(TokenDataset::has_split(dir.path.string(), "val"));
}

TEST_CASE("shards: a vocabulary beyond uint16 is stored as uint32 and reads back") {
  TempDir dir;
  ShardMeta m{"train", 70000, 2, "abc", "big.model", "[]"};
  ShardWriter w(dir.path.string(), m, 1000);
  w.add_document(std::vector<int>{69999, 65536, 65535, 3, 2});
  w.add_document(std::vector<int>{2});  // an empty document is just its EOS
  w.finish();
  auto ds = TokenDataset::open(dir.path.string(), "train");
  CHECK(ds->shard(0).token_type == TokenType::u32);
  std::vector<int64_t> t(6);
  ds->read(0, 6, t.data());
  CHECK(t == std::vector<int64_t>{69999, 65536, 65535, 3, 2, 2});
  CHECK(ds->doc_span(1) == std::make_pair<int64_t, int64_t>(5, 6));
}

TEST_CASE("shards: the writer refuses ids outside the vocabulary and documents without EOS") {
  TempDir dir;
  ShardMeta m{"train", 300, 2, "abc", "t.model", "[]"};
  ShardWriter w(dir.path.string(), m, 1000);
  CHECK(contains(error_of([&] { w.add_document(std::vector<int>{5, 300, 2}); }), "token id 300 is outside the vocabulary of 300"));
  CHECK(contains(error_of([&] { w.add_document(std::vector<int>{5, -1, 2}); }), "outside the vocabulary"));
  CHECK(contains(error_of([&] { w.add_document(std::vector<int>{5, 6}); }), "must end with the EOS id 2"));
  ShardMeta bad_eos{"train", 300, 300, "abc", "t.model", "[]"};
  CHECK_THROWS_AS(ShardWriter(dir.path.string(), bad_eos, 10), std::invalid_argument);
}

TEST_CASE("shards: corrupt, truncated, missing, unfinished and foreign shards are refused, naming the file") {
  TempDir dir;
  std::string d = dir.path.string();
  write_synth_split(d, "train", 60, 40, 300);
  auto ds = TokenDataset::open(d, "train");
  REQUIRE(ds->num_shards() >= 3);
  const size_t num_shards = ds->num_shards();
  ds.reset();  // closed before the files are damaged (HDF5 would keep serving its cached metadata)
  std::string s0 = dir / "train_00000.h5", s1 = dir / "train_00001.h5";
  std::string bytes0 = read_file(s0);

  SUBCASE("flipped bytes in token data fail the chunk checksum on read") {
    std::string bad = bytes0;
    size_t at = find_token_bytes(bad);
    bad[at + 3] ^= 0x5A;
    write_file(s0, bad);
    auto corrupt = TokenDataset::open(d, "train");  // metadata is intact
    std::vector<int64_t> buf(10);
    std::string msg = error_of([&] { corrupt->read(0, 10, buf.data()); });
    CHECK(contains(msg, s0));
    CHECK(contains(msg, "corrupt or truncated shard"));
    CHECK(contains(error_of([&] { corrupt->verify(); }), s0));
  }
  SUBCASE("a truncated file does not open") {
    write_file(s0, bytes0.substr(0, bytes0.size() / 2));
    std::string msg = error_of([&] { TokenDataset::open(d, "train"); });
    CHECK(contains(msg, s0 + ": not a readable HDF5 file"));
  }
  SUBCASE("garbage instead of HDF5") {
    write_file(s1, "definitely not hdf5");
    CHECK(contains(error_of([&] { TokenDataset::open(d, "train"); }), s1 + ": not a readable HDF5 file"));
  }
  SUBCASE("a missing shard in the middle or at the end") {
    fs::remove(s1);
    CHECK(contains(error_of([&] { TokenDataset::open(d, "train"); }), "shard train_00001.h5 is missing"));
    write_file(s1, read_file(s0));  // a shard copied under the wrong name
    CHECK(contains(error_of([&] { TokenDataset::open(d, "train"); }), "disagrees with its file name"));
  }
  SUBCASE("one shard too few") {
    fs::remove(dir / shard_file_name("train", static_cast<int64_t>(num_shards) - 1));
    CHECK(contains(error_of([&] { TokenDataset::open(d, "train"); }), "shards, but"));
  }
  SUBCASE("a shard from another tokenizer") {
    TempDir other;
    write_synth_split(other.path.string(), "train", 60, 40, 300, 1000, "0ther");
    fs::copy_file(other / "train_00001.h5", s1, fs::copy_options::overwrite_existing);
    std::string msg = error_of([&] { TokenDataset::open(d, "train"); });
    CHECK(contains(msg, s1 + ": tokenizer (sha256 0ther"));
  }
  SUBCASE("a shard whose writer never finished") {
    TempDir part;
    {
      ShardMeta m{"train", 1000, 2, "abc", "t.model", "[]"};
      ShardWriter w(part.path.string(), m, 1000);
      w.add_document(synth_doc(1, 40, 1000));
    }  // destroyed without finish(), as if the process died
    CHECK(contains(error_of([&] { TokenDataset::open(part.path.string(), "train"); }), "incomplete shard"));
  }
  SUBCASE("an HDF5 file that is not a token shard") {
    fs::remove(s0);
    { data_h5::Handle f = data_h5::create_file(s0); }
    CHECK(contains(error_of([&] { TokenDataset::open(d, "train"); }), s0 + ": not a ttt token shard"));
  }
  SUBCASE("no shards at all") {
    CHECK(contains(error_of([&] { TokenDataset::open(d, "val"); }), "no val shards"));
    CHECK(contains(error_of([&] { TokenDataset::open(dir / "nope", "train"); }), "data directory not found"));
  }
}

TEST_CASE("dataset: data made for another vocabulary or tokenizer is refused") {
  TempDir dir;
  write_synth_split(dir.path.string(), "train", 5, 10, 100, 1000, "aaaa");
  auto ds = TokenDataset::open(dir.path.string(), "train");
  ds->check_compatible(1000);
  ds->check_compatible(1000, "aaaa");
  std::string msg = error_of([&] { ds->check_compatible(32000); });
  CHECK(contains(msg, "vocabulary has 1000 tokens but the model config expects 32000"));
  CHECK(contains(msg, "train_00000.h5"));
  CHECK(contains(error_of([&] { ds->check_compatible(1000, "bbbb"); }), "tokenized with tokenizer sha256 aaaa"));
  ds->check_compatible(1024, "", /*allow_padded_vocab=*/true);  // a padded embedding is fine
  CHECK_THROWS(ds->check_compatible(999, "", true));            // a smaller one never
}

// --- data prepare ---------------------------------------------------------------------------------

namespace {

// A corpus over all three formats; returns the documents' texts in input order.
std::vector<std::string> write_corpus(const TempDir& dir) {
  std::vector<std::string> texts;
  fs::create_directories(dir.path / "corpus");
  for (int i = 0; i < 3; ++i) {
    texts.push_back(make_text(10 + i, 80 + 40 * i) + "\n  indented line\tand a tab\n");
    write_file(dir / ("corpus/a" + std::to_string(i) + ".txt"), texts.back());
  }
  std::string jsonl;
  for (int i = 0; i < 6; ++i) {
    texts.push_back(make_text(20 + i, 30 + 17 * i) + (i == 2 ? " café 日本 </s> <s> literal specials" : ""));
    jsonl += nlohmann::json{{"text", texts.back()}, {"id", i}}.dump() + "\n";
  }
  write_file(dir / "corpus/b.jsonl", jsonl);
  std::string zst;
  for (int i = 0; i < 5; ++i) {
    texts.push_back(make_text(40 + i, 60));
    zst += nlohmann::json{{"text", texts.back()}}.dump() + "\n";
  }
  write_file(dir / "corpus/c.jsonl.zst", zstd_compress(zst));
  return texts;
}

PrepareOptions base_options(const TempDir& dir, const std::string& tok, const std::string& out) {
  PrepareOptions o;
  o.inputs = {dir / "corpus"};  // a directory: a*.txt, b.jsonl, c.jsonl.zst in name order
  o.tokenizer = tok;
  o.out_dir = out;
  o.val_docs = 3;
  o.shard_tokens = 400;
  o.chunk_bytes = 600;  // many small tokenization tasks, so threads really interleave
  o.progress = false;
  return o;
}

}  // namespace

TEST_CASE("prepare: text -> shards -> decoded text is the original, with EOS after each document") {
  TempDir dir;
  std::string tok_path = train_tiny_tokenizer(dir);
  Tokenizer tok = Tokenizer::load(tok_path);
  auto texts = write_corpus(dir);
  PrepareSummary s = prepare_dataset(base_options(dir, tok_path, dir / "out"));
  const int64_t D = static_cast<int64_t>(texts.size());
  CHECK(s.docs == D);
  CHECK(s.val_docs == 3);
  CHECK(s.train_docs == D - 3);
  CHECK(fs::exists(dir / "out/tokenizer.model"));

  auto train = TokenDataset::open(dir / "out", "train");
  auto val = TokenDataset::open(dir / "out", "val");
  CHECK(train->num_shards() > 1);
  CHECK(train->num_docs() == s.train_docs);
  CHECK(train->num_tokens() == s.train_tokens);
  CHECK(val->num_tokens() == s.val_tokens);
  CHECK(train->tokenizer_sha256() == tok.sha256());
  CHECK(train->vocab_size() == 320);
  CHECK(train->shard(0).sources_json == nlohmann::json(expand_inputs({dir / "corpus"})).dump());
  train->check_compatible(tok.vocab_size(), tok.sha256());

  int64_t next_train = 0, next_val = 0, eos_count = 0, total_tokens = 0;
  for (int64_t i = 0; i < D; ++i) {
    CAPTURE(i);
    bool is_val = is_val_doc(i, D, 3);
    const TokenDataset& ds = is_val ? *val : *train;
    auto [b, e] = ds.doc_span(is_val ? next_val++ : next_train++);
    std::vector<int64_t> ids(static_cast<size_t>(e - b));
    ds.read(b, e - b, ids.data());
    CHECK(ids.back() == tok.eos_id());
    // EOS only at the end: the literal text "</s>" in a document is not the EOS token.
    CHECK(std::count(ids.begin(), ids.end(), tok.eos_id()) == 1);
    CHECK(tok.decode(ids.data(), ids.size() - 1) == texts[static_cast<size_t>(i)]);
    CHECK(static_cast<int64_t>(ids.size()) == static_cast<int64_t>(tok.encode(texts[static_cast<size_t>(i)]).size()) + 1);
    eos_count += 1;
    total_tokens += e - b;
  }
  CHECK(next_train == train->num_docs());
  CHECK(next_val == val->num_docs());
  CHECK(total_tokens == s.tokens());
  train->verify();
  val->verify();
}

TEST_CASE("prepare: output is byte-identical for 1, 2 and 3 threads and on a re-run") {
  TempDir dir;
  std::string tok = train_tiny_tokenizer(dir);
  write_corpus(dir);
  std::vector<std::string> outs;
  for (int threads : {1, 2, 3, 2}) {
    auto o = base_options(dir, tok, dir / ("out" + std::to_string(outs.size())));
    o.threads = threads;
    prepare_dataset(o);
    outs.push_back(o.out_dir);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(outs[0])) names.push_back(e.path().filename().string());
  CHECK(names.size() > 3);
  for (size_t k = 1; k < outs.size(); ++k)
    for (const auto& n : names) {
      CAPTURE(n);
      CHECK(read_file(outs[k] + "/" + n) == read_file(outs[0] + "/" + n));
    }
}

TEST_CASE("prepare: the validation split takes exactly V documents, spread evenly, deterministically") {
  CHECK(is_val_doc(3, 10, 3));
  CHECK(is_val_doc(6, 10, 3));
  CHECK(is_val_doc(9, 10, 3));
  for (auto [D, V] : std::vector<std::pair<int64_t, int64_t>>{{10, 0}, {10, 1}, {10, 9}, {371, 4}, {1000003, 500}}) {
    int64_t n = 0, last = -1, max_gap = 0;
    for (int64_t i = 0; i < D; ++i)
      if (is_val_doc(i, D, V)) {
        ++n;
        max_gap = std::max(max_gap, i - last);
        last = i;
      }
    CHECK(n == V);
    if (V > 0) CHECK(max_gap <= (D + V - 1) / V);  // no long stretch without a val document
  }
  TempDir dir;
  std::string tok = train_tiny_tokenizer(dir);
  auto texts = write_corpus(dir);
  auto o = base_options(dir, tok, dir / "f");
  o.val_docs = -1;
  o.val_fraction = 0.2;  // round(0.2 * 14) = 3
  CHECK(prepare_dataset(o).val_docs == 3);
  o.val_fraction = 0;
  o.out_dir = dir / "none";
  CHECK(prepare_dataset(o).val_docs == 0);
  CHECK_FALSE(TokenDataset::has_split(dir / "none", "val"));
  o.val_fraction = -1;  // default: 0.05%, at least one document
  o.out_dir = dir / "default";
  CHECK(prepare_dataset(o).val_docs == 1);
  o.val_docs = static_cast<int64_t>(texts.size());
  o.out_dir = dir / "all";
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "leaving none for training"));
}

TEST_CASE("prepare: an existing output is refused, replaced only with overwrite, never damaged by a failed run") {
  TempDir dir;
  std::string tok = train_tiny_tokenizer(dir);
  write_corpus(dir);
  auto o = base_options(dir, tok, dir / "out");
  prepare_dataset(o);
  std::string before = read_file(dir / "out/train_00000.h5");

  CHECK(contains(error_of([&] { prepare_dataset(o); }), "already exists and is not empty; pass --overwrite"));
  // A failing run with --overwrite (bad input found in the first pass) leaves the old data alone.
  write_file(dir / "corpus/zz_bad.jsonl", "{\"text\": \"ok\"}\n{broken\n");
  o.overwrite = true;
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "zz_bad.jsonl:2: malformed JSON"));
  CHECK(read_file(dir / "out/train_00000.h5") == before);
  // With --skip-bad it goes through and replaces the data.
  o.skip_bad = true;
  PrepareSummary s = prepare_dataset(o);
  CHECK(s.bad_skipped == 1);
  CHECK(s.docs == 15);
  for (const auto& e : fs::directory_iterator(dir.path))  // no temporary directory left behind
    CHECK_FALSE(contains(e.path().filename().string(), ".tmp-"));
  // A directory holding anything else is never replaced.
  write_file(dir / "out/notes.txt", "mine");
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "refusing to overwrite"));
  CHECK(read_file(dir / "out/notes.txt") == "mine");
  // An existing empty directory is fine.
  fs::create_directories(dir.path / "empty_out");
  o.out_dir = dir / "empty_out";
  o.overwrite = false;
  prepare_dataset(o);
  CHECK(TokenDataset::has_split(dir / "empty_out", "train"));
}

TEST_CASE("prepare: missing, empty and bad inputs stop before anything is written") {
  TempDir dir;
  std::string tok = train_tiny_tokenizer(dir);
  auto o = base_options(dir, tok, dir / "out");
  o.inputs = {dir / "missing.jsonl"};
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "input not found"));
  write_file(dir / "empty.jsonl", "");
  o.inputs = {dir / "empty.jsonl"};
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "empty.jsonl: contains no documents"));
  o.skip_bad = true;
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "the inputs contain no documents"));
  o.skip_bad = false;
  write_file(dir / "bad.txt", "bad \xFE byte");
  o.inputs = {dir / "bad.txt"};
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "bad.txt:1: invalid UTF-8"));
  o.inputs = {dir / "empty.jsonl"};
  o.tokenizer = dir / "nope.model";
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "nope.model"));
  CHECK_FALSE(fs::exists(dir / "out"));
}

TEST_CASE("prepare: leftovers of a killed prepare are cleaned up by the next one") {
  TempDir dir;
  std::string tok = train_tiny_tokenizer(dir);
  write_corpus(dir);
  // PIDs far above any pid_max: processes that cannot be running.
  fs::create_directories(dir.path / ".out.tmp-999999999");
  write_file(dir / ".out.tmp-999999999/train_00000.h5", "half written");
  fs::create_directories(dir.path / ".other.tmp-999999998");  // another output's: not touched
  // A killed commit: the previous output moved aside, the new one not yet in place.
  auto o = base_options(dir, tok, dir / "out");
  prepare_dataset(o);
  const std::string before = read_file(dir / "out/train_00000.h5");
  fs::rename(dir.path / "out", dir.path / ".out.old-999999997");
  o.overwrite = true;
  // The old output is put back first (so --overwrite is what replaces it), the unfinished one removed.
  prepare_dataset(o);
  CHECK(!fs::exists(dir.path / ".out.tmp-999999999"));
  CHECK(!fs::exists(dir.path / ".out.old-999999997"));
  CHECK(fs::exists(dir.path / ".other.tmp-999999998"));
  CHECK(read_file(dir / "out/train_00000.h5") == before);  // same input: same bytes
  // Without --overwrite the restored output is refused like any existing one.
  fs::rename(dir.path / "out", dir.path / ".out.old-999999997");
  o.overwrite = false;
  CHECK(contains(error_of([&] { prepare_dataset(o); }), "already exists and is not empty"));
  CHECK(read_file(dir / "out/train_00000.h5") == before);
}
