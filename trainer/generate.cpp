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
    Tensor logits = model.decode(input, *state);  // [1, T, V]
    const int64_t T = logits.size(1);
    std::vector<float> last = logits.select(1, T - 1).to(DType::f32).tolist<float>();
    const int64_t id = sample_token(last, o, g);
    out.push_back(id);
    if (on_token) on_token(id);
    if (id == o.stop_token) break;
    input = from_vector_i64({id}, {1, 1}).to(dev);
  }
  return out;
}

}  // namespace ttt
