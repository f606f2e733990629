// trainer/eval_windows.cpp — see eval_windows.h.
#include "trainer/eval_windows.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "autograd/ops.h"
#include "data/dataset.h"
#include "data/sampler.h"

namespace ttt {

namespace {

void check_context(int64_t context) {
  if (context < 1) throw std::invalid_argument("eval: context length must be >= 1, got " + std::to_string(context));
}

// "L+1" for the messages; context + 1 computed only where it cannot overflow
// (--context 9223372036854775807 reaches the "no window" message).
std::string window_tokens(int64_t context) {
  return context < INT64_MAX ? std::to_string(context + 1) : std::to_string(context) + " + 1";
}

// Mean of pos_sum over positions [lo, hi) and n windows.
double bucket_mean(const std::vector<double>& pos_sum, int64_t lo, int64_t hi, int64_t n) {
  double s = 0;
  for (int64_t p = lo; p < hi; ++p) s += pos_sum[static_cast<size_t>(p)];
  return s / static_cast<double>((hi - lo) * n);
}

}  // namespace

WindowMode window_mode_from_string(const std::string& s) {
  if (s == "packed") return WindowMode::packed;
  if (s == "documents") return WindowMode::documents;
  throw std::invalid_argument("--windows: expected packed or documents, got '" + s + "'");
}

const char* window_mode_name(WindowMode m) { return m == WindowMode::packed ? "packed" : "documents"; }

std::string window_protocol(WindowMode m) {
  if (m == WindowMode::packed)
    return "non-overlapping windows of context+1 tokens over the validation split, packed across documents; "
           "no state carried between windows; loss averaged over every predicted token; ppl = exp(loss)";
  return "each validation document on its own (its tokens and its EOS), cut into non-overlapping windows of "
         "context+1 tokens from its first token; documents shorter than context+1 tokens are skipped and tails "
         "shorter than context+1 dropped, so no window crosses a document boundary; no state carried between "
         "windows; loss averaged over every predicted token; ppl = exp(loss)";
}

EvalWindows packed_windows(TokenSource& data, int64_t context) {
  check_context(context);
  EvalWindows w;
  w.mode = WindowMode::packed;
  w.context = context;
  w.count = data.val_windows(context);
  w.rows = [&data, context](int64_t first, int64_t n) { return data.val_rows(context, first, n); };
  w.empty_message = "the validation data (" + data.describe() + ") holds no window of " +
                    window_tokens(context) + " tokens (context " + std::to_string(context) + ")";
  return w;
}

EvalWindows document_windows(std::shared_ptr<const TokenDataset> val, int64_t context) {
  check_context(context);
  EvalWindows w;
  w.mode = WindowMode::documents;
  w.context = context;
  val->for_each_doc([&](int64_t, int64_t begin, int64_t end) { (end - begin > context ? w.documents : w.documents_skipped)++; });
  w.empty_message = "no validation document of " + val->dir() + " has " + window_tokens(context) +
                    " tokens (context " + std::to_string(context) + " + 1, EOS included; " +
                    std::to_string(w.documents_skipped) + " documents, all shorter)";
  if (w.documents == 0) return w;
  // min_doc_tokens = 1: every document of at least seq_len + 1 tokens (data/sampler.h).
  auto windows = std::make_shared<SequentialWindows>(val, WindowOptions{context, 1});
  w.count = windows->num_windows();
  w.rows = [windows](int64_t first, int64_t n) { return windows->read(first, n).tokens; };
  return w;
}

std::vector<int64_t> log_bucket_edges(int64_t context, int64_t per_octave) {
  if (per_octave < 1) throw std::invalid_argument("eval: log buckets per octave must be >= 1");
  std::vector<int64_t> edges;
  for (int64_t j = 0;; ++j) {
    // 2^(j / n) = 2^(j div n) · 2^((j mod n) / n): exact at whole octaves.
    const double v = std::ldexp(std::pow(2.0, static_cast<double>(j % per_octave) / per_octave), static_cast<int>(j / per_octave));
    const int64_t e = static_cast<int64_t>(std::ceil(v));
    if (e > context) break;
    if (edges.empty() || e > edges.back()) edges.push_back(e);
  }
  edges.push_back(context + 1);
  return edges;
}

ContextResult evaluate_windows(const TokenLossFn& fn, const EvalWindows& w, const EvalOptions& o) {
  const int64_t context = w.context;
  check_context(context);
  if (o.batch < 1) throw std::invalid_argument("eval: batch must be >= 1");
  if (w.count == 0) throw std::invalid_argument("eval: " + w.empty_message);
  const int64_t n = o.max_windows > 0 ? std::min(o.max_windows, w.count) : w.count;
  NoGradGuard ng;
  // Sums in double: a long evaluation adds millions of float losses.
  std::vector<double> pos_sum(static_cast<size_t>(context), 0.0);
  double total = 0;
  TextUnits text;
  for (int64_t first = 0; first < n; first += o.batch) {
    Tensor rows = w.rows(first, std::min(o.batch, n - first));
    auto [ids, targets] = split_inputs_targets(rows);
    Tensor losses = fn(ids, targets);
    if (losses.shape() != ids.shape())
      throw std::logic_error("eval: per-token losses have shape " + losses.shape().str() + ", expected " +
                             ids.shape().str());
    std::vector<double> l = losses.tolist<double>();  // row-major [B, T]
    for (size_t i = 0; i < l.size(); ++i) {
      pos_sum[i % static_cast<size_t>(context)] += l[i];
      total += l[i];
    }
    if (o.text) {
      std::vector<int64_t> r = rows.tolist<int64_t>();  // [B, T+1]
      for (int64_t b = 0; b < rows.size(0); ++b)
        add_window_text_units(*o.text, r.data() + b * (context + 1), l.data() + b * context, context, text);
    }
  }
  ContextResult r;
  r.context = context;
  r.windows = n;
  r.tokens = n * context;
  r.loss = total / static_cast<double>(r.tokens);
  r.ppl = std::exp(r.loss);
  r.window_mode = window_mode_name(w.mode);
  r.documents = w.documents;
  r.documents_skipped = w.documents_skipped;
  r.has_text = o.text != nullptr;
  r.text = text;
  // Equal-width buckets (the last may be shorter).
  const int64_t nb = std::max<int64_t>(1, std::min(o.buckets, context));
  r.bucket_size = (context + nb - 1) / nb;
  for (int64_t lo = 0; lo < context; lo += r.bucket_size) {
    r.bucket_start.push_back(lo);
    r.bucket_loss.push_back(bucket_mean(pos_sum, lo, std::min(context, lo + r.bucket_size), n));
  }
  // Log-spaced buckets over token index t = p + 1.
  r.buckets_per_octave = o.buckets_per_octave;
  const std::vector<int64_t> edges = log_bucket_edges(context, o.buckets_per_octave);
  for (size_t k = 0; k + 1 < edges.size(); ++k) {
    r.index_start.push_back(edges[k]);
    r.index_end.push_back(edges[k + 1]);
    r.index_loss.push_back(bucket_mean(pos_sum, edges[k] - 1, edges[k + 1] - 1, n));
  }
  return r;
}

}  // namespace ttt
