// trainer/cli_eval.cpp — `ttt eval --checkpoint C [--data DIR] [--context 1024,2048,...]`:
// perplexity at each context length and loss by token position (protocol in trainer/eval.h and
// trainer/eval_windows.h); `--task niah` runs S-NIAH instead (trainer/cli_eval_niah.h).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "autograd/autocast.h"
#include "data/dataset.h"
#include "data/file_io.h"
#include "data/sha256.h"
#include "data/tokenizer.h"
#include "trainer/cli_common.h"
#include "trainer/cli_eval_niah.h"
#include "trainer/commands.h"
#include "trainer/eval.h"
#include "trainer/eval_windows.h"
#include "trainer/token_source.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

struct EvalArgs {
  std::string checkpoint, data_dir, out, device = "cpu", dtype = "fp32";
  std::vector<int64_t> contexts;
  int64_t max_windows = -1, batch = -1, buckets = -1;
  std::string task = "ppl", windows = "packed";
  int64_t buckets_per_octave = 4;
  NiahArgs niah;
  bool deterministic = false;
};

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

// The bytes and words of each token, for bits per byte and word perplexity; null (with a note)
// when no tokenizer is at hand.
std::unique_ptr<TokenText> eval_token_text(const LoadedModel& m, const std::string& checkpoint, const std::string& data_dir,
                                           const std::string& data_sha256) {
  try {
    Tokenizer tok = eval_tokenizer(m, checkpoint, data_dir);
    if (!data_sha256.empty() && tok.sha256() != data_sha256) throw std::invalid_argument("it is not the data's tokenizer");
    return std::make_unique<TokenText>(TokenText::from_tokenizer(tok, m.cfg.model.vocab_size));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "note: bits per byte and word perplexity not reported (%s)\n", e.what());
    return nullptr;
  }
}

void run_eval(const EvalArgs& a) {
  const Device dev = device_from_option(a.device);
  const WindowMode mode = window_mode_from_string(a.windows);
  set_deterministic(a.deterministic);
  LoadedModel m = load_model_from_checkpoint(a.checkpoint, dev);
  const RunConfig& cfg = m.cfg;
  const std::string out =
      a.out.empty() ? eval_default_out(a.checkpoint, m.meta.step, mode == WindowMode::documents ? "_documents" : "")
                    : a.out;
  check_writable(out, "eval report");  // before the evaluation, not after it
  const std::string data_dir = eval_data_dir(cfg, a.data_dir);
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
  std::shared_ptr<const TokenDataset> val;
  if (mode == WindowMode::documents) {
    if (!TokenDataset::has_split(data_dir, "val"))
      throw std::invalid_argument("--windows documents: '" + data_dir + "' has no validation shards (val_*.h5)");
    val = TokenDataset::open(data_dir, "val");
  }
  std::vector<EvalWindows> windows;  // every context checked before the first is evaluated
  for (int64_t L : contexts) {
    windows.push_back(mode == WindowMode::packed ? packed_windows(*data, L) : document_windows(val, L));
    if (windows.back().count == 0)
      throw std::invalid_argument("--context " + std::to_string(L) + ": " + windows.back().empty_message);
  }
  const std::unique_ptr<TokenText> text = eval_token_text(m, a.checkpoint, data_dir, data->tokenizer_sha256());
  LanguageModel& model = *m.model;
  // bf16: the training autocast (matmul/attention operands in bf16, fp32 accumulation, norms and
  // losses in fp32); fp32 (default) is the exact path.
  const bool amp = a.dtype == "bf16";
  TokenLossFn fn = [&](const Tensor& ids, const Tensor& targets) {
    AutocastGuard autocast(DType::bf16, amp);
    return model.token_losses(ids.to(dev), targets.to(dev)).to(cpu());
  };
  std::printf("protocol (%s windows): %s\n", window_mode_name(mode), window_protocol(mode).c_str());
  EvalOptions opt;
  opt.max_windows = max_windows;
  opt.batch = batch;
  opt.buckets = buckets;
  opt.buckets_per_octave = a.buckets_per_octave;
  opt.text = text.get();
  std::vector<ContextResult> results;
  for (const EvalWindows& w : windows) {
    results.push_back(evaluate_windows(fn, w, opt));
    std::fprintf(stderr, "context %lld: loss %.4f ppl %.3f (%lld windows)\n", static_cast<long long>(w.context),
                 results.back().loss, results.back().ppl, static_cast<long long>(results.back().windows));
    if (mode == WindowMode::documents)
      std::fprintf(stderr, "  from %lld documents; %lld shorter than %lld tokens skipped\n",
                   static_cast<long long>(w.documents), static_cast<long long>(w.documents_skipped),
                   static_cast<long long>(w.context + 1));
  }
  nlohmann::json j;
  j["checkpoint"] = a.checkpoint;
  j["step"] = m.meta.step;
  j["dtype"] = a.dtype;
  j["deterministic"] = a.deterministic;
  j["tokens_trained"] = m.meta.tokens;
  j["model"] = {{"name", cfg.name}, {"mixer", cfg.model.mixer}, {"backbone", cfg.model.backbone},
                {"parameters", model.num_parameters()}, {"train_seq_len", cfg.seq_len()}};
  j["protocol"] = {{"mode", window_protocol(mode)},
                   {"windows", window_mode_name(mode)},
                   {"text_units", text ? "bits_per_byte = sum of text-token losses / (ln 2 * bytes), word_perplexity = "
                                         "exp(sum / words); EOS targets excluded (trainer/text_units.h)"
                                       : "not reported: no tokenizer"},
                   {"loss_by_token_index", "log-spaced buckets of token indices (tokens read), buckets_per_octave per "
                                           "doubling"},
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
                  "JSON output (default: <run dir>/eval/step_N.json; step_N_documents.json with --windows documents, "
                  "step_N_niah.json with --task niah); a perplexity report there from the same evaluation keeps its "
                  "other contexts");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "fp32 (exact) or bf16 (autocast, as in training)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--task", a->task, "ppl (perplexity, default) or niah (RULER single-needle retrieval)")
      ->check(CLI::IsMember({"ppl", "niah"}));
  cmd->add_option("--windows", a->windows,
                  "packed (windows across documents, default) or documents (windows inside documents; JSON "
                  "step_N_documents.json)")
      ->check(CLI::IsMember({"packed", "documents"}));
  cmd->add_option("--log-buckets", a->buckets_per_octave, "Loss-by-token-index buckets per doubling of the index")
      ->check(cli::positive_int());
  add_niah_options(cmd, a->niah);
  cmd->add_flag("--deterministic", a->deterministic,
                "GPU kernels sum in a fixed order instead of with float atomics (as train.deterministic)");
  cmd->callback([a, cmd]() {
    // Options of the other task are mistakes, not silently ignored.
    const bool niah = a->task == "niah";
    for (const char* name : {"--windows", "--log-buckets", "--max-windows", "--buckets", "--niah-tasks", "--depths",
                             "--samples", "--niah-gen", "--prefill-chunk", "--seed", "--niah-split"}) {
      const bool niah_option = cmd->get_option(name)->get_group().rfind("S-NIAH", 0) == 0;
      if (cmd->get_option(name)->count() > 0 && niah_option != niah)
        throw std::invalid_argument(std::string(name) + " applies to --task " + (niah_option ? "niah" : "ppl") +
                                    ", not --task " + a->task);
    }
    if (niah) {
      set_deterministic(a->deterministic);
      run_niah_eval({a->checkpoint, a->data_dir, a->out, a->device, a->dtype, a->contexts, a->batch}, a->niah);
    } else {
      run_eval(*a);
    }
  });
}

}  // namespace ttt
