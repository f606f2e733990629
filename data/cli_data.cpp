// data/cli_data.cpp — `ttt tokenizer train`, `ttt data prepare`, `ttt data info`.
// Each command is a thin layer over the library functions (tokenizer.h, prepare.h, dataset.h);
// errors are thrown and printed by main() as one line with a non-zero exit.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>

#include "data/cli_checks.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/progress.h"
#include "data/tokenizer.h"
#include "trainer/commands.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

int default_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

// CLI11 binds options to variables that must outlive parse(); each command keeps its options in a
// shared_ptr captured by its callback.
void add_tokenizer_train(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("train", "Train a sentencepiece BPE tokenizer (byte fallback, Llama-style ids)");
  auto o = std::make_shared<TokenizerTrainOptions>();
  o->threads = default_threads();
  cmd->add_option("--input", o->inputs, "Text files, globs or directories (.txt, .jsonl, .jsonl.zst)")->required();
  cmd->add_option("--vocab-size", o->vocab_size, "Number of pieces")->required()->check(cli::number(260, 1 << 30));
  cmd->add_option("--out", o->out, "Where to write the .model file")->required();
  cmd->add_option("--character-coverage", o->character_coverage, "Fraction of characters covered by pieces")
      ->default_val(o->character_coverage)->check(cli::number(0.5, 1.0, /*integer=*/false));
  cmd->add_option("--max-sentences", o->max_sentences, "Lines sampled for training when the input has more")
      ->default_val(o->max_sentences)->check(cli::positive_int());
  cmd->add_option("--threads", o->threads, "Trainer threads")->default_val(o->threads)->check(cli::positive_int());
  cmd->add_flag("--skip-bad", o->skip_bad, "Skip malformed records instead of stopping");
  cmd->add_flag("--overwrite", o->overwrite, "Replace an existing --out file");
  cmd->callback([o] {
    int64_t lines = train_tokenizer(*o);
    Tokenizer t = Tokenizer::load(o->out);
    std::printf("wrote %s: %lld pieces, trained on %lld lines, sha256 %s\n", o->out.c_str(),
                static_cast<long long>(t.vocab_size()), static_cast<long long>(lines), t.sha256().c_str());
  });
}

void add_prepare(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("prepare", "Tokenize text into HDF5 token shards (train_*.h5, val_*.h5)");
  auto o = std::make_shared<PrepareOptions>();
  o->threads = default_threads();
  cmd->add_option("--input", o->inputs, "Text files, globs or directories (.txt, .jsonl, .jsonl.zst)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "sentencepiece .model")->required();
  cmd->add_option("--out", o->out_dir, "Output directory")->required();
  auto* vd = cmd->add_option("--val-docs", o->val_docs, "Number of validation documents (spread evenly)")
                 ->check(cli::non_negative_int());
  auto* vf = cmd->add_option("--val-fraction", o->val_fraction,
                             "Fraction of documents for validation (default 0.0005, at least 1)")
                 ->check(cli::number(0, 1, /*integer=*/false));
  vd->excludes(vf);
  cmd->add_option("--shard-tokens", o->shard_tokens, "Tokens per shard (documents are never split)")
      ->default_val(o->shard_tokens)->check(cli::positive_int());
  cmd->add_option("--threads", o->threads, "Tokenizer threads")->default_val(o->threads)->check(cli::positive_int());
  cmd->add_flag("--skip-bad", o->skip_bad, "Skip malformed records / invalid UTF-8 and count them instead of stopping");
  cmd->add_flag("--overwrite", o->overwrite, "Replace an existing output directory");
  // Progress goes to stderr and the summary to stdout, so `> log` keeps just the summary.
  auto quiet = std::make_shared<bool>(false);
  cmd->add_flag("--quiet", *quiet, "No progress output");
  cmd->callback([o, quiet] {
    o->progress = !*quiet;
    PrepareSummary s = prepare_dataset(*o);
    double secs = s.scan_seconds + s.tokenize_seconds;
    std::printf("prepared %s from %s of input\n", o->out_dir.c_str(), human_bytes(double(s.input_bytes)).c_str());
    std::printf("  train: %lld documents, %lld tokens\n", static_cast<long long>(s.train_docs),
                static_cast<long long>(s.train_tokens));
    std::printf("  val:   %lld documents, %lld tokens\n", static_cast<long long>(s.val_docs),
                static_cast<long long>(s.val_tokens));
    if (s.bad_skipped || s.empty_skipped)
      std::printf("  skipped: %lld bad records, %lld empty documents\n", static_cast<long long>(s.bad_skipped),
                  static_cast<long long>(s.empty_skipped));
    std::printf("  time: %.2f s (scan %.2f s, tokenize+write %.2f s), %.0f tokens/s overall, %.0f tokens/s tokenizing, "
                "%d threads\n",
                secs, s.scan_seconds, s.tokenize_seconds, double(s.tokens()) / std::max(secs, 1e-9),
                double(s.tokens()) / std::max(s.tokenize_seconds, 1e-9), o->threads);
  });
}

// One line of counts per split, then the longest documents and, on request, a full verification.
void print_split(const TokenDataset& ds, int top, bool verify) {
  const ShardInfo& s0 = ds.shard(0);
  std::printf("%-5s  %zu shard%s  %lld documents  %lld tokens (%s)  token dtype %s\n", ds.split().c_str(),
              ds.num_shards(), ds.num_shards() == 1 ? "" : "s", static_cast<long long>(ds.num_docs()),
              static_cast<long long>(ds.num_tokens()), human_count(double(ds.num_tokens())).c_str(),
              s0.token_type == TokenType::u16 ? "uint16" : "uint32");
  if (top > 0) {
    // The `top` longest documents, kept in a min-heap while the offsets stream by.
    using Entry = std::pair<int64_t, int64_t>;  // (length, doc)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
    ds.for_each_doc([&](int64_t d, int64_t b, int64_t e) {
      heap.emplace(e - b, -d);  // -d: among equal lengths keep the earlier document
      if (static_cast<int>(heap.size()) > top) heap.pop();
    });
    std::vector<Entry> longest;
    for (; !heap.empty(); heap.pop()) longest.push_back(heap.top());
    std::reverse(longest.begin(), longest.end());
    std::printf("  longest documents (tokens incl. EOS):");
    for (const auto& [len, negd] : longest) std::printf("  #%lld: %lld", static_cast<long long>(-negd), static_cast<long long>(len));
    std::printf("\n");
  }
  if (verify) {
    Progress prog("verifying " + ds.split(), ds.num_tokens(), true);
    ds.verify([&](int64_t done) { prog.update(done, ds.num_docs(), done); });
    prog.finish();
    std::printf("  verified: all %lld tokens readable (checksums), in the vocabulary, every document ends with EOS\n",
                static_cast<long long>(ds.num_tokens()));
  }
}

void add_info(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("info", "Show a prepared data directory: counts, longest documents, tokenizer");
  auto dir = std::make_shared<std::string>();
  auto top = std::make_shared<int>(5);
  auto verify = std::make_shared<bool>(false);
  cmd->add_option("dir", *dir, "Directory written by `ttt data prepare`")->required();
  cmd->add_option("--top", *top, "How many of the longest documents to list")->default_val(5)->check(cli::non_negative_int());
  cmd->add_flag("--verify", *verify, "Read every token and check it (checksums, vocabulary, EOS placement)");
  cmd->callback([dir, top, verify] {
    auto train = TokenDataset::open(*dir, "train");
    const ShardInfo& s = train->shard(0);
    std::printf("data: %s\n", dir->c_str());
    std::printf("tokenizer: %s, sha256 %s, vocab %lld, EOS id %lld", s.tokenizer_file.c_str(), s.tokenizer_sha256.c_str(),
                static_cast<long long>(s.vocab_size), static_cast<long long>(s.eos_id));
    // The copy of the tokenizer that prepare keeps beside the shards, checked against them.
    fs::path model = fs::path(*dir) / "tokenizer.model";
    if (fs::exists(model)) {
      Tokenizer tok = Tokenizer::load(model.string());
      bool same = tok.sha256() == s.tokenizer_sha256;
      std::printf(" (%s)\n  copy: %s%s", tok.piece(static_cast<int>(s.eos_id)).c_str(), model.string().c_str(),
                  same ? " (checksum matches)" : " (CHECKSUM DIFFERS from the shards)");
    }
    std::printf("\n");
    auto sources = nlohmann::json::parse(s.sources_json, nullptr, false);
    if (sources.is_array()) {
      std::printf("sources (%zu):", sources.size());
      for (size_t i = 0; i < sources.size() && i < 8; ++i) std::printf(" %s", sources[i].get<std::string>().c_str());
      std::printf("%s\n", sources.size() > 8 ? " ..." : "");
    }
    print_split(*train, *top, *verify);
    if (TokenDataset::has_split(*dir, "val")) {
      auto val = TokenDataset::open(*dir, "val");
      if (val->tokenizer_sha256() != train->tokenizer_sha256() || val->vocab_size() != train->vocab_size())
        throw std::runtime_error(*dir + ": the val shards were made with another tokenizer than the train shards");
      print_split(*val, *top, *verify);
    } else {
      std::printf("val    (none)\n");
    }
  });
}

}  // namespace

void add_data_commands(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenizer", "Tokenizer tools");
  tok->require_subcommand(1);
  add_tokenizer_train(*tok);
  auto* data = app.add_subcommand("data", "Prepare and inspect tokenized data");
  data->require_subcommand(1);
  add_prepare(*data);
  add_info(*data);
}

}  // namespace ttt
