// trainer/generate.h — sampling text from a language model.
//
// The prompt is consumed in one decode call (prefill: TTT-Linear layers run the fused scan, which
// leaves the decode state); then one token at a time, each decode call continuing the model's DecodeState: TTT layers update their hidden state in primal form (constant
// memory per token), attention appends to its KV cache.
//
// Sampling a token from logits (sample_token): temperature 0 = greedy (argmax, lowest id on ties);
// otherwise softmax(logits / temperature), keep the top_k most likely (0 = all), then the smallest
// set of most likely tokens whose probability reaches top_p (1 = all), renormalize and draw with
// one uniform number from the Philox generator. Ties in probability are ordered by token id, so a
// seed gives the same text on every run and device.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

class LanguageModel;

struct SamplingOptions {
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  int64_t max_new_tokens = 128;
  int64_t stop_token = -1;  // stop after emitting this id (e.g. EOS); -1 = never
};

// Throws std::invalid_argument naming the option when out of range.
void validate_sampling(const SamplingOptions& o);

// Draws one token id from `logits` (one row of V values); advances `g` by one draw.
int64_t sample_token(const std::vector<float>& logits, const SamplingOptions& o, Generator& g);

// Generates up to max_new_tokens after `prompt` (non-empty), calling on_token(id) as each arrives.
// Returns the new ids.
std::vector<int64_t> generate(LanguageModel& model, const std::vector<int64_t>& prompt, const SamplingOptions& o,
                              const std::function<void(int64_t)>& on_token = nullptr);

// Generates for several prompts (non-empty, any lengths) decoded as one batch, calling
// on_token(row, id) as each arrives; rows stop on their own (stop_token, max_new_tokens). Row r's
// ids are those generate(model, prompts[r], o) returns (each row samples from its own
// Generator(seed)), up to the rounding of batched kernels. Returns the new ids per row.
std::vector<std::vector<int64_t>> generate_batch(LanguageModel& model, const std::vector<std::vector<int64_t>>& prompts,
                                                 const SamplingOptions& o,
                                                 const std::function<void(size_t, int64_t)>& on_token = nullptr);

}  // namespace ttt
