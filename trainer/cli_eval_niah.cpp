// trainer/cli_eval_niah.cpp — `ttt eval --task niah` (see cli_eval_niah.h, niah.h, niah_eval.h).
#include "trainer/cli_eval_niah.h"

#include <cstdio>
#include <filesystem>

#include "data/dataset.h"
#include "data/file_io.h"
#include "data/tokenizer.h"
#include "trainer/cli_common.h"
#include "trainer/niah_eval.h"

namespace fs = std::filesystem;

namespace ttt {

void add_niah_options(CLI::App* cmd, NiahArgs& a) {
  const std::string g = "S-NIAH (--task niah)";
  cmd->add_option("--niah-tasks", a.tasks,
                  "single_1 (noise haystack, word key, number), single_2 (text, word, number), single_3 (text, word, "
                  "uuid), or HAYSTACK/KEY/VALUE: noise|text / words|numbers|uuids; comma-separated")
      ->group(g);
  cmd->add_option("--depths", a.depths, "Needle depths in percent of the haystack, e.g. 0,25,50,75,100")
      ->delimiter(',')
      ->check(cli::number(0, 100))
      ->group(g);
  cmd->add_option("--samples", a.samples, "Samples per task, context and depth")->check(cli::positive_int())->group(g);
  cmd->add_option("--niah-gen", a.gen, "Tokens generated per sample (RULER: 128)")->check(cli::positive_int())->group(g);
  cmd->add_option("--prefill-chunk", a.prefill_chunk, "Prompt tokens per decode call")->check(cli::positive_int())->group(g);
  cmd->add_option("--seed", a.seed, "Seed of the samples (keys, values, haystack positions)")->check(cli::seed())->group(g);
  cmd->add_option("--niah-split", a.split, "Shard split the text haystack comes from")
      ->check(CLI::IsMember({"val", "train"}))
      ->group(g);
}

Tokenizer eval_tokenizer(const LoadedModel& m, const std::string& checkpoint, const std::string& data_dir) {
  if (m.meta.extras.count("tokenizer.model")) return tokenizer_for_checkpoint(m, checkpoint, "");
  const fs::path in_data = fs::path(data_dir) / "tokenizer.model";
  if (fs::exists(in_data)) return Tokenizer::load(in_data.string());
  throw std::invalid_argument("no tokenizer: checkpoint '" + checkpoint + "' holds none and '" + data_dir +
                              "' has no tokenizer.model");
}

std::string eval_data_dir(const RunConfig& cfg, const std::string& data_option) {
  const std::string data_dir = data_option.empty() ? cfg.data.dir : data_option;
  if (data_dir.empty()) throw std::invalid_argument("no data directory: pass --data DIR");
  if (data_option.empty() && !fs::is_directory(data_dir))
    throw std::invalid_argument("the checkpoint's data directory '" + data_dir + "' (data.dir" +
                                (fs::path(data_dir).is_relative() ? ", relative to where the run was started" : "") +
                                ") does not exist; pass --data DIR");
  return data_dir;
}

std::string eval_default_out(const std::string& checkpoint, int64_t step, const std::string& suffix) {
  fs::path dir = fs::absolute(checkpoint).parent_path();
  if (dir.filename() == "checkpoints") dir = dir.parent_path();
  return (dir / "eval" / ("step_" + std::to_string(step) + suffix + ".json")).string();
}

void run_niah_eval(const EvalCommon& c, const NiahArgs& a) {
  const Device dev = device_from_option(c.device);
  LoadedModel m = load_model_from_checkpoint(c.checkpoint, dev);
  const RunConfig& cfg = m.cfg;
  const std::string out = c.out.empty() ? eval_default_out(c.checkpoint, m.meta.step, "_niah") : c.out;
  check_writable(out, "eval report");  // before the evaluation, not after it
  const std::string data_dir = eval_data_dir(cfg, c.data_dir);
  if (!TokenDataset::has_split(data_dir, a.split))
    throw std::invalid_argument("--niah-split " + a.split + ": '" + data_dir + "' has no " + a.split + "_*.h5 shards");
  auto split = TokenDataset::open(data_dir, a.split);
  Tokenizer tok = eval_tokenizer(m, c.checkpoint, data_dir);
  if (!split->tokenizer_sha256().empty() && tok.sha256() != split->tokenizer_sha256())
    throw std::invalid_argument("the data in '" + data_dir + "' was tokenized with another tokenizer (sha256 " +
                                split->tokenizer_sha256().substr(0, 12) + ") than the checkpoint's (" +
                                tok.sha256().substr(0, 12) + ")");
  if (tok.vocab_size() > cfg.model.vocab_size)
    throw std::invalid_argument("the tokenizer's vocabulary (" + std::to_string(tok.vocab_size()) +
                                ") is larger than the model's (" + std::to_string(cfg.model.vocab_size) + ")");
  NiahOptions o;
  o.tasks = parse_niah_tasks(a.tasks);
  o.contexts = !c.contexts.empty() ? c.contexts : !cfg.eval.contexts.empty() ? cfg.eval.contexts : std::vector<int64_t>{cfg.seq_len()};
  o.depths = a.depths;
  o.samples = a.samples;
  o.gen = a.gen;
  o.batch = c.batch > 0 ? c.batch : cfg.eval.batch;
  NiahGenerator generator(tok, split, a.seed);
  GreedyFn greedy = model_greedy(*m.model, a.prefill_chunk, tok.eos_id(), c.dtype == "bf16", tok.vocab_size());
  auto records = run_niah(generator, tok, greedy, o, [](const std::string& task, int64_t context, int64_t correct, int64_t total) {
    std::fprintf(stderr, "niah %s context %lld: %lld/%lld correct\n", task.c_str(), static_cast<long long>(context),
                 static_cast<long long>(correct), static_cast<long long>(total));
  });
  nlohmann::json j = niah_results_json(records, o);
  j["task"] = "niah";
  j["checkpoint"] = c.checkpoint;
  j["step"] = m.meta.step;
  j["dtype"] = c.dtype;
  j["tokens_trained"] = m.meta.tokens;
  j["model"] = {{"name", cfg.name}, {"mixer", cfg.model.mixer}, {"backbone", cfg.model.backbone},
                {"parameters", m.model->num_parameters()}, {"train_seq_len", cfg.seq_len()}};
  j["protocol"] = {
      {"benchmark", "RULER S-NIAH (single needle), trainer/niah.h"},
      {"template", niah_prompt(NiahItem::numbers, "{haystack with needle}", "{key}")},
      {"needle", niah_needle(NiahItem::numbers, "{key}", "{value}")},
      {"noise_line", kNiahNoise},
      {"length", "each sample is exactly context - niah_gen tokens (filler from the data, EOS, prompt); prompt + "
                 "generated tokens <= context"},
      {"metric", "greedy generation of up to niah_gen tokens, cut at EOS; correct when the value occurs in it, case "
                 "ignored (RULER string_match_all)"},
      {"niah_gen", a.gen},
      {"samples_per_cell", a.samples},
      {"seed", a.seed},
      {"data", data_dir},
      {"split", a.split},
      {"tokenizer_sha256", tok.sha256()}};
  write_file_atomic(out, j.dump(2) + "\n", "eval report");
  std::printf("checkpoint %s (step %lld), data %s (%s split), S-NIAH accuracy (RULER):\n%s",
              c.checkpoint.c_str(), static_cast<long long>(m.meta.step), data_dir.c_str(), a.split.c_str(),
              format_niah_table(records, o).c_str());
  std::printf("per-sample results and protocol: %s\n", out.c_str());
  std::fflush(stdout);
}

}  // namespace ttt
