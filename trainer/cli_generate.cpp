// trainer/cli_generate.cpp — `ttt generate --checkpoint C --prompt TEXT [--max-new-tokens N
// --temperature T --top-k K --top-p P --seed S]`: streams sampled text to stdout.
// `--prompts FILE` instead: one prompt per non-empty line, decoded as one batch
// (generate_batch); one JSON line per prompt, in file order, {"prompt", "completion", "tokens"}.
//
// The prompt is preceded by EOS, the document separator the model saw in training (data prepare
// appends EOS to every document), so the prompt reads as the start of a new document.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "trainer/cli_common.h"
#include "trainer/commands.h"
#include "trainer/generate.h"

namespace ttt {

namespace {

struct GenerateArgs {
  std::string checkpoint, prompt, prompts_file, tokenizer, device = "cpu";
  SamplingOptions sampling;
  bool ignore_eos = false, no_cuda_graphs = false;
  bool prompt_given = false;  // --prompt was on the command line (it may be the empty text)
};

// The non-empty lines of the --prompts file, in order.
std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--prompts: cannot read '" + path + "'");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  if (out.empty()) throw std::invalid_argument("--prompts: '" + path + "' holds no prompt (one per non-empty line)");
  return out;
}

// EOS, then the text's tokens.
std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> prompt;
  if (tok.eos_id() >= 0) prompt.push_back(tok.eos_id());
  for (int id : tok.encode(text)) prompt.push_back(id);
  if (prompt.empty()) throw std::invalid_argument("--prompt is empty and the tokenizer has no EOS to start from");
  return prompt;
}

// --prompts: the whole file as one batch, one JSON line per prompt when all are done.
void generate_file(LanguageModel& model, const Tokenizer& tok, const std::string& path, const SamplingOptions& o) {
  const std::vector<std::string> texts = read_prompts(path);
  std::vector<std::vector<int64_t>> prompts;
  for (const std::string& t : texts) prompts.push_back(encode_prompt(tok, t));
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::vector<int64_t>> rows = generate_batch(model, prompts, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t generated = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<int64_t> ids = rows[r];
    generated += static_cast<int64_t>(ids.size());
    if (!ids.empty() && ids.back() == o.stop_token) ids.pop_back();
    const nlohmann::json line = {{"prompt", texts[r]}, {"completion", tok.decode(ids.data(), ids.size())},
                                 {"tokens", rows[r].size()}};
    std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  std::fflush(stdout);
  std::fprintf(stderr, "[%zu prompts, %lld tokens in %.2fs, %.1f tok/s; seed %llu]\n", rows.size(),
               static_cast<long long>(generated), s, static_cast<double>(generated) / std::max(s, 1e-9),
               static_cast<unsigned long long>(o.seed));
}

void run_generate(const GenerateArgs& a) {
  validate_sampling(a.sampling);
  if (a.prompt_given == !a.prompts_file.empty())
    throw std::invalid_argument("ttt generate: give exactly one of --prompt TEXT and --prompts FILE");
  const Device dev = device_from_option(a.device);
  LoadedModel m = load_model_from_checkpoint(a.checkpoint, dev);
  m.model->set_decode_graphs(!a.no_cuda_graphs);
  Tokenizer tok = tokenizer_for_checkpoint(m, a.checkpoint, a.tokenizer);
  if (tok.vocab_size() > m.cfg.model.vocab_size)
    throw std::invalid_argument("tokenizer vocabulary (" + std::to_string(tok.vocab_size()) +
                                ") is larger than the model's (" + std::to_string(m.cfg.model.vocab_size) + ")");
  SamplingOptions o = a.sampling;
  o.stop_token = a.ignore_eos ? -1 : tok.eos_id();
  if (!a.prompts_file.empty()) return generate_file(*m.model, tok, a.prompts_file, o);
  const std::vector<int64_t> prompt = encode_prompt(tok, a.prompt);

  // The prompt (without the EOS) and the continuation go through one incremental decoder: text is
  // printed as soon as it is final, and all of it equals decoding every id at once.
  StreamDecoder text(tok);
  auto print = [](const std::string& piece) {
    if (piece.empty()) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  for (size_t i = tok.eos_id() >= 0 ? 1 : 0; i < prompt.size(); ++i) print(text.push(prompt[i]));
  int64_t generated = 0;
  const auto t0 = std::chrono::steady_clock::now();
  generate(*m.model, prompt, o, [&](int64_t id) {
    ++generated;
    if (id != o.stop_token) print(text.push(id));
  });
  print(text.finish());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n");
  std::fflush(stdout);  // the text first, then the statistics on stderr
  std::fprintf(stderr, "[%lld tokens in %.2fs, %.1f tok/s; checkpoint step %lld, seed %llu]\n",
               static_cast<long long>(generated), s, static_cast<double>(generated) / std::max(s, 1e-9), static_cast<long long>(m.meta.step),
               static_cast<unsigned long long>(o.seed));
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Sample text from a checkpoint");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint file")->required()->check(CLI::ExistingFile);
  auto* one = cmd->add_option("--prompt", a->prompt, "Text to continue");
  auto* many = cmd->add_option("--prompts", a->prompts_file,
                               "File of prompts, one per non-empty line, decoded as one batch (JSON lines out)")
                   ->check(CLI::ExistingFile);
  one->excludes(many);
  cmd->add_option("--max-new-tokens", a->sampling.max_new_tokens, "Tokens to generate")->capture_default_str()->check(cli::non_negative_int());
  cmd->add_option("--temperature", a->sampling.temperature, "Softmax temperature (0 = greedy)")->capture_default_str()
      ->check(cli::number(0, std::numeric_limits<double>::infinity(), /*integer=*/false));
  cmd->add_option("--top-k", a->sampling.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str()
      ->check(cli::non_negative_int());
  cmd->add_option("--top-p", a->sampling.top_p, "Nucleus sampling: smallest set with this probability (1 = all)")->capture_default_str()
      ->check(cli::number(0, 1, /*integer=*/false));
  cmd->add_option("--seed", a->sampling.seed, "Sampling seed (same seed, same text)")->capture_default_str()->check(cli::seed());
  cmd->add_option("--tokenizer", a->tokenizer, "Sentencepiece model (default: the one stored in the checkpoint)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past the end-of-document token");
  cmd->add_flag("--no-cuda-graphs", a->no_cuda_graphs,
                "Run every decode step eagerly (default: on a GPU, one-token steps replay CUDA graphs where the model allows)");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->callback([a, one]() {
    a->prompt_given = one->count() > 0;
    run_generate(*a);
  });
}

}  // namespace ttt
