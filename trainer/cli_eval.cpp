// trainer/cli_eval.cpp — `ttt eval --checkpoint C [--data DIR] [--context 1024,2048,...]`:
// perplexity at each context length and loss by token position (protocol in trainer/eval.h).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "autograd/autocast.h"
#include "data/file_io.h"
#include "data/sha256.h"
#include "trainer/cli_common.h"
#include "trainer/commands.h"
#include "trainer/eval.h"
#include "trainer/token_source.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

struct EvalArgs {
  std::string checkpoint, data_dir, out, device = "cpu", dtype = "fp32";
  std::vector<int64_t> contexts;
  int64_t max_windows = -1, batch = -1, buckets = -1;
};

// <run_dir>/eval/step_N.json for a checkpoint in <run_dir>/checkpoints/, else eval/ beside it.
std::string default_out(const std::string& checkpoint, int64_t step) {
  fs::path dir = fs::absolute(checkpoint).parent_path();
  if (dir.filename() == "checkpoints") dir = dir.parent_path();
  return (dir / "eval" / ("step_" + std::to_string(step) + ".json")).string();
}

// A report already at `out` keeps the contexts this run did not evaluate when it describes the
// same evaluation (checkpoint step, dtype, protocol: data, tokenizer, windows); results of
// another evaluation are replaced, and said so. `report` is updated in place.
void merge_with_existing(nlohmann::json& report, const std::string& out) {
  std::error_code ec;
  if (!fs::is_regular_file(out, ec)) return;
  std::ifstream in(out);
  nlohmann::json old = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::string differs;
  if (old.is_discarded() || !old.is_object() || !old.contains("results") || !old["results"].is_array()) differs = "not an eval report";
  else if (old.value("step", int64_t{-1}) != report["step"].get<int64_t>()) differs = "another checkpoint step";
  else if (old.value("dtype", std::string()) != report["dtype"].get<std::string>()) differs = "another --dtype";
  else if (old.value("protocol", nlohmann::json()) != report["protocol"]) differs = "another data set or protocol";
  if (!differs.empty()) {
    std::fprintf(stderr, "replacing %s: it held %s\n", out.c_str(), differs.c_str());
    return;
  }
  std::map<int64_t, nlohmann::json> by_context;
  for (const auto& r : old["results"]) by_context[r.value("context", int64_t{0})] = r;
  for (const auto& r : report["results"]) by_context[r["context"].get<int64_t>()] = r;  // new results win
  report["results"] = nlohmann::json::array();
  for (auto& [ctx, r] : by_context) report["results"].push_back(r);
}

void run_eval(const EvalArgs& a) {
  const Device dev = device_from_option(a.device);
  LoadedModel m = load_model_from_checkpoint(a.checkpoint, dev);
  const RunConfig& cfg = m.cfg;
  const std::string out = a.out.empty() ? default_out(a.checkpoint, m.meta.step) : a.out;
  check_writable(out, "eval report");  // before the evaluation, not after it
  const std::string data_dir = a.data_dir.empty() ? cfg.data.dir : a.data_dir;
  if (data_dir.empty()) throw std::invalid_argument("no data directory: pass --data DIR");
  if (a.data_dir.empty() && !fs::is_directory(data_dir))
    throw std::invalid_argument("the checkpoint's data directory '" + data_dir + "' (data.dir" +
                                (fs::path(data_dir).is_relative() ? ", relative to where the run was started" : "") +
                                ") does not exist; pass --data DIR");
  auto data = open_shard_source(data_dir, 0);
  // The checkpoint's tokenizer (if stored) must be the one the evaluation data was made with.
  std::string ckpt_tok;
  if (m.meta.extras.count("tokenizer.model")) ckpt_tok = sha256_hex(m.meta.extras.at("tokenizer.model"));
  if (!ckpt_tok.empty() && !data->tokenizer_sha256().empty() && ckpt_tok != data->tokenizer_sha256())
    throw std::invalid_argument("the data in '" + data_dir + "' was tokenized with another tokenizer (sha256 " +
                                data->tokenizer_sha256().substr(0, 12) + ") than the checkpoint's (" +
                                ckpt_tok.substr(0, 12) + ")");
  if (data->vocab_size() > cfg.model.vocab_size)
    throw std::invalid_argument("the data's vocabulary (" + std::to_string(data->vocab_size()) +
                                ") is larger than the model's (" + std::to_string(cfg.model.vocab_size) + ")");
  std::vector<int64_t> contexts = !a.contexts.empty() ? a.contexts
                                  : !cfg.eval.contexts.empty() ? cfg.eval.contexts
                                                               : std::vector<int64_t>{cfg.seq_len()};
  const int64_t max_windows = a.max_windows >= 0 ? a.max_windows : cfg.eval.max_windows;
  const int64_t batch = a.batch > 0 ? a.batch : cfg.eval.batch;
  const int64_t buckets = a.buckets > 0 ? a.buckets : cfg.eval.position_buckets;
  LanguageModel& model = *m.model;
  // bf16: the training autocast (matmul/attention operands in bf16, fp32 accumulation, norms and
  // losses in fp32); fp32 (default) is the exact path.
  const bool amp = a.dtype == "bf16";
  TokenLossFn fn = [&](const Tensor& ids, const Tensor& targets) {
    AutocastGuard autocast(DType::bf16, amp);
    return model.token_losses(ids.to(dev), targets.to(dev)).to(cpu());
  };
  for (int64_t L : contexts)  // every context checked before the first is evaluated
    if (data->val_windows(L) == 0)
      throw std::invalid_argument("--context " + std::to_string(L) + ": the validation data (" + data->describe() +
                                  ") holds no window of that length plus one token");
  std::vector<ContextResult> results;
  for (int64_t L : contexts) {
    results.push_back(evaluate_context(fn, *data, L, max_windows, batch, buckets));
    std::fprintf(stderr, "context %lld: loss %.4f ppl %.3f (%lld windows)\n", static_cast<long long>(L),
                 results.back().loss, results.back().ppl, static_cast<long long>(results.back().windows));
  }
  nlohmann::json j;
  j["checkpoint"] = a.checkpoint;
  j["step"] = m.meta.step;
  j["dtype"] = a.dtype;
  j["tokens_trained"] = m.meta.tokens;
  j["model"] = {{"name", cfg.name}, {"mixer", cfg.model.mixer}, {"backbone", cfg.model.backbone},
                {"parameters", model.num_parameters()}, {"train_seq_len", cfg.seq_len()}};
  j["protocol"] = {{"mode", "non-overlapping windows of context+1 tokens over the validation split, packed "
                            "across documents; no state carried between windows; loss averaged over every "
                            "predicted token; ppl = exp(loss)"},
                   {"stride", "context"},
                   {"data", data_dir},
                   {"tokenizer_sha256", data->tokenizer_sha256()},
                   {"max_windows", max_windows}};
  j["results"] = nlohmann::json::array();
  for (const auto& r : results) j["results"].push_back(context_result_json(r));
  merge_with_existing(j, out);
  write_file_atomic(out, j.dump(2) + "\n", "eval report");
  std::printf("checkpoint %s (step %lld), data %s\n%s", a.checkpoint.c_str(), static_cast<long long>(m.meta.step),
              data_dir.c_str(), format_eval_table(results).c_str());
  std::printf("loss by position and protocol: %s\n", out.c_str());
  std::fflush(stdout);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Perplexity by context length and loss by token position");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint file (runs/X/checkpoints/step_N.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", a->data_dir, "Prepared data directory (default: the checkpoint's data.dir)");
  cmd->add_option("--context", a->contexts, "Context lengths, e.g. 1024,2048,4096 (default: the checkpoint's eval.contexts, else its training context)")
      ->delimiter(',')
      ->check(cli::positive_int());
  cmd->add_option("--max-windows", a->max_windows, "Windows per context length, 0 = all (default: the checkpoint's eval.max_windows)")
      ->check(cli::non_negative_int());
  cmd->add_option("--batch", a->batch, "Windows per forward pass (default: the checkpoint's eval.batch)")->check(cli::positive_int());
  cmd->add_option("--buckets", a->buckets, "Loss-by-position buckets (default: the checkpoint's eval.position_buckets)")
      ->check(cli::positive_int());
  cmd->add_option("--out", a->out,
                  "JSON output (default: <run dir>/eval/step_N.json); contexts already in it from the same "
                  "evaluation are kept");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "fp32 (exact) or bf16 (autocast, as in training)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->callback([a]() { run_eval(*a); });
}

}  // namespace ttt
