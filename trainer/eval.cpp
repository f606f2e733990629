// trainer/eval.cpp — see eval.h for the protocol.
#include "trainer/eval.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "autograd/ops.h"
#include "trainer/eval_windows.h"

namespace ttt {

std::pair<Tensor, Tensor> split_inputs_targets(const Tensor& rows) {
  const int64_t T = rows.size(1) - 1;
  return {rows.narrow(1, 0, T).contiguous(), rows.narrow(1, 1, T).contiguous()};
}

ContextResult evaluate_context(const TokenLossFn& fn, TokenSource& data, int64_t context, int64_t max_windows,
                               int64_t batch, int64_t buckets) {
  EvalOptions o;
  o.max_windows = max_windows;
  o.batch = batch;
  o.buckets = buckets;
  return evaluate_windows(fn, packed_windows(data, context), o);
}

nlohmann::json context_result_json(const ContextResult& r) {
  nlohmann::json j = {{"context", r.context},
                      {"windows", r.windows},
                      {"tokens", r.tokens},
                      {"loss", r.loss},
                      {"ppl", r.ppl},
                      {"loss_by_position",
                       {{"bucket_size", r.bucket_size}, {"bucket_start", r.bucket_start}, {"loss", r.bucket_loss}}}};
  j["windows_mode"] = r.window_mode;
  j["loss_by_token_index"] = {{"buckets_per_octave", r.buckets_per_octave},
                              {"token_index_start", r.index_start},
                              {"token_index_end", r.index_end},
                              {"loss", r.index_loss}};
  if (r.window_mode == "documents") {
    j["documents"] = r.documents;
    j["documents_skipped"] = r.documents_skipped;
  }
  if (r.has_text) {
    // null (not NaN, which JSON cannot hold) when no byte or word was scored.
    auto finite_or_null = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    j["bits_per_byte"] = finite_or_null(r.text.bits_per_byte());
    j["word_perplexity"] = finite_or_null(r.text.word_perplexity());
    j["text"] = {{"tokens", r.text.tokens}, {"bytes", r.text.bytes}, {"words", r.text.words}, {"nll", r.text.nll}};
  }
  return j;
}

std::string format_eval_table(const std::vector<ContextResult>& results) {
  std::string out = " context   windows      tokens     loss        ppl   loss@first   loss@last   bits/byte    word ppl\n";
  char buf[200];
  for (const auto& r : results) {
    std::snprintf(buf, sizeof buf, "%8lld  %8lld  %10lld  %7.4f  %9.3f  %11.4f  %10.4f",
                  static_cast<long long>(r.context), static_cast<long long>(r.windows),
                  static_cast<long long>(r.tokens), r.loss, r.ppl, r.bucket_loss.front(), r.bucket_loss.back());
    out += buf;
    const double bpb = r.has_text ? r.text.bits_per_byte() : NAN, wppl = r.has_text ? r.text.word_perplexity() : NAN;
    if (std::isfinite(bpb) && std::isfinite(wppl))
      std::snprintf(buf, sizeof buf, "  %10.4f  %10.3f\n", bpb, wppl);
    else
      std::snprintf(buf, sizeof buf, "  %10s  %10s\n", "-", "-");
    out += buf;
  }
  return out;
}

}  // namespace ttt
