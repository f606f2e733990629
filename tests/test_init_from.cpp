// tests/test_init_from.cpp — `train.init_from` / `ttt train --init-from` (trainer/init_from.h): a new
// run starts from the checkpoint's parameters (its first loss is the checkpoint model's loss on
// that batch) with a fresh optimizer and schedule (lr 0 at the first update, AdamW step count from
// 0); a config whose parameter shapes differ is refused naming the parameter and the model keys;
// keys that change no shape may differ and are logged; --resume of such a run continues from its
// own checkpoints exactly; and through the CLI: train -> export -> import -> train --init-from
// (the imported checkpoint's own config) -> eval.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "layers/language_model.h"
#include "tests/train_test_util.h"
#include "tests/trainer_test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/eval.h"
#include "trainer/train_loop.h"

using namespace ttt;
namespace fs = std::filesystem;
using ttt::testing::error_message;
using ttt::testing::learnable_memory_data;
using ttt::testing::run_training;

namespace {

RunConfig tiny_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {
      "model.vocab_size=64", "model.d_model=16",     "model.n_layers=2",      "model.n_heads=2",
      "model.d_ff=32",       "model.max_seq_len=16", "model.ttt.mini_batch=4", "model.mixer=ttt_linear",
      "train.lr=1e-2",       "train.micro_batch=2",  "train.batch_tokens=32",  // accumulation 1
      "train.steps=4",       "train.warmup_steps=1", "train.log_every=1",      "checkpoint.keep_last=0"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return load_config("", sets);
}

std::string fresh_dir(const std::string& name) {
  std::string d = ttt::testing::tmp_path("init_from_" + name);
  fs::remove_all(d);
  return d;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The checkpoint made once for the whole file: 4 steps of the tiny TTT-Linear.
const std::string& source_checkpoint() {
  static const std::string path = [] {
    const std::string dir = fresh_dir("source");
    auto data = learnable_memory_data();
    run_training(tiny_config(), *data, dir);
    return checkpoint_path(dir + "/checkpoints", 4);
  }();
  return path;
}

}  // namespace

TEST_CASE("a run from a checkpoint starts from its parameters, with a fresh optimizer and schedule") {
  auto data = learnable_memory_data();
  const RunConfig cfg = tiny_config({"train.steps=3", "train.lr=3e-3", "train.init_from=" + source_checkpoint()});
  const std::string dir = fresh_dir("b");
  const TrainResult b = run_training(cfg, *data, dir);
  REQUIRE(b.losses.size() == 3);

  // The first loss is the source model's loss on the new run's first batch (same data, step 0).
  LanguageModel src(cfg.model);
  load_checkpoint(source_checkpoint(), src.named_parameters(), nullptr);
  auto [ids, targets] = split_inputs_targets(data->train_rows(0, 0, 1, 2, 16));
  const double expected = src.loss(ids, targets).item();
  CHECK(b.losses[0] == doctest::Approx(expected).epsilon(1e-12));
  // A random start gives another (higher) loss: the check above can tell the two apart.
  const TrainResult scratch = run_training(tiny_config({"train.steps=1"}), *data, fresh_dir("scratch"));
  CHECK(scratch.losses[0] > b.losses[0] + 0.1);

  // Fresh schedule (warmup from lr 0) and optimizer (AdamW's step count is this run's).
  std::ifstream metrics(dir + "/metrics.jsonl");
  std::string first;
  std::getline(metrics, first);
  CHECK(nlohmann::json::parse(first)["step"] == 1);
  CHECK(nlohmann::json::parse(first)["lr"] == 0.0);
  const CheckpointMeta meta = read_checkpoint_meta(checkpoint_path(dir + "/checkpoints", 3));
  CHECK(meta.step == 3);
  CHECK(meta.optimizer_step == 3);
  CHECK(read_text(dir + "/config.yaml").find("init_from: \"" + source_checkpoint() + "\"") != std::string::npos);
  CHECK(read_text(dir + "/train.log").find("initialized from " + source_checkpoint() + " (step 4 of its run)") !=
        std::string::npos);
}

TEST_CASE("a config with other parameter shapes is refused, naming the parameter and the keys") {
  auto data = learnable_memory_data();
  const std::string init = "train.init_from=" + source_checkpoint();
  struct Case {
    std::vector<std::string> sets;
    std::vector<std::string> messages;
  };
  const std::vector<Case> cases = {
      {{"model.d_ff=48"},
       {"parameter 'blocks.0.mlp.w1.weight' has shape [32, 16] in the checkpoint, [48, 16] in this model",
        "model.d_ff: 32 -> 48"}},
      {{"model.mixer=ttt_mlp"},
       {"parameter 'blocks.0.mixer.inner.W1' has shape [2, 8, 8] in the checkpoint, [2, 8, 32] in this model",
        "model.mixer: \"ttt_linear\" -> \"ttt_mlp\""}},
      {{"model.n_layers=3"}, {"parameter 'blocks.2.pre_conv_norm.weight' [16] of this model is not in the checkpoint",
                             "model.n_layers: 2 -> 3"}},
      {{"model.backbone=transformer"}, {"'blocks.0.mixer.k_proj.weight' [16, 16] of this model is not in the checkpoint"}},
      {{"model.n_layers=1"},
       {"parameter 'blocks.1.pre_conv_norm.weight' of the checkpoint is not in this model", "model.n_layers: 2 -> 1"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.sets.front());
    std::vector<std::string> sets = c.sets;
    sets.push_back(init);
    const std::string dir = fresh_dir("mismatch");
    const std::string err = error_message([&] { run_training(tiny_config(sets), *data, dir); });
    CHECK(err.rfind("train.init_from: " + source_checkpoint() + " cannot initialize the model of this config", 0) == 0);
    for (const auto& m : c.messages) CHECK_MESSAGE(err.find(m) != std::string::npos, err);
    CHECK(list_checkpoints(dir + "/checkpoints").empty());
  }
  const std::string err = error_message([&] { run_training(tiny_config({"train.init_from=/nonexistent/step_1.h5"}), *data, fresh_dir("missing")); });
  CHECK(err.find("train.init_from: cannot use checkpoint") != std::string::npos);
}

TEST_CASE("keys that change no shape may differ (longer context, RoPE base) and are logged") {
  auto data = learnable_memory_data();
  const std::string dir = fresh_dir("longer");
  const TrainResult r = run_training(tiny_config({"model.max_seq_len=32", "model.rope_theta=50000", "train.seq_len=16", "train.steps=1",
                                         "train.init_from=" + source_checkpoint()}),
                            *data, dir);
  CHECK(r.end_step == 1);
  const std::string log = read_text(dir + "/train.log");
  CHECK(log.find("model config differs from the init checkpoint's: model.max_seq_len: 16 -> 32") != std::string::npos);
  CHECK(log.find("model.rope_theta: 10000.0 -> 50000.0") != std::string::npos);
}

TEST_CASE("--resume of a run started from a checkpoint continues from its own checkpoints, exactly") {
  auto data = learnable_memory_data();
  const RunConfig cfg = tiny_config({"train.steps=4", "train.init_from=" + source_checkpoint()});
  const TrainResult full = run_training(cfg, *data, fresh_dir("full"));
  const std::string dir = fresh_dir("parts");
  const TrainResult first = run_training(cfg, *data, dir, false, 2);
  const TrainResult rest = run_training(cfg, *data, dir, true);
  CHECK(rest.start_step == 2);
  std::vector<double> joined = first.losses;
  joined.insert(joined.end(), rest.losses.begin(), rest.losses.end());
  CHECK(joined == full.losses);
}

TEST_CASE("through the CLI: train -> export -> import -> train --init-from (its own config) -> eval") {
  using ttt::testing::run_ttt;
  const std::string dir = fresh_dir("cli");
  fs::create_directories(dir);
  ttt::testing::write_grammar_corpus(dir + "/corpus.jsonl", /*seed=*/3, /*docs=*/60);
  auto tok = run_ttt("tokenizer train --input " + dir + "/corpus.jsonl --vocab-size 300 --out " + dir + "/tok.model");
  REQUIRE_MESSAGE(tok.code == 0, tok.output);
  auto prep = run_ttt("data prepare --input " + dir + "/corpus.jsonl --tokenizer " + dir + "/tok.model --out " + dir +
                      "/data --val-docs 8 --quiet");
  REQUIRE_MESSAGE(prep.code == 0, prep.output);
  const std::string sets =
      " --set model.vocab_size=300 --set model.d_model=16 --set model.n_layers=1 --set model.n_heads=2"
      " --set model.d_ff=32 --set model.max_seq_len=16 --set model.ttt.mini_batch=4 --set model.mixer=ttt_linear"
      " --set train.lr=1e-2 --set train.batch_tokens=64 --set train.micro_batch=4 --set train.steps=3";
  auto tr = run_ttt("train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_ttt_linear.yaml --data " + dir +
                    "/data --run-dir " + dir + "/run" + sets);
  REQUIRE_MESSAGE(tr.code == 0, tr.output);

  auto ex = run_ttt("export --checkpoint " + dir + "/run/checkpoints/step_3.h5 --format safetensors --out " + dir + "/hf");
  REQUIRE_MESSAGE(ex.code == 0, ex.output);
  CHECK(fs::exists(dir + "/hf/tokenizer.model"));
  auto im = run_ttt("import --input " + dir + "/hf --out " + dir + "/imported.h5");
  REQUIRE_MESSAGE(im.code == 0, im.output);

  auto ft = run_ttt("train --init-from " + dir + "/imported.h5 --data " + dir + "/data --run-dir " + dir +
                    "/finetune --set train.steps=2 --set train.lr=1e-3");
  REQUIRE_MESSAGE(ft.code == 0, ft.output);
  CHECK(ft.output.find("finished 2 steps") != std::string::npos);
  CHECK(read_text(dir + "/finetune/train.log").find("initialized from " + dir + "/imported.h5 (step 3 of its run)") !=
        std::string::npos);
  auto ev = run_ttt("eval --checkpoint " + dir + "/imported.h5 --context 16 --max-windows 2");
  REQUIRE_MESSAGE(ev.code == 0, ev.output);

  auto no_dir = run_ttt("train --init-from " + dir + "/imported.h5 --data " + dir + "/data");
  CHECK(no_dir.code == 1);
  CHECK(no_dir.output.find("--run-dir is required when the config comes from --init-from") != std::string::npos);
  auto bad = run_ttt("train --init-from " + dir + "/imported.h5 --data " + dir + "/data --run-dir " + dir +
                     "/bad --set model.d_ff=64 --set train.lr=1e-3");
  CHECK(bad.code == 1);
  CHECK(bad.output.find("error: train.init_from: ") != std::string::npos);
  CHECK(bad.output.find("model.d_ff: 32 -> 64") != std::string::npos);
  fs::remove_all(dir);
}
