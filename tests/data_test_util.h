// tests/data_test_util.h — helpers shared by the tests of data/: a temporary directory, small
// generated corpora, a tiny tokenizer trained on the spot, and synthetic shards.
#pragma once

#include <doctest/doctest.h>
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/shard_writer.h"
#include "data/tokenizer.h"

namespace ttt::testing {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it at the end of the scope.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ttt_data_test_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string zstd_compress(const std::string& s, int level = 3) {
  std::string out(ZSTD_compressBound(s.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), s.data(), s.size(), level);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

// Deterministic English-like text: `words` words from a small vocabulary (xorshift-driven), with
// sentence breaks and the occasional newline, so BPE has something to learn.
inline std::string make_text(uint64_t seed, int words) {
  static const char* kWords[] = {"the", "whale", "sea", "ship", "captain", "and", "of", "to", "a", "in",
                                 "harpoon", "sailor", "deep", "water", "wind", "storm", "white", "boat",
                                 "was", "is", "on", "with", "his", "they", "old", "man", "ocean", "wave"};
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  std::string s;
  for (int i = 0; i < words; ++i) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    if (i > 0) s += (x % 23 == 0) ? ".\n" : (x % 11 == 0 ? ", " : " ");
    s += kWords[(x >> 8) % (sizeof kWords / sizeof *kWords)];
  }
  return s + ".";
}

// Trains a ~320-piece BPE tokenizer on a small generated corpus (well under a second).
inline std::string train_tiny_tokenizer(const TempDir& dir, int64_t vocab = 320) {
  std::string corpus = dir / "tok_corpus.txt";
  std::string text;
  for (int d = 0; d < 40; ++d) text += make_text(1000 + d, 200) + "\n";
  write_file(corpus, text);
  TokenizerTrainOptions o;
  o.inputs = {corpus};
  o.vocab_size = vocab;
  o.out = dir / "tiny.model";
  o.threads = 1;
  train_tokenizer(o);
  fs::remove(corpus);
  return o.out;
}

// Synthetic document d of a shard set: length 1 + (d * 37) % max_len tokens, token k of it is
// (d * 131 + k * 7) % (vocab - 3) + 3, then EOS (id 2). Known values make window checks exact.
inline std::vector<int> synth_doc(int64_t d, int64_t max_len, int64_t vocab) {
  int64_t len = 1 + (d * 37) % max_len;
  std::vector<int> t;
  for (int64_t k = 0; k < len; ++k) t.push_back(static_cast<int>((d * 131 + k * 7) % (vocab - 3) + 3));
  t.push_back(2);
  return t;
}

// Writes `docs` synthetic documents as split `split` into dir; returns the concatenated stream.
inline std::vector<int64_t> write_synth_split(const std::string& dir, const std::string& split, int64_t docs,
                                              int64_t max_len, int64_t shard_tokens, int64_t vocab = 1000,
                                              const std::string& sha = "feedbeef") {
  ShardMeta m;
  m.split = split;
  m.vocab_size = vocab;
  m.eos_id = 2;
  m.tokenizer_sha256 = sha;
  m.tokenizer_file = "synthetic.model";
  m.sources_json = "[\"synthetic\"]";
  ShardWriter w(dir, m, shard_tokens);
  std::vector<int64_t> stream;
  for (int64_t d = 0; d < docs; ++d) {
    auto t = synth_doc(d, max_len, vocab);
    w.add_document(t);
    stream.insert(stream.end(), t.begin(), t.end());
  }
  w.finish();
  return stream;
}

}  // namespace ttt::testing
