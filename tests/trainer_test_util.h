// tests/trainer_test_util.h — running the built `ttt` binary (or any command) from tests (CLI,
// end-to-end, MPI).
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include <unistd.h>

namespace ttt::testing {

// A scratch path under /tmp unique to this process, so concurrent test runs (two build trees,
// ctest -j) never share files: /tmp/ttt_test_<name>_<pid>.
inline std::string tmp_path(const std::string& name) {
  return "/tmp/ttt_test_" + name + "_" + std::to_string(static_cast<long>(::getpid()));
}

struct CommandResult {
  int code = -1;        // exit status; 128 + the signal when killed by one; -1 if it could not start
  std::string output;   // stdout and stderr together
  double seconds = 0;   // wall-clock time
};

// Runs `cmd` through the shell (2>&1) and captures its output, exit status and wall time.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// Runs the built `ttt <args>`.
inline CommandResult run_ttt(const std::string& args) { return run_command(std::string(TTT_BINARY_DIR) + "/bin/ttt " + args); }

// Writes `docs` JSONL documents ({"text": ...}) of 4 to 9 sentences each from a small grammar:
// learnable structure, fixed by `seed`, for tests that train the model end to end.
inline void write_grammar_corpus(const std::string& path, unsigned seed, int docs) {
  const char* subj[] = {"the cat", "a dog", "the old man", "my sister", "the bird", "a child"};
  const char* verb[] = {"sees", "likes", "follows", "finds", "hears", "draws"};
  const char* obj[] = {"the sea", "a red ball", "the white whale", "the ship", "a small house", "the moon"};
  std::mt19937 rng(seed);
  std::ofstream out(path);
  for (int d = 0; d < docs; ++d) {
    std::string text;
    const int n = 4 + static_cast<int>(rng() % 6);
    for (int s = 0; s < n; ++s) text += std::string(subj[rng() % 6]) + " " + verb[rng() % 6] + " " + obj[rng() % 6] + ". ";
    out << nlohmann::json{{"text", text}}.dump() << "\n";
  }
}

// The grammar corpus through the built `ttt`: <dir>/corpus.jsonl (write_grammar_corpus), a
// 320-piece tokenizer <dir>/tok.model, shards in <dir>/data with `val_docs` validation documents.
// Returns the failing command's result, or the last one (code 0).
inline CommandResult prepare_grammar_data(const std::string& dir, unsigned seed, int docs, int val_docs) {
  write_grammar_corpus(dir + "/corpus.jsonl", seed, docs);
  CommandResult r = run_ttt("tokenizer train --input " + dir + "/corpus.jsonl --vocab-size 320 --out " + dir + "/tok.model");
  if (r.code != 0) return r;
  return run_ttt("data prepare --input " + dir + "/corpus.jsonl --tokenizer " + dir + "/tok.model --out " + dir +
                 "/data --val-docs " + std::to_string(val_docs) + " --quiet");
}

}  // namespace ttt::testing
