// trainer/cli_eval.cpp — `ttt eval --checkpoint C [--data DIR] [--context 1024,2048,...]`:
// perplexity at each context length and loss by token position (protocol in trainer/eval.h).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "autograd/autocast.h"
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
  bool deterministic = false;
};

void run_eval(const EvalArgs& a) {
  const Device dev = device_from_option(a.device);
  set_deterministic(a.deterministic);
  LoadedModel m = load_model_from_checkpoint(a.checkpoint, dev);
  const RunConfig& cfg = m.cfg;
  const std::string data_dir = a.data_dir.empty() ? cfg.data.dir : a.data_dir;
  if (data_dir.empty()) throw std::invalid_argument("no data directory: pass --data DIR");
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
  j["deterministic"] = a.deterministic;
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
  std::string out = a.out;
  if (out.empty()) {
    // <run_dir>/eval/step_N.json for a checkpoint in <run_dir>/checkpoints/, else eval/ beside it.
    fs::path dir = fs::absolute(a.checkpoint).parent_path();
    if (dir.filename() == "checkpoints") dir = dir.parent_path();
    out = (dir / "eval" / ("step_" + std::to_string(m.meta.step) + ".json")).string();
  }
  if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
  std::ofstream(out) << j.dump(2) << "\n";
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
  cmd->add_option("--data", a->data_dir, "Prepared data directory (default: the run's data.dir)");
  cmd->add_option("--context", a->contexts, "Context lengths, e.g. 1024,2048,4096 (default: eval.contexts)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-windows", a->max_windows, "Windows per context length (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", a->batch, "Windows per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("--buckets", a->buckets, "Loss-by-position buckets")->check(CLI::PositiveNumber);
  cmd->add_option("--out", a->out, "JSON output (default: <run dir>/eval/step_N.json)");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N");
  cmd->add_option("--dtype", a->dtype, "fp32 (exact, default) or bf16 (autocast, as in training)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_flag("--deterministic", a->deterministic,
                "GPU kernels sum in a fixed order instead of with float atomics (as train.deterministic)");
  cmd->callback([a]() { run_eval(*a); });
}

}  // namespace ttt
