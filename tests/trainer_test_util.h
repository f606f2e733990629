// tests/trainer_test_util.h — running the built `ttt` binary from tests (CLI and end-to-end).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
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
  int code = -1;       // exit status (-1 if it did not exit normally)
  std::string output;  // stdout and stderr together
};

// Runs `ttt <args>` through the shell (2>&1) and captures its output and exit status.
inline CommandResult run_ttt(const std::string& args) {
  const std::string cmd = std::string(TTT_BINARY_DIR) + "/bin/ttt " + args + " 2>&1";
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

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

}  // namespace ttt::testing
