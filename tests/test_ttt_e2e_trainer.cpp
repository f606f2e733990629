// tests/test_ttt_e2e_trainer.cpp — TTT-E2E through the trainer and the `ttt` binary: the configs in
// configs/ load and match the official sizes (e2e_preset), the trainer ramps the inner learning
// rate, and a tiny E2E model trains (validation loss falls), resumes exactly, evaluates (loss by
// position), generates deterministically and benchmarks from its checkpoint.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "layers/e2e_config.h"
#include "layers/e2e_model.h"
#include "layers/language_model.h"
#include "layers/presets.h"
#include "tests/trainer_test_util.h"
#include "trainer/config.h"
#include "trainer/model_hooks.h"

using namespace ttt;
using ttt::testing::run_ttt;
namespace fs = std::filesystem;

namespace {

const std::string kDir = ttt::testing::tmp_path("ttt_e2e_cli");

std::vector<double> column(const std::string& path, const char* key) {
  std::vector<double> v;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) v.push_back(j[key].get<double>());
  }
  return v;
}

std::string train_args(const std::string& run) {
  return "train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_e2e.yaml --data " + kDir +
         "/data --run-dir " + run +
         " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=2 --set model.n_heads=2"
         " --set model.d_ff=48 --set model.max_seq_len=32 --set model.window=8 --set model.e2e.chunk=8"
         " --set train.lr=1e-2 --set train.batch_tokens=256 --set train.micro_batch=4 --set train.steps=20"
         " --set train.warmup_steps=4 --set train.eval_every=10 --set train.eval_windows=8 --set train.log_every=10";
}

}  // namespace

TEST_CASE("configs/*_e2e.yaml are the official sizes") {
  for (const std::string size : {"tiny", "125m", "350m", "760m"}) {
    const RunConfig rc = load_config(std::string(TTT_SOURCE_DIR) + "/configs/" + size + "_e2e.yaml");
    const ModelConfig& m = rc.model;
    const ModelConfig p = e2e_preset(size);
    INFO(size);
    CHECK(m.arch == "e2e");
    CHECK(m.n_layers == p.n_layers);
    CHECK(m.d_model == p.d_model);
    CHECK(m.n_heads == p.n_heads);
    CHECK(m.d_ff == p.d_ff);
    CHECK(m.window == p.window);
    CHECK(m.max_seq_len == p.max_seq_len);
    CHECK(m.rope_theta == p.rope_theta);
    CHECK(m.vocab_size == p.vocab_size);
    CHECK(e2e_suffix_blocks(m) == e2e_suffix_blocks(p));
    CHECK(m.e2e.chunk == p.e2e.chunk);
    CHECK(count_parameters(m) == count_parameters(p));
    if (size != "tiny") CHECK(rc.train.lr == peak_lr(size));
  }
  for (const std::string v : {"e2e", "swa", "full"}) {
    const RunConfig rc = load_config(std::string(TTT_SOURCE_DIR) + "/configs/e2e_repro_" + v + ".yaml");
    INFO(v);
    CHECK(rc.model.window == (v == "full" ? 0 : 512));
    CHECK(e2e_suffix_blocks(rc.model) == (v == "e2e" ? 2 : 0));
  }
  // The E2E model keeps the parameter count of its baselines within 1%.
  const double e2e = static_cast<double>(count_parameters(load_config(std::string(TTT_SOURCE_DIR) + "/configs/e2e_repro_e2e.yaml").model));
  const double swa = static_cast<double>(count_parameters(load_config(std::string(TTT_SOURCE_DIR) + "/configs/e2e_repro_swa.yaml").model));
  CHECK(std::fabs(e2e / swa - 1) < 0.01);
}

TEST_CASE("the trainer ramps the inner learning rate over the outer warmup") {
  ModelConfig c = e2e_preset("tiny");
  c.e2e.inner_lr = 1.0;
  c.e2e.inner_lr_init = 0.1;
  LanguageModel lm(c);
  apply_ttt_base_lr_warmup(lm, 0, 10);
  CHECK(lm.e2e()->inner_lr() == doctest::Approx(0.19));
  apply_ttt_base_lr_warmup(lm, 9, 10);
  CHECK(lm.e2e()->inner_lr() == doctest::Approx(1.0));
  apply_ttt_base_lr_warmup(lm, 100, 10);
  CHECK(lm.e2e()->inner_lr() == doctest::Approx(1.0));
}

TEST_CASE("a tiny E2E model through the CLI: train, resume, eval, generate, bench, info") {
  std::filesystem::remove_all(kDir);
  std::filesystem::create_directories(kDir);
  auto prep = ttt::testing::prepare_grammar_data(kDir, /*seed=*/11, /*docs=*/120, /*val_docs=*/12);
  REQUIRE_MESSAGE(prep.code == 0, prep.output);

  const std::string run = kDir + "/run";
  auto tr = run_ttt(train_args(run));
  REQUIRE_MESSAGE(tr.code == 0, tr.output);
  const auto val = column(run + "/metrics.jsonl", "val_loss");
  REQUIRE(val.size() == 3);  // steps 0, 10, 20
  CHECK(val.back() < val.front() - 1.0);

  // Stop at 10, resume: the same losses as the uninterrupted run.
  const std::string run2 = kDir + "/run2";
  REQUIRE(run_ttt(train_args(run2) + " --stop-at-step 10").code == 0);
  auto res = run_ttt(train_args(run2) + " --resume");
  REQUIRE_MESSAGE(res.code == 0, res.output);
  CHECK(column(run2 + "/metrics.jsonl", "loss") == column(run + "/metrics.jsonl", "loss"));

  const std::string ckpt = run + "/checkpoints/step_20.h5";
  auto ev = run_ttt("eval --checkpoint " + ckpt + " --context 32,64 --max-windows 8 --buckets 4");
  REQUIRE_MESSAGE(ev.code == 0, ev.output);
  auto report = nlohmann::json::parse(std::ifstream(run + "/eval/step_20.json"));
  REQUIRE(report["results"].size() == 2);
  CHECK(report["results"][1]["loss_by_position"]["loss"].size() == 4);
  CHECK(report["results"][0]["loss"].get<double>() < val.front() - 1.0);

  const std::string gen = "generate --checkpoint " + ckpt + " --prompt 'the cat' --max-new-tokens 20 --top-k 10 --seed 2";
  auto g1 = run_ttt(gen), g2 = run_ttt(gen);
  REQUIRE_MESSAGE(g1.code == 0, g1.output);
  auto text = [](const std::string& out) { return out.substr(0, out.find("\n[")); };  // drop the stats line
  CHECK(text(g1.output) == text(g2.output));
  CHECK(text(g1.output).rfind("the cat", 0) == 0);

  auto bench = run_ttt("bench --config " + std::string(TTT_SOURCE_DIR) +
                       "/configs/tiny_e2e.yaml --seq-len 64 --batch 1 --repeat 1 --warmup 0 --decode-tokens 20");
  REQUIRE_MESSAGE(bench.code == 0, bench.output);
  auto info = run_ttt("info --config " + std::string(TTT_SOURCE_DIR) + "/configs/125m_e2e.yaml");
  REQUIRE_MESSAGE(info.code == 0, info.output);
  CHECK(info.output.find("fast weights") != std::string::npos);
  auto bad = run_ttt("info --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_e2e.yaml --set model.e2e.chunk=0");
  CHECK(bad.code != 0);
  CHECK(bad.output.find("model.e2e.chunk") != std::string::npos);
}
