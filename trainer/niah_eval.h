// trainer/niah_eval.h — running S-NIAH (trainer/niah.h) over a grid of contexts x depths:
// batched greedy generation, RULER's metric, accuracy by depth and context as JSON and a table.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/niah.h"

namespace ttt {

class LanguageModel;

// Called after each generated token of a row with the ids so far; true stops that row.
using RowDoneFn = std::function<bool(size_t row, const std::vector<int64_t>& generated)>;
// Greedy continuations of equal-length prompts (one batch): up to max_new ids per row, a row
// stopping after `stop_token` or when done() says so.
using GreedyFn = std::function<std::vector<std::vector<int64_t>>(const std::vector<std::vector<int64_t>>& prompts,
                                                                 int64_t max_new, const RowDoneFn& done)>;

// GreedyFn of a model: the prompts are consumed in decode calls of at most prefill_chunk tokens
// (only the last position's logits are needed; chunks bound the [B, chunk, V] logits), then one
// token per call; argmax with the lowest id on ties (as sample_token at temperature 0). Rows that
// stopped keep being fed `stop_token` until every row has stopped. With bf16, decode runs under
// the training autocast.
// vocab > 0 restricts the choice to ids < vocab: a model whose embedding has more rows than the
// tokenizer has pieces (e.g. the 125M configs' 32000 on a smaller tokenizer) must not emit an id the
// tokenizer cannot decode.
GreedyFn model_greedy(LanguageModel& model, int64_t prefill_chunk, int64_t stop_token, bool bf16, int64_t vocab = 0);

struct NiahOptions {
  std::vector<NiahTask> tasks;
  std::vector<int64_t> contexts;
  std::vector<int64_t> depths;  // percent
  int64_t samples = 4;          // per (task, context, depth)
  int64_t gen = 128;            // tokens generated (RULER's tokens_to_generate for niah)
  int64_t batch = 8;
};

struct NiahRecord {
  NiahSample sample;  // tokens cleared after the run
  std::string prediction;
  bool correct = false;
};

// Generates every sample (in parallel, OpenMP), runs them in batches of the same context, scores them. The
// prediction of a row is cut at its EOS; a row stops early once it holds the value (the score
// cannot change after that). on_cell(task, context, correct, total) after each (task, context).
std::vector<NiahRecord> run_niah(const NiahGenerator& gen, const Tokenizer& tok, const GreedyFn& greedy, const NiahOptions& o,
                                 const std::function<void(const std::string&, int64_t, int64_t, int64_t)>& on_cell = {});

// {"tasks": [{name, haystack, key, value, contexts, depths, accuracy[depth][context],
//   accuracy_by_context, accuracy_by_depth, accuracy}], "cells": [...], "samples": [...]}
nlohmann::json niah_results_json(const std::vector<NiahRecord>& records, const NiahOptions& o);
// Per task: accuracy by depth (rows) and context (columns).
std::string format_niah_table(const std::vector<NiahRecord>& records, const NiahOptions& o);

}  // namespace ttt
