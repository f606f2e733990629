// tests/test_data_cli.cpp — the `ttt tokenizer train`, `ttt data prepare` and `ttt data info`
// commands as a user runs them: arguments parsed by CLI11, output printed, and each bad input
// stopping with one message that names the file (main() prints it and exits non-zero).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

#include "data/dataset.h"
#include "data_test_util.h"
#include "trainer/commands.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

struct CliResult {
  std::string error;  // the exception message, empty when the command succeeded
  std::string out;    // what it printed on stdout
};

// Runs `ttt <args>` in-process, capturing stdout through a temporary file.
CliResult run_cli(const TempDir& dir, std::vector<std::string> args) {
  CLI::App app{"ttt"};
  app.require_subcommand(1);
  add_data_commands(app);
  std::vector<const char*> argv = {"ttt"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::string capture = dir / "stdout.txt";
  std::fflush(stdout);
  int saved = ::dup(STDOUT_FILENO);
  std::FILE* f = std::fopen(capture.c_str(), "w");
  ::dup2(::fileno(f), STDOUT_FILENO);
  CliResult r;
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    r.error = std::string("usage: ") + e.what();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  std::fflush(stdout);
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  std::fclose(f);
  r.out = read_file(capture);
  return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A tokenizer trained through the CLI, and a small jsonl corpus.
struct Setup {
  TempDir dir;
  std::string tok, corpus;
  Setup() {
    std::string escaped;  // make_text's newlines become \n escapes inside the JSON strings
    for (int d = 0; d < 30; ++d) {
      std::string t = make_text(300 + d, 120);
      std::string e;
      for (char c : t) e += c == '\n' ? std::string("\\n") : std::string(1, c);
      escaped += "{\"text\": \"" + e + "\"}\n";
    }
    corpus = dir / "corpus.jsonl";
    write_file(corpus, escaped);
    tok = dir / "tok.model";
    auto r = run_cli(dir, {"tokenizer", "train", "--input", corpus, "--vocab-size", "300", "--out", tok, "--threads", "1"});
    REQUIRE(r.error == "");
    CHECK(contains(r.out, "wrote " + tok + ": 300 pieces"));
  }
  CliResult prepare(std::vector<std::string> extra) {
    std::vector<std::string> args = {"data", "prepare", "--tokenizer", tok, "--quiet", "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(dir, args);
  }
};

}  // namespace

TEST_CASE("cli: tokenizer train, data prepare and data info work together") {
  Setup s;
  auto r = s.prepare({"--input", s.corpus, "--out", s.dir / "data", "--val-docs", "2"});
  REQUIRE(r.error == "");
  CHECK(contains(r.out, "train: 28 documents"));
  CHECK(contains(r.out, "val:   2 documents"));
  CHECK(contains(r.out, "tokens/s"));
  auto train = TokenDataset::open(s.dir / "data", "train");

  r = run_cli(s.dir, {"data", "info", s.dir / "data", "--top", "3", "--verify"});
  REQUIRE(r.error == "");
  CHECK(contains(r.out, "vocab 300, EOS id 2 (</s>)"));
  CHECK(contains(r.out, "(checksum matches)"));
  CHECK(contains(r.out, "train  1 shard  28 documents  " + std::to_string(train->num_tokens()) + " tokens"));
  CHECK(contains(r.out, "token dtype uint16"));
  CHECK(contains(r.out, "longest documents"));
  CHECK(contains(r.out, "verified"));
  CHECK(contains(r.out, "val    1 shard  2 documents"));
}

TEST_CASE("cli: every kind of bad input gives one message naming the file") {
  Setup s;
  const std::string out = s.dir / "out";

  auto r = s.prepare({"--input", s.dir / "absent.jsonl", "--out", out});
  CHECK(contains(r.error, "input not found: " + s.dir / "absent.jsonl"));

  write_file(s.dir / "empty.txt", "");
  r = s.prepare({"--input", s.dir / "empty.txt", "--out", out});
  CHECK(contains(r.error, s.dir / "empty.txt" + ": contains no documents"));

  write_file(s.dir / "broken.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"fine\"}\n{\"text\": oops}\n");
  r = s.prepare({"--input", s.corpus, s.dir / "broken.jsonl", "--out", out});
  CHECK(contains(r.error, s.dir / "broken.jsonl" + ":3: malformed JSON"));
  r = s.prepare({"--input", s.corpus, s.dir / "broken.jsonl", "--out", out, "--skip-bad"});
  CHECK(r.error == "");
  CHECK(contains(r.out, "skipped: 1 bad records"));

  write_file(s.dir / "latin1.txt", "caf\xE9 au lait");
  r = s.prepare({"--input", s.dir / "latin1.txt", "--out", s.dir / "out2"});
  CHECK(contains(r.error, s.dir / "latin1.txt" + ":1: invalid UTF-8 at byte offset 3"));

  r = s.prepare({"--input", s.corpus, "--out", out});
  CHECK(contains(r.error, "already exists and is not empty; pass --overwrite"));
  r = s.prepare({"--input", s.corpus, "--out", out, "--overwrite"});
  CHECK(r.error == "");

  r = s.prepare({"--input", s.corpus, "--out", out, "--val-docs", "1", "--val-fraction", "0.1"});
  CHECK(contains(r.error, "excludes"));
  r = s.prepare({"--input", s.corpus});
  CHECK(contains(r.error, "--out is required"));
  r = run_cli(s.dir, {"data", "prepare", "--input", s.corpus, "--out", s.dir / "o3", "--tokenizer", s.corpus});
  CHECK(contains(r.error, s.corpus + " is not a sentencepiece model"));

  // Damaged shards: info names the file.
  std::string shard = out + "/train_00000.h5";
  std::string bytes = read_file(shard);
  write_file(shard, bytes.substr(0, bytes.size() - 1000));
  r = run_cli(s.dir, {"data", "info", out});
  CHECK(contains(r.error, shard + ": not a readable HDF5 file"));
  r = run_cli(s.dir, {"data", "info", s.dir / "nowhere"});
  CHECK(contains(r.error, "data directory not found"));

  r = run_cli(s.dir, {"tokenizer", "train", "--input", s.corpus, "--vocab-size", "100", "--out", s.dir / "t.model"});
  CHECK(contains(r.error, "--vocab-size"));
}
