// tests/test_ddp_mpi_train.cpp — `mpirun -np 2 ttt train` on the CPU (MPI backend), end to end
// through the binary, on shards made here by `ttt tokenizer train` and `ttt data prepare`:
//   - 2 ranks (gradient accumulation 1) log the same losses and grad norms as 1 process
//     (accumulation 2) at the same global batch: the sampler hands rank r rows [r*B, (r+1)*B) of
//     the global batch, so both runs see the same rows; only float32 summation order differs
//     (tolerance 1e-5 relative, see test_ddp_mpi.cpp);
//   - a checkpoint written by 1 process resumes on 2 ranks and continues the 1-process curve;
//   - only rank 0 writes files; a global batch that does not divide by the world size is an error
//     that stops every rank;
//   - ZeRO-1 (dist.zero 1): the same curve, weights and AdamW moments as one process, 1/2 of the
//     moments per rank, and checkpoints that move between 2 ZeRO-1 ranks and 1 process both ways;
//   - launchers: torchrun-style RANK/WORLD_SIZE/LOCAL_RANK and Slurm's SLURM_PROCID/... variables
//     (set per rank under mpirun, which still carries MPI: CPU ranks need it), and the clear error
//     of CPU ranks started by hand without an MPI launcher.
// Skipped without mpirun unless TTT_REQUIRE_MPI=1 (tests/mpi_test_util.h). A few seconds.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "layers/language_model.h"
#include "mpi_test_util.h"
#include "tests/trainer_test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

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

// b = steps [offset, offset + |b|) of a's curve, from a run directory whose first `offset` steps
// were logged by an earlier session.
Curve tail_of(const Curve& c, size_t offset) {
  Curve t;
  t.loss.assign(c.loss.begin() + static_cast<std::ptrdiff_t>(offset), c.loss.end());
  t.grad_norm.assign(c.grad_norm.begin() + static_cast<std::ptrdiff_t>(offset), c.grad_norm.end());
  return t;
}

// Every tensor of a checkpoint (parameters, m, v) by name, the model rebuilt from its stored config.
std::map<std::string, ttt::Tensor> tensors_of(const std::string& path) {
  const ttt::RunConfig cfg = ttt::load_config_string(ttt::read_checkpoint_meta(path).config_yaml, path);
  ttt::LanguageModel model(cfg.model);
  ttt::OptimizerState state;
  for (auto& [name, p] : model.named_parameters())
    state.moments.push_back({name, ttt::zeros(p.shape()), ttt::zeros(p.shape())});
  ttt::load_checkpoint(path, model.named_parameters(), &state);
  std::map<std::string, ttt::Tensor> out;
  for (auto& [name, p] : model.named_parameters()) out["p:" + name] = p;
  for (auto& m : state.moments) {
    out["m:" + m.name] = m.m;
    out["v:" + m.name] = m.v;
  }
  return out;
}

// Every tensor of checkpoint b equals a's to 1e-5 of the tensor's largest value (the float
// rounding of test_ddp_mpi.cpp, carried through 6 steps).
void check_same_checkpoint(const std::string& a, const std::string& b) {
  auto ta = tensors_of(a), tb = tensors_of(b);
  REQUIRE(ta.size() == tb.size());
  for (auto& [name, t] : ta) {
    std::vector<float> x = t.tolist<float>(), y = tb.at(name).tolist<float>();
    REQUIRE(x.size() == y.size());
    float scale = 0, worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      scale = std::max(scale, std::abs(x[i]));
      worst = std::max(worst, std::abs(x[i] - y[i]));
    }
    CHECK_MESSAGE(worst <= 1e-5f * scale, name << " differs by " << worst << " (largest value " << scale << ")");
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
  // Each rank names itself; which ranks print before mpirun stops the others is a race (a CI run saw
  // ranks 1 and 2 only), so any one will do.
  CHECK(r.output.find(" of 3: train.batch_tokens (256)") != std::string::npos);
}

TEST_CASE("mpirun -np 2 ttt train with dist.zero 1: same curve, weights and moments; checkpoints move 2 ranks <-> 1") {
  if (!mpi_ready()) return;
  REQUIRE_MESSAGE(fs::exists(kDir + "/one/checkpoints/step_6.h5"), "made by the first test case");
  const Curve ref = read_curve(kDir + "/one");
  const std::string zero = " --set dist.zero=1";

  // --- 6 steps on 2 ZeRO-1 ranks ------------------------------------------------------------------------
  CommandResult z = run_command(mpirun(2) + kTtt + train_args(kDir + "/zero") + zero);
  INFO(z.output);
  REQUIRE(z.code == 0);
  check_same_curve(ref, read_curve(kDir + "/zero"));
  check_same_checkpoint(kDir + "/one/checkpoints/step_6.h5", kDir + "/zero/checkpoints/step_6.h5");
  const std::string log = read_text(kDir + "/zero/train.log");
  CHECK(log.find("(reduce-scatter, ZeRO-1)") != std::string::npos);
  // Each rank holds the moments of half the 20576 parameters (+ < 2 padding elements per bucket).
  const std::string key = "ZeRO-1: AdamW moments per rank (bytes): ";
  const size_t at = log.find(key);
  REQUIRE(at != std::string::npos);
  std::istringstream in(log.substr(at + key.size()));
  int64_t r0 = 0, r1 = 0;
  std::string unsharded;
  in >> r0 >> r1 >> unsharded >> unsharded;
  const int64_t full = 20576 * 8;
  CHECK(unsharded == std::to_string(full) + ")");
  CHECK(r0 + r1 >= full);
  CHECK(r0 <= full / 2 + 6 * 8);  // 6 buckets
  CHECK(r1 <= full / 2 + 6 * 8);

  // --- 3 steps on 2 ZeRO-1 ranks, the rest on one process (N = 2 -> M = 1, zero 1 -> 0) ------------------
  CommandResult a = run_command(mpirun(2) + kTtt + train_args(kDir + "/z2to1") + zero + " --stop-at-step 3");
  INFO(a.output);
  REQUIRE(a.code == 0);
  CommandResult a2 = run_command(kTtt + train_args(kDir + "/z2to1") + " --resume");
  INFO(a2.output);
  REQUIRE(a2.code == 0);
  Curve c = read_curve(kDir + "/z2to1");
  REQUIRE(c.loss.size() == 6);
  check_same_curve(ref, tail_of(c, 3), 3);

  // --- 3 steps on one process, the rest on 2 ZeRO-1 ranks (M = 1 -> N = 2, zero 0 -> 1) ------------------
  CommandResult b = run_command(kTtt + train_args(kDir + "/z1to2") + " --stop-at-step 3");
  INFO(b.output);
  REQUIRE(b.code == 0);
  CommandResult b2 = run_command(mpirun(2) + kTtt + train_args(kDir + "/z1to2") + zero + " --resume");
  INFO(b2.output);
  REQUIRE(b2.code == 0);
  Curve d = read_curve(kDir + "/z1to2");
  REQUIRE(d.loss.size() == 6);
  check_same_curve(ref, tail_of(d, 3), 3);
  check_same_checkpoint(kDir + "/one/checkpoints/step_6.h5", kDir + "/z1to2/checkpoints/step_6.h5");
}

// CPU ranks communicate through MPI, so these launches run under mpirun, each rank's environment
// rewritten to what the other launcher would set: the trainer must take its rank from those
// variables (the log names the launcher) and train the same curve.
TEST_CASE("mpirun -np 2 ttt train: torchrun-style and Slurm environments; CPU ranks by hand say they need MPI") {
  if (!mpi_ready()) return;
  REQUIRE_MESSAGE(fs::exists(kDir + "/one/metrics.jsonl"), "made by the first test case");
  const Curve ref = read_curve(kDir + "/one");
  const std::string as_env =
      "sh -c 'export RANK=$OMPI_COMM_WORLD_RANK WORLD_SIZE=$OMPI_COMM_WORLD_SIZE "
      "LOCAL_RANK=$OMPI_COMM_WORLD_LOCAL_RANK LOCAL_WORLD_SIZE=$OMPI_COMM_WORLD_LOCAL_SIZE; exec \"$0\" \"$@\"' ";
  CommandResult env = run_command(mpirun(2) + as_env + kTtt + train_args(kDir + "/env") + " --set dist.zero=1");
  INFO(env.output);
  REQUIRE(env.code == 0);
  CHECK(read_text(kDir + "/env/train.log").find("data parallel: 2 rank(s), backend mpi, launcher env") !=
        std::string::npos);
  check_same_curve(ref, read_curve(kDir + "/env"));

  // As `srun --mpi=pmix` starts tasks: Slurm's variables, MPI through PMIx, no OMPI_COMM_WORLD_*.
  const std::string as_srun =
      "sh -c 'export SLURM_PROCID=$OMPI_COMM_WORLD_RANK SLURM_STEP_NUM_TASKS=$OMPI_COMM_WORLD_SIZE "
      "SLURM_LOCALID=$OMPI_COMM_WORLD_LOCAL_RANK; unset OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE "
      "OMPI_COMM_WORLD_LOCAL_RANK OMPI_COMM_WORLD_LOCAL_SIZE; exec \"$0\" \"$@\"' ";
  CommandResult srun = run_command(mpirun(2) + as_srun + kTtt + train_args(kDir + "/srun"));
  INFO(srun.output);
  REQUIRE(srun.code == 0);
  CHECK(read_text(kDir + "/srun/train.log").find("data parallel: 2 rank(s), backend mpi, launcher slurm") !=
        std::string::npos);
  check_same_curve(ref, read_curve(kDir + "/srun"));

  // Two CPU processes started by hand (as torchrun would): no MPI connects them; each stops at once.
  // Each gets its own TMPDIR: two MPI singletons starting together race to create the same
  // OpenMPI session directory under /tmp (seen failing: "mkdir ... /tmp/ompi.<host>.0: File exists").
  auto by_hand = [&](int r) {
    const std::string rs = std::to_string(r), tmp = kDir + "/hand_tmp" + rs;
    return "(mkdir -p " + tmp + " && TMPDIR=" + tmp + " RANK=" + rs + " WORLD_SIZE=2 LOCAL_RANK=" + rs +
           " MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 timeout 60 " + kTtt + train_args(kDir + "/hand") +
           " 2>&1; echo rank " + rs + " exit $?)";
  };
  CommandResult hand = run_command(by_hand(1) + " & " + by_hand(0) + "; wait");
  INFO(hand.output);
  CHECK(hand.seconds < 30);
  CHECK(hand.output.find("says rank 0 of 2") != std::string::npos);
  CHECK(hand.output.find("says rank 1 of 2") != std::string::npos);
  CHECK(hand.output.find("CPU ranks communicate through MPI, so start them with mpirun") != std::string::npos);
  CHECK(hand.output.find("rank 0 exit 1") != std::string::npos);
  CHECK(hand.output.find("rank 1 exit 1") != std::string::npos);
  CHECK_FALSE(fs::exists(kDir + "/hand/checkpoints"));
}
