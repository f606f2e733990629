// trainer/eval_windows.h — the windows `ttt eval` scores, and the evaluation loop both window
// protocols share (`ttt eval --windows packed|documents`).
//
//   packed     the validation split as one stream (documents packed, EOS after each), cut into
//              non-overlapping windows of L+1 tokens starting every L tokens: windows cross
//              document boundaries (the official TTT evaluation; not lm-eval's rolling windows,
//              which stay inside one document);
//   documents  each validation document on its own (its tokens and its EOS), cut the same way
//              from its first token; a document with fewer than L+1 tokens is skipped, and a
//              tail shorter than L+1 tokens is dropped (data/sampler.h, single-document mode).
//              No window crosses a document boundary, so the loss at token index t is the loss
//              after reading t tokens of one document (the papers' long-context protocol: Books
//              documents of at least the context length).
// In both, the model reads L tokens of a window with no state from other windows, and every
// next-token loss counts once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "trainer/eval.h"

namespace ttt {

class TokenDataset;

enum class WindowMode { packed, documents };
// "packed" | "documents", or throws naming --windows.
WindowMode window_mode_from_string(const std::string& s);
const char* window_mode_name(WindowMode m);
// One sentence stating the protocol (printed by `ttt eval` and stored in its JSON).
std::string window_protocol(WindowMode m);

struct EvalWindows {
  WindowMode mode = WindowMode::packed;
  int64_t context = 0;
  int64_t count = 0;                               // windows available
  std::function<Tensor(int64_t first, int64_t n)> rows;  // windows [first, first+n) as int64 [n, L+1]
  int64_t documents = 0, documents_skipped = 0;    // documents mode only
  std::string empty_message;                       // why count is 0 (a clause: "the validation data ...")
};

EvalWindows packed_windows(TokenSource& data, int64_t context);
EvalWindows document_windows(std::shared_ptr<const TokenDataset> val, int64_t context);

struct EvalOptions {
  int64_t max_windows = 0;         // 0 = all
  int64_t batch = 1;               // windows per call of the loss function
  int64_t buckets = 64;            // equal-width loss-by-position buckets
  int64_t buckets_per_octave = 4;  // log-spaced loss-by-token-index buckets
  const TokenText* text = nullptr; // the tokenizer's text, for bits per byte and word perplexity
};

// Scores the first max_windows windows. Throws "eval: " + w.empty_message when there is none.
ContextResult evaluate_windows(const TokenLossFn& fn, const EvalWindows& w, const EvalOptions& o);

// Log-spaced bucket edges over token indices 1..context: ceil(2^(j / per_octave)) for j = 0, 1,
// ... without duplicates, then context + 1.
std::vector<int64_t> log_bucket_edges(int64_t context, int64_t per_octave);

}  // namespace ttt
