// tests/test_trainer_e2e.cpp — the whole path through the `ttt` binary on a corpus generated
// here: tokenizer train -> data prepare -> train (validation loss falls) -> eval at several
// context lengths (a second eval merges its contexts into the report) -> generate (same seed, same
// text); a run stopped at a step and resumed through the CLI logs the same losses as the
// uninterrupted run (real shards and sampler); SIGTERM stops a run with a checkpoint and exit
// code 0. Small enough for CI (seconds).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/trainer_test_util.h"

using ttt::testing::run_ttt;
namespace fs = std::filesystem;

namespace {

const std::string kDir = ttt::testing::tmp_path("e2e");

std::string train_args(const std::string& run_dir) {
  return "train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml --data " + kDir +
         "/data --run-dir " + run_dir +
         " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2"
         " --set model.d_ff=64 --set model.max_seq_len=32 --set train.lr=1e-2 --set train.batch_tokens=256"
         " --set train.micro_batch=4 --set train.steps=30 --set train.warmup_steps=3 --set train.eval_every=10"
         " --set train.eval_windows=8 --set train.log_every=10 --set checkpoint.keep_last=2";
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::vector<double> column(const std::vector<nlohmann::json>& rows, const char* key) {
  std::vector<double> v;
  for (const auto& r : rows)
    if (r.contains(key)) v.push_back(r[key].get<double>());
  return v;
}

}  // namespace

TEST_CASE("tokenizer -> data -> train -> eval -> generate, resume and SIGTERM through the CLI") {
  fs::remove_all(kDir);
  fs::create_directories(kDir);
  auto prep = ttt::testing::prepare_grammar_data(kDir, /*seed=*/7, /*docs=*/160, /*val_docs=*/16);
  REQUIRE_MESSAGE(prep.code == 0, prep.output);

  // --- train -----------------------------------------------------------------------------------
  const std::string run = kDir + "/run";
  auto tr = run_ttt(train_args(run));
  REQUIRE_MESSAGE(tr.code == 0, tr.output);
  CHECK(tr.output.find("finished 30 steps") != std::string::npos);
  for (const char* f : {"config.yaml", "metrics.jsonl", "train.log", "checkpoints/step_30.h5"})
    CHECK_MESSAGE(fs::exists(run + "/" + f), f);
  auto rows = read_jsonl(run + "/metrics.jsonl");
  auto losses = column(rows, "loss"), val = column(rows, "val_loss");
  REQUIRE(losses.size() == 30);
  REQUIRE(val.size() == 4);  // steps 0, 10, 20, 30
  CHECK(val.front() > 5.0);  // ~ln(320) = 5.77 at initialization
  CHECK(val.back() < val.front() - 2.0);
  for (const char* key : {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed_s"})
    CHECK_MESSAGE(rows[1].contains(key), key);

  // --- eval at several context lengths ------------------------------------------------------------
  const std::string ckpt = run + "/checkpoints/step_30.h5";
  auto ev = run_ttt("eval --checkpoint " + ckpt + " --context 16,32,64 --max-windows 8 --buckets 4");
  REQUIRE_MESSAGE(ev.code == 0, ev.output);
  CHECK(ev.output.find("ppl") != std::string::npos);
  auto report = nlohmann::json::parse(std::ifstream(run + "/eval/step_30.json"));
  REQUIRE(report["results"].size() == 3);
  CHECK(report["results"][1]["context"] == 32);
  CHECK(report["results"][1]["tokens"] == 8 * 32);
  CHECK(report["results"][1]["loss_by_position"]["loss"].size() == 4);
  CHECK(report["results"][1]["loss"].get<double>() < val.front() - 2.0);
  CHECK(report["step"] == 30);
  CHECK(report["dtype"] == "fp32");
  // A second eval of the same checkpoint and protocol adds its contexts to the report; another
  // protocol (here: another window count) replaces it, and says so.
  auto ev2 = run_ttt("eval --checkpoint " + ckpt + " --context 8,32 --max-windows 8 --buckets 4");
  REQUIRE_MESSAGE(ev2.code == 0, ev2.output);
  auto merged = nlohmann::json::parse(std::ifstream(run + "/eval/step_30.json"));
  REQUIRE(merged["results"].size() == 4);
  CHECK(merged["results"][0]["context"] == 8);
  CHECK(merged["results"][1] == report["results"][0]);  // 16 kept as it was
  CHECK(merged["results"][2]["context"] == 32);         // 32 evaluated again (same numbers)
  CHECK(merged["results"][2]["loss"] == report["results"][1]["loss"]);
  CHECK(merged["results"][3] == report["results"][2]);  // 64 kept
  auto ev3 = run_ttt("eval --checkpoint " + ckpt + " --context 8 --max-windows 4 --buckets 4");
  REQUIRE_MESSAGE(ev3.code == 0, ev3.output);
  CHECK(ev3.output.find("replacing " + run + "/eval/step_30.json: it held another data set or protocol") !=
        std::string::npos);
  CHECK(nlohmann::json::parse(std::ifstream(run + "/eval/step_30.json"))["results"].size() == 1);

  // bf16 autocast: the same protocol within bf16 noise of fp32, but not the fp32 numbers themselves.
  auto ev16 = run_ttt("eval --checkpoint " + ckpt + " --context 32 --max-windows 8 --dtype bf16 --out " + kDir +
                      "/eval_bf16.json");
  REQUIRE_MESSAGE(ev16.code == 0, ev16.output);
  auto report16 = nlohmann::json::parse(std::ifstream(kDir + "/eval_bf16.json"));
  CHECK(report16["dtype"] == "bf16");
  const double loss32 = report["results"][1]["loss"].get<double>(), loss16 = report16["results"][0]["loss"];
  CHECK(loss16 == doctest::Approx(loss32).epsilon(0.02));
  CHECK(loss16 != loss32);
  CHECK(run_ttt("eval --checkpoint " + ckpt + " --dtype fp16").code != 0);
  // --deterministic is recorded; on the CPU the numbers are the same either way.
  auto evd = run_ttt("eval --checkpoint " + ckpt + " --context 32 --max-windows 8 --deterministic --out " + kDir +
                     "/eval_det.json");
  REQUIRE_MESSAGE(evd.code == 0, evd.output);
  auto report_det = nlohmann::json::parse(std::ifstream(kDir + "/eval_det.json"));
  CHECK(report_det["deterministic"] == true);
  CHECK(report["deterministic"] == false);
  CHECK(report_det["results"][0]["loss"].get<double>() == loss32);
  // bench: the JSON carries --deterministic and the reserved memory beside the peak.
  auto bench = run_ttt("bench --config " + std::string(TTT_SOURCE_DIR) +
                       "/configs/tiny_transformer.yaml --phases train,prefill --batch 1 --seq-len 16 --warmup 0 "
                       "--repeat 1 --deterministic --saved --out " + kDir + "/bench.json");
  REQUIRE_MESSAGE(bench.code == 0, bench.output);
  auto bj = nlohmann::json::parse(std::ifstream(kDir + "/bench.json"));
  CHECK(bj["deterministic"] == true);
  CHECK(bj["prefill_segment"] == "auto");  // the wavefront prefill's setting (TTT_PREFILL_SEGMENT unset)
  // --saved: what the training forward keeps for backward, by op, largest first; attention saves
  // its inputs and output in every block.
  const auto& saved = bj["train"]["saved_by_op"];
  REQUIRE(saved.size() > 1);
  bool attention = false;
  for (size_t i = 0; i < saved.size(); ++i) {
    CHECK(saved[i]["bytes"].get<int64_t>() > 0);
    if (i > 0) CHECK(saved[i]["bytes"].get<int64_t>() <= saved[i - 1]["bytes"].get<int64_t>());
    attention = attention || saved[i]["op"] == "scaled_dot_product_attention";
  }
  CHECK(attention);
  for (const char* phase : {"train", "prefill"}) {
    CAPTURE(phase);
    REQUIRE(bj[phase].contains("reserved_memory_bytes"));
    CHECK(bj[phase]["reserved_memory_bytes"].get<double>() > 0);
    CHECK(bj[phase]["peak_memory_bytes"].get<double>() > 0);
  }
  // bench --contexts: prefill and decode latency per context, in the order given.
  auto bc = run_ttt("bench --config " + std::string(TTT_SOURCE_DIR) +
                    "/configs/tiny_ttt_linear.yaml --phases prefill,decode --contexts 24,16 --batch 2 --warmup 0 "
                    "--repeat 1 --decode-tokens 3 --profile --out " + kDir + "/bench_ctx.json");
  REQUIRE_MESSAGE(bc.code == 0, bc.output);
  auto bcj = nlohmann::json::parse(std::ifstream(kDir + "/bench_ctx.json"));
  REQUIRE(bcj["contexts"].size() == 2);
  CHECK(bcj["contexts"][0]["context"] == 24);
  CHECK(bcj["contexts"][1]["context"] == 16);
  for (const auto& row : bcj["contexts"]) {
    const double pre = row["prefill"]["time_s"].get<double>(), dec = row["decode"]["time_s"].get<double>();
    CHECK(pre > 0);
    CHECK(row["prefill"]["ms_per_token"].get<double>() == doctest::Approx(1e3 * pre / row["context"].get<double>()));
    CHECK(row["decode"]["new_tokens"] == 3);
    CHECK(row["decode"]["ms_per_token"].get<double>() == doctest::Approx(1e3 * dec / 3));
    CHECK(row["decode"]["tokens_per_s"].get<double>() == doctest::Approx(2 * 3 / dec));
    // --profile: the prefill runs the fused scan once per layer (2 blocks); each of the 3 single-token
    // decode steps after it runs the one-token decode kernel once per layer instead.
    const auto calls_of = [](const nlohmann::json& prof, const std::string& kernel) {
      for (const auto& k : prof["kernels"])
        if (k["kernel"] == kernel) return k["calls"].get<int64_t>();
      return int64_t{0};
    };
    CHECK(calls_of(row["prefill_profile"], "ttt_linear_scan_fwd") == 2);
    CHECK(row["decode_profile"]["backend_calls"].get<int64_t>() > 0);
    CHECK(calls_of(row["decode_profile"], "ttt_linear_scan_fwd") == 0);
    CHECK(calls_of(row["decode_profile"], "ttt_linear_decode_step") == 2 * 3);
  }
  CHECK(!bcj.contains("seq_len"));
  // --- generate: deterministic for a seed ---------------------------------------------------------
  const std::string gen = "generate --checkpoint " + ckpt + " --prompt 'the cat' --max-new-tokens 24 --top-k 20 ";
  auto g1 = run_ttt(gen + "--seed 3"), g2 = run_ttt(gen + "--seed 3");
  REQUIRE_MESSAGE(g1.code == 0, g1.output);
  auto text = [](const std::string& out) { return out.substr(0, out.find("\n[")); };  // drop the stats line
  CHECK(text(g1.output) == text(g2.output));
  CHECK(text(g1.output).rfind("the cat", 0) == 0);
  CHECK(text(g1.output).size() > std::string("the cat").size());
  // --prompts FILE: one batch, one JSON line per prompt in file order; a row's text is that of
  // --prompt alone with the same seed (rows sample from their own generator).
  {
    std::ofstream(kDir + "/prompts.txt") << "the cat\n\na dog sat on the mat and\n";
    auto gb = run_ttt("generate --checkpoint " + ckpt + " --prompts " + kDir +
                      "/prompts.txt --max-new-tokens 24 --top-k 20 --seed 3");
    REQUIRE_MESSAGE(gb.code == 0, gb.output);
    std::vector<nlohmann::json> rows;
    std::istringstream lines(gb.output);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line[0] == '{') rows.push_back(nlohmann::json::parse(line));
    REQUIRE(rows.size() == 2);
    CHECK(rows[0]["prompt"] == "the cat");
    CHECK(rows[1]["prompt"] == "a dog sat on the mat and");
    CHECK("the cat" + rows[0]["completion"].get<std::string>() == text(g1.output));
    CHECK(rows[1]["tokens"].get<int64_t>() > 0);
    auto both = run_ttt("generate --checkpoint " + ckpt + " --prompt x --prompts " + kDir + "/prompts.txt");
    CHECK(both.code != 0);
  }

  // --- stop at step 12, resume: the same losses as the uninterrupted run --------------------------
  const std::string run2 = kDir + "/run2";
  auto part = run_ttt(train_args(run2) + " --stop-at-step 12");
  REQUIRE_MESSAGE(part.code == 0, part.output);
  CHECK(part.output.find("interrupted at step 12") != std::string::npos);
  auto again = run_ttt(train_args(run2));
  CHECK(again.code != 0);
  CHECK(again.output.find("pass --resume") != std::string::npos);
  auto rest = run_ttt(train_args(run2) + " --resume");
  REQUIRE_MESSAGE(rest.code == 0, rest.output);
  auto rows2 = read_jsonl(run2 + "/metrics.jsonl");
  CHECK(column(rows2, "loss") == losses);
  CHECK(column(rows2, "val_loss") == val);

  // --- SIGTERM: checkpoint, exit code 0 -----------------------------------------------------------
  const std::string run3 = kDir + "/run3";
  const std::string script = std::string(TTT_BINARY_DIR) + "/bin/ttt " + train_args(run3) +
                             " --set train.steps=100000 > " + kDir + "/run3.out 2>&1 & pid=$!; "
                             "for i in $(seq 1 600); do [ -s " + run3 + "/metrics.jsonl ] && "
                             "[ $(wc -l < " + run3 + "/metrics.jsonl) -ge 3 ] && break; sleep 0.05; done; "
                             "kill -TERM $pid; wait $pid; exit $?";
  int status = std::system(("bash -c '" + script + "'").c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::ifstream out3(kDir + "/run3.out");
  std::string log3((std::istreambuf_iterator<char>(out3)), std::istreambuf_iterator<char>());
  CAPTURE(log3);
  CHECK(log3.find("interrupted at step") != std::string::npos);
  CHECK(log3.find("SIGTERM") != std::string::npos);
  const size_t at = log3.find("interrupted at step ");
  REQUIRE(at != std::string::npos);
  const long stopped = std::stol(log3.substr(at + 20));
  CHECK(stopped >= 3);
  CHECK(fs::exists(run3 + "/checkpoints/step_" + std::to_string(stopped) + ".h5"));
}
