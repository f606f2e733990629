// trainer/eval.h — perplexity by context length and loss by token position.
//
// Protocol (as the paper and the official code evaluate: ttt-lm-jax train.py --eval_mode): for a
// context length L, the validation stream is cut into non-overlapping windows of L+1 tokens
// (window k starts at k*L); the model reads L tokens and is scored on the next-token loss of
// every position, with no state carried between windows. The reported loss is the mean over all
// scored tokens of all windows; ppl = exp(loss). Loss by position averages, for each position
// p in [0, L), the loss of predicting token p+1 over the windows, then over `buckets` equal
// ranges of positions (the paper's "loss vs token index" view, Fig. 2 right), and in log-spaced
// buckets of token index. This is the packed protocol; trainer/eval_windows.h also has windows
// inside documents, and the loop both share (bits per byte and word perplexity: text_units.h).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "trainer/text_units.h"
#include "trainer/token_source.h"

namespace ttt {

// ids int64 [B, T], targets int64 [B, T] -> per-token losses float [B, T].
using TokenLossFn = std::function<Tensor(const Tensor& ids, const Tensor& targets)>;

struct ContextResult {
  int64_t context = 0;
  int64_t windows = 0;
  int64_t tokens = 0;         // scored tokens = windows x context
  double loss = 0;            // mean over every scored token
  double ppl = 0;
  int64_t bucket_size = 0;    // positions per bucket (the last bucket may be shorter)
  std::vector<int64_t> bucket_start;  // first position of each bucket
  std::vector<double> bucket_loss;    // mean loss of each bucket
  // Loss by token index in log-spaced buckets (the papers' log-x plots): bucket k averages the
  // loss at token indices [index_start[k], index_end[k]), where token index t = p + 1 is the
  // number of tokens read when predicting (t = 1 predicts the second token of the window). Bucket
  // edges are ceil(2^(j / per_octave)), duplicates dropped, last edge context + 1.
  int64_t buckets_per_octave = 0;
  std::vector<int64_t> index_start, index_end;
  std::vector<double> index_loss;
  // Which windows (trainer/eval_windows.h): "packed" or "documents"; documents mode also counts
  // the documents scored and those too short for one window.
  std::string window_mode = "packed";
  int64_t documents = 0, documents_skipped = 0;
  // Bytes and words of the scored text when the tokenizer is known (trainer/text_units.h).
  bool has_text = false;
  TextUnits text;
};

// Evaluates the first `max_windows` windows (0 = all) of length `context` in batches of `batch`.
// Throws when the validation data holds no window of that length.
ContextResult evaluate_context(const TokenLossFn& fn, TokenSource& data, int64_t context, int64_t max_windows,
                               int64_t batch, int64_t buckets);

// Splits tokens [rows, T+1] into inputs [:, :T] and targets [:, 1:] (contiguous).
std::pair<Tensor, Tensor> split_inputs_targets(const Tensor& rows);

nlohmann::json context_result_json(const ContextResult& r);
// The table printed by `ttt eval`.
std::string format_eval_table(const std::vector<ContextResult>& results);

}  // namespace ttt
