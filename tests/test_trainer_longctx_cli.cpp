// tests/test_trainer_longctx_cli.cpp — the long-context evaluations through the `ttt` binary on a
// tiny model trained here: `ttt eval --windows documents` (protocol, documents, bits per byte,
// word perplexity, loss by token index in the JSON), `ttt eval --task niah` (grid JSON), their
// errors, the context-extension preset (configs/125m_transformer_extend.yaml at tiny shapes, from
// the tiny checkpoint), the plotting scripts on the reports written and sweep.py --preset extend.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/trainer_test_util.h"

using ttt::testing::run_command;
using ttt::testing::run_ttt;
namespace fs = std::filesystem;

namespace {

const std::string kDir = ttt::testing::tmp_path("longctx");

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(std::ifstream(path)); }

}  // namespace

TEST_CASE("eval --windows documents, eval --task niah, and their plots") {
  fs::remove_all(kDir);
  fs::create_directories(kDir);
  auto prep = ttt::testing::prepare_grammar_data(kDir, /*seed=*/3, /*docs=*/120, /*val_docs=*/12);
  REQUIRE_MESSAGE(prep.code == 0, prep.output);
  const std::string run = kDir + "/run";
  auto tr = run_ttt("train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml --data " + kDir +
                    "/data --run-dir " + run +
                    " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2"
                    " --set model.d_ff=64 --set model.max_seq_len=32 --set train.lr=1e-2 --set train.batch_tokens=256"
                    " --set train.micro_batch=4 --set train.steps=6 --set train.warmup_steps=2 --set train.eval_every=0"
                    " --set train.log_every=10");
  REQUIRE_MESSAGE(tr.code == 0, tr.output);
  const std::string ckpt = run + "/checkpoints/step_6.h5";
  REQUIRE(fs::exists(ckpt));

  // --- documents windows ---------------------------------------------------------------------------
  auto doc = run_ttt("eval --checkpoint " + ckpt + " --windows documents --context 16,32 --buckets 4");
  REQUIRE_MESSAGE(doc.code == 0, doc.output);
  CHECK(doc.output.find("protocol (documents windows)") != std::string::npos);
  CHECK(doc.output.find("bits/byte") != std::string::npos);
  auto dj = read_json(run + "/eval/step_6_documents.json");
  CHECK(dj["protocol"]["windows"] == "documents");
  REQUIRE(dj["results"].size() == 2);
  for (const auto& r : dj["results"]) {
    CHECK(r["windows_mode"] == "documents");
    CHECK(r["documents"].get<int64_t>() > 0);
    const double bpb = r["bits_per_byte"].get<double>(), nll = r["text"]["nll"].get<double>();
    CHECK(bpb == doctest::Approx(nll / (std::log(2.0) * r["text"]["bytes"].get<double>())));
    CHECK(r["word_perplexity"].get<double>() ==
          doctest::Approx(std::exp(nll / r["text"]["words"].get<double>())));
    const auto& idx = r["loss_by_token_index"];
    CHECK(idx["token_index_start"][0] == 1);
    CHECK(idx["token_index_end"].back() == r["context"].get<int64_t>() + 1);
    CHECK(idx["loss"].size() == idx["token_index_start"].size());
  }
  auto packed = run_ttt("eval --checkpoint " + ckpt + " --context 16,32");
  REQUIRE_MESSAGE(packed.code == 0, packed.output);
  auto pj = read_json(run + "/eval/step_6.json");
  CHECK(pj["protocol"]["windows"] == "packed");
  CHECK(pj["results"][0]["bits_per_byte"].get<double>() > 0);
  CHECK(pj["results"][0]["windows"].get<int64_t>() > dj["results"][0]["windows"].get<int64_t>());

  // --- S-NIAH ------------------------------------------------------------------------------------
  auto niah = run_ttt("eval --checkpoint " + ckpt + " --task niah --niah-tasks single_1,single_2 --context 448,640"
                      " --depths 0,50,100 --samples 2 --niah-gen 6 --batch 4");
  REQUIRE_MESSAGE(niah.code == 0, niah.output);
  CHECK(niah.output.find("task single_1 (noise haystack, words key, numbers value)") != std::string::npos);
  auto nj = read_json(run + "/eval/step_6_niah.json");
  CHECK(nj["task"] == "niah");
  REQUIRE(nj["tasks"].size() == 2);
  CHECK(nj["tasks"][1]["haystack"] == "text");
  CHECK(nj["tasks"][0]["grid"].size() == 3);     // depths
  CHECK(nj["tasks"][0]["grid"][0].size() == 2);  // contexts
  CHECK(nj["samples"].size() == 2 * 2 * 3 * 2);
  CHECK(nj["protocol"]["template"].get<std::string>().rfind("A special magic number is hidden", 0) == 0);

  // --- errors ------------------------------------------------------------------------------------
  auto bad_task = run_ttt("eval --checkpoint " + ckpt + " --task niah --niah-tasks single_9 --context 512");
  CHECK(bad_task.code == 1);
  CHECK(bad_task.output.find("--niah-tasks") != std::string::npos);
  auto short_ctx = run_ttt("eval --checkpoint " + ckpt + " --task niah --context 64");
  CHECK(short_ctx.code == 1);
  CHECK(short_ctx.output.find("too short") != std::string::npos);
  CHECK(run_ttt("eval --checkpoint " + ckpt + " --windows docs").code != 0);
  auto wrong_task = run_ttt("eval --checkpoint " + ckpt + " --depths 0,50");
  CHECK(wrong_task.code == 1);
  CHECK(wrong_task.output.find("--depths applies to --task niah") != std::string::npos);
  auto too_long = run_ttt("eval --checkpoint " + ckpt + " --windows documents --context 5000");
  CHECK(too_long.code == 1);
  CHECK(too_long.output.find("no validation document") != std::string::npos);

  // --- context extension: the 125M preset's recipe at the tiny model's shapes, from its checkpoint --
  const std::string tiny_shapes =
      " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2"
      " --set model.d_ff=64 --set model.max_seq_len=64 --set train.batch_tokens=256 --set train.micro_batch=2"
      " --set train.steps=2";
  auto ext = run_ttt("train --config " + std::string(TTT_SOURCE_DIR) + "/configs/125m_transformer_extend.yaml --data " +
                     kDir + "/data --run-dir " + kDir + "/extend --init-from " + ckpt + tiny_shapes);
  REQUIRE_MESSAGE(ext.code == 0, ext.output);
  CHECK(ext.output.find("model.max_seq_len: 32 -> 64") != std::string::npos);
  CHECK(ext.output.find("model.rope_theta: 10000") != std::string::npos);
  auto ext_eval = run_ttt("eval --checkpoint " + kDir + "/extend/checkpoints/step_2.h5 --windows documents --context 64");
  CHECK_MESSAGE(ext_eval.code == 0, ext_eval.output);
  // Without a checkpoint at the preset's path, a clear error before anything is written.
  auto no_ckpt = run_ttt("train --config " + std::string(TTT_SOURCE_DIR) + "/configs/125m_transformer_extend.yaml --data " +
                         kDir + "/data --run-dir " + kDir + "/extend_missing" + tiny_shapes);
  CHECK(no_ckpt.code == 1);
  CHECK(no_ckpt.output.find("runs/125m_transformer/checkpoints/step_4178.h5") != std::string::npos);

  // --- plots and the sweep preset (Python) ----------------------------------------------------------
  if (run_command("/usr/bin/python3 -c 'import matplotlib'").code != 0) {
    MESSAGE("matplotlib missing: plot scripts not run");
  } else {
    const std::string py = "/usr/bin/python3 " + std::string(TTT_SOURCE_DIR) + "/scripts/";
    auto lp = run_command(py + "plot_longctx.py " + run + "/eval/step_6.json " + run + "/eval/step_6_documents.json" +
                          " --label packed --label docs --metric bits_per_byte --delta-to packed --out " + kDir + "/l.png");
    CHECK_MESSAGE(lp.code == 0, lp.output);
    CHECK(fs::exists(kDir + "/l.png"));
    auto np = run_command(py + "plot_niah.py " + run + "/eval/step_6_niah.json --out " + kDir + "/n.png");
    CHECK_MESSAGE(np.code == 0, np.output);
    CHECK(fs::exists(kDir + "/n.png"));
    CHECK(run_command(py + "plot_niah.py " + run + "/eval/step_6.json --out " + kDir + "/x.png").code != 0);
    // --preset extend: one finetune per context from train.init_from, RoPE theta 5e5 from 4k on.
    auto sw = run_command(py + "sweep.py --config " + std::string(TTT_SOURCE_DIR) +
                          "/configs/125m_transformer_extend.yaml --data " + kDir + "/data --out-dir " + kDir +
                          "/sweep --preset extend --dry-run");
    REQUIRE_MESSAGE(sw.code == 0, sw.output);
    CHECK(sw.output.find("sweep 'extend': 6 rows") != std::string::npos);
    CHECK(sw.output.find("--set model.max_seq_len=1024 --set train.seq_len=0 --set train.micro_batch=8 --set "
                         "model.rope_theta=10000.0") != std::string::npos);
    CHECK(sw.output.find("--set model.max_seq_len=32768 --set train.seq_len=0 --set train.micro_batch=1 --set "
                         "model.rope_theta=500000.0") != std::string::npos);
    auto sw_bad = run_command(py + "sweep.py --config " + std::string(TTT_SOURCE_DIR) +
                              "/configs/125m_transformer.yaml --out-dir " + kDir + "/sweep2 --preset extend --dry-run");
    CHECK(sw_bad.code != 0);
    CHECK(sw_bad.output.find("no train.init_from") != std::string::npos);
  }
  fs::remove_all(kDir);
}
