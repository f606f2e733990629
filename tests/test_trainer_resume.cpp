// tests/test_trainer_resume.cpp — resuming is exact on the CPU: N steps, stop, resume for M steps
// gives the same losses, parameters and optimizer moments, bit for bit, as N+M uninterrupted
// steps (Transformer and TTT-Linear tiny models); on the GPU too with train.deterministic (skips
// without a GPU); train.deterministic holds for the run only; a broken newest checkpoint is skipped; SIGINT
// stops after the step with a checkpoint; a run directory with checkpoints needs --resume.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/train_loop.h"
#include "tests/cuda_test_util.h"
#include "tests/trainer_test_util.h"

using namespace ttt;
namespace fs = std::filesystem;

namespace {

RunConfig tiny_config(const std::string& mixer, const std::string& dtype = "fp32", const std::string& device = "cpu") {
  std::vector<std::string> sets = {
      "model.vocab_size=64", "model.d_model=16",  "model.n_layers=2",     "model.n_heads=2",
      "model.d_ff=32",       "model.max_seq_len=16", "model.ttt.mini_batch=4",
      "train.lr=1e-2",       "train.micro_batch=2",  "train.batch_tokens=64",  // 2 x 16 x 2 accumulation
      "train.steps=6",       "train.warmup_steps=2", "train.eval_every=2",     "train.eval_windows=2",
      "train.log_every=1",   "checkpoint.keep_last=0", "train.dtype=" + dtype, "train.device=" + device};
  if (device != "cpu") sets.push_back("train.deterministic=true");
  if (mixer == "attention") {
    sets.push_back("model.mixer=attention");
    sets.push_back("model.backbone=transformer");
  } else {
    sets.push_back("model.mixer=" + mixer);
    sets.push_back("model.backbone=mamba");
    sets.push_back("model.ttt.base_lr_init=0.3");  // exercises the inner-lr warmup across the resume
  }
  return load_config("", sets);
}

std::unique_ptr<TokenSource> tiny_data() {
  // A learnable stream: token t+1 = (3 t + 1) mod 64 with occasional resets.
  std::vector<int64_t> train, val;
  int64_t x = 0;
  for (int i = 0; i < 4000; ++i) train.push_back(x = (i % 97 == 0) ? i % 64 : (3 * x + 1) % 64);
  for (int i = 0; i < 200; ++i) val.push_back(x = (3 * x + 1) % 64);
  return make_memory_source(train, val, 64, 5);
}

std::string fresh_dir(const std::string& name) {
  std::string d = ttt::testing::tmp_path("resume_" + name);
  fs::remove_all(d);
  return d;
}

TrainResult run(const RunConfig& cfg, TokenSource& data, const std::string& dir, bool resume, int64_t stop_at = -1) {
  TrainOptions o;
  o.run_dir = dir;
  o.resume = resume;
  o.stop_at_step = stop_at;
  o.console = false;
  return train(cfg, data, o);
}

// Every tensor of a checkpoint (parameters and moments) as raw floats, by name.
std::map<std::string, std::vector<float>> tensors_of(const RunConfig& cfg, const std::string& path) {
  LanguageModel m(cfg.model);
  AdamW opt(m.named_parameters(), {});
  load_checkpoint(path, m.named_parameters(), &opt);
  std::map<std::string, std::vector<float>> out;
  for (auto& [n, t] : m.named_parameters()) out["p:" + n] = t.tolist<float>();
  for (auto& s : opt.slots()) {
    out["m:" + s.name] = s.m.tolist<float>();
    out["v:" + s.name] = s.v.tolist<float>();
  }
  return out;
}

void check_exact_resume(const std::string& mixer, const std::string& dtype = "fp32", const std::string& device = "cpu") {
  RunConfig cfg = tiny_config(mixer, dtype, device);
  auto data = tiny_data();
  const std::string a = fresh_dir(mixer + "_a"), b = fresh_dir(mixer + "_b");
  TrainResult full = run(cfg, *data, a, false);
  REQUIRE(full.losses.size() == 6);
  REQUIRE(full.end_step == 6);
  CHECK(full.losses.back() < full.losses.front());  // it learns something

  TrainResult first = run(cfg, *data, b, false, 3);
  CHECK(first.stopped_early);
  CHECK(first.stop_reason == "stop_at_step");
  CHECK(first.end_step == 3);
  CHECK(first.last_checkpoint == checkpoint_path(b + "/checkpoints", 3));
  TrainResult second = run(cfg, *data, b, true);
  CHECK(second.start_step == 3);
  CHECK(second.end_step == 6);

  std::vector<double> joined = first.losses;
  joined.insert(joined.end(), second.losses.begin(), second.losses.end());
  REQUIRE(joined.size() == full.losses.size());
  for (size_t i = 0; i < joined.size(); ++i) CHECK_MESSAGE(joined[i] == full.losses[i], "step " << i + 1);
  // Validation losses at steps 0, 2, 4, 6 agree too (those of the resumed part included).
  std::vector<std::pair<int64_t, double>> val = first.val_losses;
  val.insert(val.end(), second.val_losses.begin(), second.val_losses.end());
  CHECK(val == full.val_losses);

  auto ta = tensors_of(cfg, checkpoint_path(a + "/checkpoints", 6));
  auto tb = tensors_of(cfg, checkpoint_path(b + "/checkpoints", 6));
  REQUIRE(ta.size() == tb.size());
  for (auto& [name, values] : ta) CHECK_MESSAGE(values == tb.at(name), name);

  // metrics.jsonl of the resumed run reads as one run: steps 1..6 once each, equal losses.
  std::ifstream in(b + "/metrics.jsonl");
  std::vector<double> logged;
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    if (row.contains("loss")) logged.push_back(row["loss"].get<double>());
  }
  CHECK(logged == full.losses);
}

}  // namespace

TEST_CASE("exact resume: Transformer") { check_exact_resume("attention"); }

TEST_CASE("exact resume: TTT-Linear (inner base-lr warmup across the resume)") { check_exact_resume("ttt_linear"); }

TEST_CASE("exact resume: TTT-MLP") { check_exact_resume("ttt_mlp"); }

TEST_CASE("exact resume with bf16 autocast: TTT-Linear") { check_exact_resume("ttt_linear", "bf16"); }

TEST_CASE("exact resume on the GPU with train.deterministic (embedding and attention gradients without atomics)") {
  TTT_REQUIRE_GPU();
  check_exact_resume("attention", "bf16", "cuda");
  check_exact_resume("attention", "fp32", "cuda");
  check_exact_resume("ttt_linear", "bf16", "cuda");
}

namespace {
// A token source that records whether deterministic mode was on whenever the trainer read a batch.
class ProbeSource final : public TokenSource {
 public:
  explicit ProbeSource(std::unique_ptr<TokenSource> s) : s_(std::move(s)) {}
  Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) override {
    seen.push_back(deterministic());
    return s_->train_rows(step, rank, world, rows, seq_len);
  }
  int64_t val_windows(int64_t seq_len) override { return s_->val_windows(seq_len); }
  Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) override { return s_->val_rows(seq_len, first, count); }
  int64_t vocab_size() const override { return s_->vocab_size(); }
  std::string describe() const override { return s_->describe(); }
  std::vector<bool> seen;

 private:
  std::unique_ptr<TokenSource> s_;
};
}  // namespace

TEST_CASE("train.deterministic is on while the run trains and off again after it; the CPU result is the same") {
  set_deterministic(false);
  RunConfig det = tiny_config("attention");
  apply_override(det, "train.deterministic=true");
  ProbeSource on(tiny_data()), off(tiny_data());
  const std::string dir = fresh_dir("det");
  TrainResult a = run(det, on, dir, false);
  TrainResult b = run(tiny_config("attention"), off, fresh_dir("nodet"), false);
  REQUIRE(on.seen.size() == 6);
  CHECK(std::all_of(on.seen.begin(), on.seen.end(), [](bool x) { return x; }));
  CHECK(std::none_of(off.seen.begin(), off.seen.end(), [](bool x) { return x; }));
  CHECK_FALSE(deterministic());
  CHECK(a.losses == b.losses);  // the CPU kernels are deterministic either way
  std::ifstream log(dir + "/train.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("deterministic mode") != std::string::npos);
}


TEST_CASE("a truncated newest checkpoint is reported and skipped; the run still ends exactly") {
  RunConfig cfg = tiny_config("attention");
  auto data = tiny_data();
  const std::string a = fresh_dir("skip_a"), b = fresh_dir("skip_b");
  TrainResult full = run(cfg, *data, a, false);
  RunConfig every2 = cfg;
  apply_override(every2, "checkpoint.every=2");
  run(every2, *data, b, false, 5);  // checkpoints at steps 2, 4 and 5
  const std::string newest = checkpoint_path(b + "/checkpoints", 5);
  fs::resize_file(newest, fs::file_size(newest) / 3);
  TrainResult resumed = run(every2, *data, b, true);
  CHECK(resumed.start_step == 4);
  REQUIRE(resumed.losses.size() == 2);
  CHECK(resumed.losses[0] == full.losses[4]);
  CHECK(resumed.losses[1] == full.losses[5]);
  std::ifstream log(b + "/train.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("skipping checkpoint " + newest) != std::string::npos);
}

TEST_CASE("an existing run needs --resume; --resume without checkpoints starts fresh") {
  RunConfig cfg = tiny_config("attention");
  apply_override(cfg, "train.steps=2");
  auto data = tiny_data();
  const std::string d = fresh_dir("exists");
  run(cfg, *data, d, false);
  CHECK_THROWS_WITH_AS(run(cfg, *data, d, false), doctest::Contains("already has checkpoints: pass --resume"),
                       std::invalid_argument);
  const std::string e = fresh_dir("empty");
  CHECK(run(cfg, *data, e, true).start_step == 0);
  CHECK(fs::exists(e + "/config.yaml"));
  CHECK(load_config(e + "/config.yaml").train.steps == 2);  // the resolved config reads back
}

namespace {

// Sends SIGINT to the process while step 2 (0-based 1) reads its batch.
class InterruptingSource : public TokenSource {
 public:
  explicit InterruptingSource(std::unique_ptr<TokenSource> inner) : inner_(std::move(inner)) {}
  Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) override {
    if (step == 1) std::raise(SIGINT);
    return inner_->train_rows(step, rank, world, rows, seq_len);
  }
  int64_t val_windows(int64_t seq_len) override { return inner_->val_windows(seq_len); }
  Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) override {
    return inner_->val_rows(seq_len, first, count);
  }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  std::string describe() const override { return "interrupting " + inner_->describe(); }

 private:
  std::unique_ptr<TokenSource> inner_;
};

}  // namespace

TEST_CASE("SIGINT: the step finishes, a checkpoint is written, train() returns normally") {
  RunConfig cfg = tiny_config("attention");
  InterruptingSource data(tiny_data());
  const std::string d = fresh_dir("sigint");
  TrainResult r = run(cfg, data, d, false);
  CHECK(r.stopped_early);
  CHECK(r.stop_reason == "SIGINT");
  CHECK(r.end_step == 2);
  CHECK(fs::exists(checkpoint_path(d + "/checkpoints", 2)));
  CHECK(checkpoint_problem(checkpoint_path(d + "/checkpoints", 2)) == "");
}
