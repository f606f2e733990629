// tests/test_trainer_cli.cpp — the `ttt` binary refuses bad input with one clear message and a
// non-zero exit: missing or bad paths, bad numbers, unknown keys and subcommands, broken
// checkpoints. (Runs the binary built next to the tests.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "trainer_test_util.h"
#include "tests/trainer_test_util.h"

using ttt::testing::run_ttt;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml";

void expect_error(const std::string& args, const std::string& message) {
  auto r = run_ttt(args);
  CAPTURE(args);
  CAPTURE(r.output);
  CHECK(r.code != 0);
  CHECK(r.output.find(message) != std::string::npos);
}

}  // namespace

TEST_CASE("help at every level") {
  for (const char* sub : {"", "train", "eval", "generate", "bench", "info", "config", "data", "tokenizer"}) {
    auto r = run_ttt(std::string(sub) + " --help");
    CAPTURE(sub);
    CHECK(r.code == 0);
    CHECK(r.output.find("Usage:") != std::string::npos);
  }
}

TEST_CASE("usage errors") {
  expect_error("", "A subcommand is required");
  expect_error("frobnicate", "unknown command 'frobnicate'");
  expect_error("train", "--config is required");
  expect_error("train --config /nonexistent/x.yaml", "File does not exist: /nonexistent/x.yaml");
  expect_error("eval --checkpoint /nonexistent/step_1.h5", "File does not exist");
  expect_error("eval --checkpoint " + kTiny + " --context 128,abc", "--context");
  expect_error("generate --checkpoint " + kTiny + " --prompt hi --top-k many", "--top-k");
  expect_error("generate --checkpoint " + kTiny + " --prompt hi --top-p 2", "--top-p");
  expect_error("generate --checkpoint " + kTiny, "give exactly one of --prompt TEXT and --prompts FILE");
  expect_error("bench --config " + kTiny + " --batch 0", "--batch");
  expect_error("bench --config " + kTiny + " --contexts 64,128 --phases train,decode", "--contexts measures the prefill");
  expect_error("bench --config " + kTiny + " --contexts 64,x", "--contexts");
}

TEST_CASE("config errors name the key") {
  expect_error("train --config " + kTiny + " --set train.lrr=1", "unknown key 'train.lrr' (did you mean 'train.lr'?)");
  expect_error("train --config " + kTiny + " --set model.d_model=wide",
               "key 'model.d_model': expected int, got 'wide'");
  expect_error("train --config " + kTiny, "missing required key 'data.dir'");
  expect_error("train --config " + kTiny + " --data /nonexistent/data", "data directory '/nonexistent/data' does not exist");
  expect_error("config show --config " + kTiny + " --set train.batch_tokens=1.5", "expected int, got '1.5'");
  expect_error("info --config " + kTiny + " --set model.n_heads=5", "model.");
}

TEST_CASE("a file that is not a checkpoint is refused by eval and generate") {
  const std::string bad = ttt::testing::tmp_path("cli_bad") + ".h5";
  std::ofstream(bad) << "not a checkpoint";
  expect_error("eval --checkpoint " + bad + " --data /tmp", "cannot use checkpoint");
  expect_error("generate --checkpoint " + bad + " --prompt hi", "cannot be opened (truncated or not an HDF5 file)");
}

TEST_CASE("info prints the parameter count and plan of a config") {
  auto r = run_ttt("info --config " + kTiny + " --set train.batch_tokens=2048 --set train.micro_batch=16");
  CAPTURE(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("parameters: ") != std::string::npos);
  CHECK(r.output.find("1 accumulation") != std::string::npos);
  auto d = run_ttt("config defaults");
  CHECK(d.code == 0);
  CHECK(d.output.find("batch_tokens: 524288") != std::string::npos);
}
