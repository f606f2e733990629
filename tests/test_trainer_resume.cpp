// tests/test_trainer_resume.cpp — resuming is exact on the CPU: N steps, stop, resume for M steps
// gives the same losses, parameters and optimizer moments, bit for bit, as N+M uninterrupted
// steps (Transformer and TTT-Linear tiny models); a broken newest checkpoint is set aside; a resume
// that changes the plan is refused; SIGINT stops after the step with a checkpoint; a run directory
// with checkpoints needs --resume; errors during a run reach train.log.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/train_loop.h"
#include "tests/train_test_util.h"
#include "tests/trainer_test_util.h"

using namespace ttt;
namespace fs = std::filesystem;

namespace {

RunConfig tiny_config(const std::string& mixer, const std::string& dtype = "fp32") {
  std::vector<std::string> sets = {
      "model.vocab_size=64", "model.d_model=16",  "model.n_layers=2",     "model.n_heads=2",
      "model.d_ff=32",       "model.max_seq_len=16", "model.ttt.mini_batch=4",
      "train.lr=1e-2",       "train.micro_batch=2",  "train.batch_tokens=64",  // 2 x 16 x 2 accumulation
      "train.steps=6",       "train.warmup_steps=2", "train.eval_every=2",     "train.eval_windows=2",
      "train.log_every=1",   "checkpoint.keep_last=0", "train.dtype=" + dtype};
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

std::string fresh_dir(const std::string& name) {
  std::string d = ttt::testing::tmp_path("resume_" + name);
  fs::remove_all(d);
  return d;
}

TrainResult run(const RunConfig& cfg, TokenSource& data, const std::string& dir, bool resume, int64_t stop_at = -1) {
  return ttt::testing::run_training(cfg, data, dir, resume, stop_at);
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

void check_exact_resume(const std::string& mixer, const std::string& dtype = "fp32") {
  RunConfig cfg = tiny_config(mixer, dtype);
  auto data = ttt::testing::learnable_memory_data();
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


TEST_CASE("a truncated newest checkpoint is reported and skipped; the run still ends exactly") {
  RunConfig cfg = tiny_config("attention");
  auto data = ttt::testing::learnable_memory_data();
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
  CHECK(text.find("checkpoint " + newest + " is unreadable") != std::string::npos);
  CHECK(text.find("moved aside to " + newest + ".broken") != std::string::npos);
  CHECK(fs::exists(newest + ".broken"));  // kept for inspection, never deleted
}

namespace {

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("every checkpoint broken: set aside, keep_last never deletes a new one, metrics kept") {
  RunConfig cfg = tiny_config("attention");
  apply_override(cfg, "checkpoint.keep_last=1");
  auto data = ttt::testing::learnable_memory_data();
  const std::string d = fresh_dir("allbroken");
  run(cfg, *data, d, false, 4);
  const std::string p4 = checkpoint_path(d + "/checkpoints", 4);
  fs::resize_file(p4, fs::file_size(p4) / 2);
  const std::string metrics = file_text(d + "/metrics.jsonl");
  // Refused: nothing to resume from; the broken file is set aside, the metrics stay as they were.
  CHECK_THROWS_WITH(run(cfg, *data, d, true), doctest::Contains(("no checkpoint of " + d + "/checkpoints can be read").c_str()));
  CHECK(fs::exists(p4 + ".broken"));
  CHECK(!fs::exists(p4));
  CHECK(file_text(d + "/metrics.jsonl") == metrics);
  // Again: the run starts over, and its checkpoints survive keep_last = 1 (the set-aside file
  // would otherwise count as the newest).
  TrainResult r = run(cfg, *data, d, true, 2);
  CHECK(r.start_step == 0);
  CHECK(r.end_step == 2);
  CHECK(fs::exists(checkpoint_path(d + "/checkpoints", 2)));
  CHECK(fs::exists(p4 + ".broken"));
  CHECK(run(cfg, *data, d, true).start_step == 2);
}

TEST_CASE("a resume that changes the training plan is refused, naming the keys, and writes nothing") {
  RunConfig cfg = tiny_config("attention");
  auto data = ttt::testing::learnable_memory_data();
  const std::string d = fresh_dir("planchange");
  run(cfg, *data, d, false, 3);
  const std::string metrics = file_text(d + "/metrics.jsonl"), config = file_text(d + "/config.yaml"),
                    log = file_text(d + "/train.log");
  RunConfig bigger = cfg;
  apply_override(bigger, "train.batch_tokens=128");
  apply_override(bigger, "train.lr=2e-2");
  try {
    run(bigger, *data, d, true);
    FAIL("expected a refusal");
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.find("the config changes its training plan") != std::string::npos);
    CHECK(m.find("train.batch_tokens: 64 -> 128") != std::string::npos);
    CHECK(m.find("train.lr: 0.01 -> 0.02") != std::string::npos);
    CHECK(m.find("--allow-config-change") != std::string::npos);
  }
  CHECK(file_text(d + "/metrics.jsonl") == metrics);
  CHECK(file_text(d + "/config.yaml") == config);
  CHECK(file_text(d + "/train.log") == log);
  // How the run executes may change: logging, evaluation, micro-batch (same global batch).
  RunConfig same_plan = cfg;
  apply_override(same_plan, "train.log_every=5");
  apply_override(same_plan, "train.micro_batch=1");
  apply_override(same_plan, "train.eval_every=3");
  CHECK(run(same_plan, *data, d, true, 4).end_step == 4);
  // Asked for, the change goes through.
  TrainOptions o;
  o.run_dir = d;
  o.resume = true;
  o.console = false;
  o.allow_config_change = true;
  RunConfig longer = cfg;
  apply_override(longer, "train.steps=7");
  TrainResult r = train(longer, *data, o);
  CHECK(r.start_step == 4);
  CHECK(r.end_step == 7);
  CHECK(file_text(d + "/train.log").find("config differs from the checkpoint's: train.steps: 6 -> 7") != std::string::npos);
}

TEST_CASE("a resume already at --stop-at-step does nothing; a refused start leaves no run directory") {
  RunConfig cfg = tiny_config("attention");
  auto data = ttt::testing::learnable_memory_data();
  const std::string d = fresh_dir("already");
  run(cfg, *data, d, false, 3);
  const std::string metrics = file_text(d + "/metrics.jsonl");
  TrainResult r = run(cfg, *data, d, true, 2);
  CHECK(r.stopped_early);
  CHECK(r.end_step == 3);
  CHECK(r.losses.empty());
  CHECK(file_text(d + "/metrics.jsonl") == metrics);
  // A start refused before step 0 does not create the run directory.
  const std::string e = fresh_dir("refused");
  RunConfig bad_tok = cfg;
  apply_override(bad_tok, "data.tokenizer=/nonexistent/tok.model");
  CHECK_THROWS_WITH(run(bad_tok, *data, e, false), doctest::Contains("key 'data.tokenizer': '/nonexistent/tok.model' does not exist"));
  CHECK(!fs::exists(e));
}

TEST_CASE("an existing run needs --resume; --resume without checkpoints starts fresh") {
  RunConfig cfg = tiny_config("attention");
  apply_override(cfg, "train.steps=2");
  auto data = ttt::testing::learnable_memory_data();
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

// Another source with `before_read(step)` called before each training read (to raise a signal or
// fail at a given step).
class HookedSource : public TokenSource {
 public:
  HookedSource(std::unique_ptr<TokenSource> inner, std::function<void(int64_t)> before_read)
      : inner_(std::move(inner)), before_read_(std::move(before_read)) {}
  Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) override {
    before_read_(step);
    return inner_->train_rows(step, rank, world, rows, seq_len);
  }
  int64_t val_windows(int64_t seq_len) override { return inner_->val_windows(seq_len); }
  Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) override {
    return inner_->val_rows(seq_len, first, count);
  }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  std::string describe() const override { return "hooked " + inner_->describe(); }

 private:
  std::unique_ptr<TokenSource> inner_;
  std::function<void(int64_t)> before_read_;
};

}  // namespace

TEST_CASE("an error during the run names the step and is logged in train.log") {
  RunConfig cfg = tiny_config("attention");
  // Reads fail from step 3 on (a disk error, a damaged shard).
  HookedSource data(ttt::testing::learnable_memory_data(), [](int64_t step) {
    if (step >= 2) throw std::runtime_error("shard train_00000.h5: read failed (checksum)");
  });
  const std::string d = fresh_dir("failing");
  CHECK_THROWS_WITH(run(cfg, data, d, false),
                    "step 3: reading the training data failed: shard train_00000.h5: read failed (checksum)");
  const std::string log = file_text(d + "/train.log");
  CHECK(log.find("[error] step 3: reading the training data failed") != std::string::npos);
}

TEST_CASE("SIGINT: the step finishes, a checkpoint is written, train() returns normally") {
  RunConfig cfg = tiny_config("attention");
  HookedSource data(ttt::testing::learnable_memory_data(), [](int64_t step) {
    if (step == 1) std::raise(SIGINT);  // while step 2 reads its batch
  });
  const std::string d = fresh_dir("sigint");
  TrainResult r = run(cfg, data, d, false);
  CHECK(r.stopped_early);
  CHECK(r.stop_reason == "SIGINT");
  CHECK(r.end_step == 2);
  CHECK(fs::exists(checkpoint_path(d + "/checkpoints", 2)));
  CHECK(checkpoint_problem(checkpoint_path(d + "/checkpoints", 2)) == "");
}
