// trainer/generate.cpp — see generate.h.
#include "trainer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "autograd/ops.h"
#include "layers/language_model.h"

namespace ttt {

void validate_sampling(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw std::invalid_argument("--temperature must be >= 0 (0 = greedy), got " + std::to_string(o.temperature));
  if (o.top_k < 0) throw std::invalid_argument("--top-k must be >= 0 (0 = off), got " + std::to_string(o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1)) throw std::invalid_argument("--top-p must be in (0, 1], got " + std::to_string(o.top_p));
  if (o.max_new_tokens < 0) throw std::invalid_argument("--max-new-tokens must be >= 0");
}

int64_t sample_token(const std::vector<float>& logits, const SamplingOptions& o, Generator& g) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (V == 0) throw std::invalid_argument("sample_token: empty logits");
  if (o.temperature == 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  // Candidates by decreasing logit (= decreasing probability), ties by id.
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  const double mx = logits[order[0]];
  std::vector<double> p(static_cast<size_t>(keep));
  double z = 0;
  for (int64_t i = 0; i < keep; ++i) z += p[i] = std::exp((logits[order[i]] - mx) / o.temperature);
  if (o.top_p < 1) {
    // Nucleus over the top-k distribution: smallest prefix whose mass reaches top_p.
    double c = 0;
    int64_t n = 0;
    while (n < keep) {
      c += p[n++] / z;
      if (c >= o.top_p) break;
    }
    keep = n;
    z = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  const double u = rand({1}, g).item() * z;
  double c = 0;
  for (int64_t i = 0; i < keep; ++i) {
    c += p[i];
    if (u < c) return order[i];
  }
  return order[keep - 1];  // u rounded up to the total
}

std::vector<int64_t> generate(LanguageModel& model, const std::vector<int64_t>& prompt, const SamplingOptions& o,
                              const std::function<void(int64_t)>& on_token) {
  validate_sampling(o);
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must hold at least one token");
  NoGradGuard ng;
  Generator g(o.seed);
  Device dev = model.named_parameters().front().second.device();
  auto state = model.init_decode(1);
  Tensor input = from_vector_i64(prompt, {1, static_cast<int64_t>(prompt.size())}).to(dev);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    Tensor logits = model.decode(input, *state, /*last_only=*/true);  // [1, 1, V]
    std::vector<float> last = logits.select(1, 0).to(DType::f32).tolist<float>();
    const int64_t id = sample_token(last, o, g);
    out.push_back(id);
    if (on_token) on_token(id);
    if (id == o.stop_token) break;
    input = from_vector_i64({id}, {1, 1}).to(dev);
  }
  return out;
}

// The batch runs in lockstep: the common prefix length P = the shortest prompt is one prefill
// call; after it every row is fed the rest of its own prompt one token per call (those logits are
// not sampled), then its sampled tokens. A row's logits are those of decoding its prompt alone, so
// with its own Generator(seed) a row's tokens are those generate() gives for that prompt.
std::vector<std::vector<int64_t>> generate_batch(LanguageModel& model, const std::vector<std::vector<int64_t>>& prompts,
                                                 const SamplingOptions& o,
                                                 const std::function<void(size_t, int64_t)>& on_token) {
  validate_sampling(o);
  if (prompts.empty()) throw std::invalid_argument("generate: no prompt given");
  size_t P = prompts[0].size();
  for (const auto& p : prompts) {
    if (p.empty()) throw std::invalid_argument("generate: every prompt must hold at least one token");
    P = std::min(P, p.size());
  }
  const size_t B = prompts.size();
  std::vector<std::vector<int64_t>> out(B);
  if (o.max_new_tokens == 0) return out;
  NoGradGuard ng;
  std::vector<Generator> gens;
  for (size_t r = 0; r < B; ++r) gens.emplace_back(o.seed);
  const Device dev = model.named_parameters().front().second.device();
  auto state = model.init_decode(static_cast<int64_t>(B));
  std::vector<int64_t> flat;
  for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.begin() + static_cast<std::ptrdiff_t>(P));
  Tensor logits = model.decode(from_vector_i64(flat, {static_cast<int64_t>(B), static_cast<int64_t>(P)}).to(dev), *state,
                               /*last_only=*/true);  // [B, 1, V]
  std::vector<bool> done(B, false);
  for (size_t t = P;; ++t) {  // t: tokens consumed per row so far
    const std::vector<float> all = logits.to(DType::f32).to(cpu()).tolist<float>();
    const size_t V = all.size() / B;
    std::vector<int64_t> next(B);
    bool all_done = true;
    for (size_t r = 0; r < B; ++r) {
      auto& row = out[r];
      if (t < prompts[r].size()) {
        next[r] = prompts[r][t];  // still reading its prompt
      } else if (done[r]) {
        next[r] = row.empty() ? prompts[r].back() : row.back();  // keeps the batch in step; ignored
      } else {
        const std::vector<float> last(all.begin() + static_cast<std::ptrdiff_t>(r * V),
                                      all.begin() + static_cast<std::ptrdiff_t>((r + 1) * V));
        const int64_t id = sample_token(last, o, gens[r]);
        row.push_back(id);
        if (on_token) on_token(r, id);
        next[r] = id;
        done[r] = id == o.stop_token || static_cast<int64_t>(row.size()) == o.max_new_tokens;
      }
      all_done = all_done && done[r];
    }
    if (all_done) break;
    logits = model.decode(from_vector_i64(next, {static_cast<int64_t>(B), 1}).to(dev), *state);
  }
  return out;
}

}  // namespace ttt
