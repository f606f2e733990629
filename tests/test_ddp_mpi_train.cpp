// tests/test_ddp_mpi_train.cpp — `mpirun -np 2 ttt train` on the CPU (MPI backend), end to end
// through the binary, on shards made here by `ttt tokenizer train` and `ttt data prepare`:
//   - 2 ranks (gradient accumulation 1) log the same losses and grad norms as 1 process
//     (accumulation 2) at the same global batch: the sampler hands rank r rows [r*B, (r+1)*B) of
//     the global batch, so both runs see the same rows; only float32 summation order differs
//     (tolerance 1e-5 relative, see test_ddp_mpi.cpp);
//   - a checkpoint written by 1 process resumes on 2 ranks and continues the 1-process curve;
//   - only rank 0 writes files; a global batch that does not divide by the world size is an error
//     that stops every rank.
// Skipped without mpirun unless TTT_REQUIRE_MPI=1 (tests/mpi_test_util.h). A few seconds.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "mpi_test_util.h"
#include "tests/trainer_test_util.h"

using namespace ttt::testing;
namespace fs = std::filesystem;

namespace {

// One directory per build tree: other checkouts may run this test at the same time.
const std::string kDir =
    (fs::temp_directory_path() / ("ttt_test_ddp_mpi_train_" + std::to_string(std::hash<std::string>{}(TTT_BINARY_DIR))))
        .string();
const std::string kTtt = std::string(TTT_BINARY_DIR) + "/bin/ttt ";

// Global batch 256 tokens = 4 sequences x 32 tokens x accumulation 2 on one rank, 1 on two.
std::string train_args(const std::string& run_dir, int steps = 6) {
  return "train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml --data " + kDir +
         "/data --run-dir " + run_dir +
         " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2"
         " --set model.d_ff=64 --set model.max_seq_len=32 --set train.lr=1e-2"
         " --set train.batch_tokens=256 --set train.micro_batch=4 --set train.steps=" + std::to_string(steps) +
         " --set train.warmup_steps=2 --set train.log_every=1 --set checkpoint.keep_last=0"
         " --set dist.timeout_s=60 --set dist.bucket_mb=0.01";  // ~10 kB buckets: several per step
}

struct Curve {
  std::vector<double> loss, grad_norm;
};

Curve read_curve(const std::string& run_dir) {
  Curve c;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto r = nlohmann::json::parse(line);
    if (!r.contains("loss")) continue;
    c.loss.push_back(r["loss"].get<double>());
    c.grad_norm.push_back(r["grad_norm"].get<double>());
  }
  return c;
}

// b's steps equal a's steps [offset, offset + |b|) to 1e-5 relative.
void check_same_curve(const Curve& a, const Curve& b, size_t offset = 0) {
  REQUIRE(b.loss.size() + offset <= a.loss.size());
  REQUIRE(!b.loss.empty());
  for (size_t i = 0; i < b.loss.size(); ++i) {
    INFO("step " << offset + i + 1);
    CHECK(std::abs(b.loss[i] - a.loss[offset + i]) <= 1e-5 * std::abs(a.loss[offset + i]));
    CHECK(std::abs(b.grad_norm[i] - a.grad_norm[offset + i]) <= 1e-5 * std::abs(a.grad_norm[offset + i]));
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("mpirun -np 2 ttt train: same curve as one process; resume a 1-process checkpoint on 2 ranks") {
  if (!mpi_ready()) return;
  fs::remove_all(kDir);
  fs::create_directories(kDir);
  CommandResult prep = ttt::testing::prepare_grammar_data(kDir, /*seed=*/11, /*docs=*/120, /*val_docs=*/8);
  REQUIRE_MESSAGE(prep.code == 0, prep.output);

  // --- one process: the reference ------------------------------------------------------------------
  CommandResult one = run_command(kTtt + train_args(kDir + "/one"));
  REQUIRE_MESSAGE(one.code == 0, one.output);
  Curve ref = read_curve(kDir + "/one");
  REQUIRE(ref.loss.size() == 6);
  CHECK(ref.loss.back() < ref.loss.front());  // it learns

  // --- two ranks ----------------------------------------------------------------------------------------
  CommandResult two = run_command(mpirun(2) + kTtt + train_args(kDir + "/two"));
  INFO(two.output);
  REQUIRE(two.code == 0);
  check_same_curve(ref, read_curve(kDir + "/two"));
  const std::string log = read_text(kDir + "/two/train.log");
  CHECK(log.find("1 accumulation x 2 ranks") != std::string::npos);
  CHECK(log.find("data parallel: 2 rank(s), backend mpi") != std::string::npos);
  // Rank 0 alone writes: one "finished" line, one metrics row per step.
  size_t finished = 0;
  for (size_t p = two.output.find("finished 6 steps"); p != std::string::npos; p = two.output.find("finished 6 steps", p + 1))
    ++finished;
  CHECK(finished == 1);
  CHECK(fs::exists(kDir + "/two/checkpoints/step_6.h5"));

  // --- 3 steps on one process, the rest on two ranks ----------------------------------------------------
  CommandResult part = run_command(kTtt + train_args(kDir + "/switch") + " --stop-at-step 3");
  REQUIRE_MESSAGE(part.code == 0, part.output);
  CommandResult rest = run_command(mpirun(2) + kTtt + train_args(kDir + "/switch") + " --resume");
  INFO(rest.output);
  REQUIRE(rest.code == 0);
  Curve switched = read_curve(kDir + "/switch");
  REQUIRE(switched.loss.size() == 6);  // metrics.jsonl continues across the resume
  Curve after;
  after.loss.assign(switched.loss.begin() + 3, switched.loss.end());
  after.grad_norm.assign(switched.grad_norm.begin() + 3, switched.grad_norm.end());
  check_same_curve(ref, after, 3);
  CHECK(read_text(kDir + "/switch/train.log").find("resumed from") != std::string::npos);
}

TEST_CASE("mpirun -np 3 ttt train: a global batch that does not split over 3 ranks stops every rank") {
  if (!mpi_ready()) return;
  if (!fs::exists(kDir + "/data")) return;  // made by the test above
  CommandResult r = run_command(mpirun(3) + kTtt + train_args(kDir + "/three"));
  INFO(r.output);
  CHECK(r.code != 0);
  CHECK(r.code != 124);  // stopped, not timed out
  CHECK(r.output.find("train.batch_tokens (256) must be a multiple") != std::string::npos);
  CHECK(r.output.find("rank 0 of 3") != std::string::npos);
}
