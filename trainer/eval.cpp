// trainer/eval.cpp — see eval.h for the protocol.
#include "trainer/eval.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

std::pair<Tensor, Tensor> split_inputs_targets(const Tensor& rows) {
  const int64_t T = rows.size(1) - 1;
  return {rows.narrow(1, 0, T).contiguous(), rows.narrow(1, 1, T).contiguous()};
}

ContextResult evaluate_context(const TokenLossFn& fn, TokenSource& data, int64_t context, int64_t max_windows,
                               int64_t batch, int64_t buckets) {
  if (context < 1) throw std::invalid_argument("eval: context length must be >= 1, got " + std::to_string(context));
  if (batch < 1) throw std::invalid_argument("eval: batch must be >= 1");
  const int64_t available = data.val_windows(context);
  if (available == 0) {
    // context + 1 computed only where it cannot overflow (--context 9223372036854775807).
    const std::string window = context < INT64_MAX ? std::to_string(context + 1) : std::to_string(context) + " + 1";
    throw std::invalid_argument("eval: the validation data (" + data.describe() + ") holds no window of " + window +
                                " tokens (context " + std::to_string(context) + ")");
  }
  const int64_t n = max_windows > 0 ? std::min(max_windows, available) : available;
  NoGradGuard ng;
  // Sums in double: a long evaluation adds millions of float losses.
  std::vector<double> pos_sum(static_cast<size_t>(context), 0.0);
  double total = 0;
  for (int64_t first = 0; first < n; first += batch) {
    Tensor rows = data.val_rows(context, first, std::min(batch, n - first));
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
  }
  ContextResult r;
  r.context = context;
  r.windows = n;
  r.tokens = n * context;
  r.loss = total / static_cast<double>(r.tokens);
  r.ppl = std::exp(r.loss);
  // Equal-width buckets (the last may be shorter); a log-spaced view is the plotting script's job,
  // the raw per-bucket means keep the JSON simple and exact.
  const int64_t nb = std::max<int64_t>(1, std::min(buckets, context));
  r.bucket_size = (context + nb - 1) / nb;
  for (int64_t b = 0; b * r.bucket_size < context; ++b) {
    const int64_t lo = b * r.bucket_size, hi = std::min(context, lo + r.bucket_size);
    double s = 0;
    for (int64_t p = lo; p < hi; ++p) s += pos_sum[static_cast<size_t>(p)];
    r.bucket_start.push_back(lo);
    r.bucket_loss.push_back(s / static_cast<double>((hi - lo) * n));
  }
  return r;
}

nlohmann::json context_result_json(const ContextResult& r) {
  return {{"context", r.context},
          {"windows", r.windows},
          {"tokens", r.tokens},
          {"loss", r.loss},
          {"ppl", r.ppl},
          {"loss_by_position",
           {{"bucket_size", r.bucket_size}, {"bucket_start", r.bucket_start}, {"loss", r.bucket_loss}}}};
}

std::string format_eval_table(const std::vector<ContextResult>& results) {
  std::string out = " context   windows      tokens     loss        ppl   loss@first   loss@last\n";
  char buf[160];
  for (const auto& r : results) {
    std::snprintf(buf, sizeof buf, "%8lld  %8lld  %10lld  %7.4f  %9.3f  %11.4f  %10.4f\n",
                  static_cast<long long>(r.context), static_cast<long long>(r.windows),
                  static_cast<long long>(r.tokens), r.loss, r.ppl, r.bucket_loss.front(), r.bucket_loss.back());
    out += buf;
  }
  return out;
}

}  // namespace ttt
