// trainer/niah_eval.cpp — see niah_eval.h.
#include "trainer/niah_eval.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "data/tokenizer.h"
#include "layers/language_model.h"

namespace ttt {

namespace {

// Row r of logits [B, V] (float32, on the CPU): the id < n of the largest value, the lowest on ties.
int64_t argmax_row(const std::vector<float>& logits, int64_t r, int64_t V, int64_t n) {
  auto first = logits.begin() + r * V;
  return std::max_element(first, first + n) - first;
}

// The ids before the first `stop`, decoded.
std::string decode_until(const Tokenizer& tok, const std::vector<int64_t>& ids, int64_t stop) {
  const auto end = std::find(ids.begin(), ids.end(), stop);
  return tok.decode(ids.data(), static_cast<size_t>(end - ids.begin()));
}

struct Tally {
  int64_t correct = 0, total = 0;
  double rate() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

}  // namespace

GreedyFn model_greedy(LanguageModel& model, int64_t prefill_chunk, int64_t stop_token, bool bf16, int64_t vocab) {
  if (prefill_chunk < 1) throw std::invalid_argument("--prefill-chunk must be >= 1");
  return [&model, prefill_chunk, stop_token, bf16, vocab](const std::vector<std::vector<int64_t>>& prompts, int64_t max_new,
                                                   const RowDoneFn& done) {
    const int64_t B = static_cast<int64_t>(prompts.size());
    if (B == 0) return std::vector<std::vector<int64_t>>{};
    const int64_t T = static_cast<int64_t>(prompts[0].size());
    std::vector<int64_t> flat;
    for (const auto& p : prompts) {
      if (static_cast<int64_t>(p.size()) != T || T == 0)
        throw std::invalid_argument("greedy generation: the prompts of a batch must have the same, non-zero length");
      flat.insert(flat.end(), p.begin(), p.end());
    }
    NoGradGuard ng;
    AutocastGuard autocast(DType::bf16, bf16);
    const Device dev = model.named_parameters().front().second.device();
    auto state = model.init_decode(B);
    const Tensor all = from_vector_i64(flat, {B, T});
    Tensor logits;
    for (int64_t start = 0; start < T; start += prefill_chunk)
      logits = model.decode(all.narrow(1, start, std::min(prefill_chunk, T - start)).contiguous().to(dev), *state,
                            /*last_only=*/true);
    std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
    std::vector<bool> stopped(static_cast<size_t>(B), false);
    for (int64_t step = 0; step < max_new; ++step) {
      const int64_t V = logits.size(2);
      const std::vector<float> last = logits.select(1, logits.size(1) - 1).to(DType::f32).to(cpu()).tolist<float>();
      std::vector<int64_t> next(static_cast<size_t>(B));
      bool all_stopped = true;
      for (int64_t r = 0; r < B; ++r) {
        auto& o = out[static_cast<size_t>(r)];
        if (stopped[static_cast<size_t>(r)]) {
          next[static_cast<size_t>(r)] = o.back();  // keeps the batch in step; its output is ignored
          continue;
        }
        const int64_t id = argmax_row(last, r, V, vocab > 0 && vocab < V ? vocab : V);
        o.push_back(id);
        next[static_cast<size_t>(r)] = id;
        if (id == stop_token || (done && done(static_cast<size_t>(r), o))) stopped[static_cast<size_t>(r)] = true;
        all_stopped = all_stopped && stopped[static_cast<size_t>(r)];
      }
      if (all_stopped || step + 1 == max_new) break;
      logits = model.decode(from_vector_i64(next, {B, 1}).to(dev), *state);
    }
    return out;
  };
}

std::vector<NiahRecord> run_niah(const NiahGenerator& gen, const Tokenizer& tok, const GreedyFn& greedy, const NiahOptions& o,
                                 const std::function<void(const std::string&, int64_t, int64_t, int64_t)>& on_cell) {
  if (o.samples < 1) throw std::invalid_argument("--samples must be >= 1");
  if (o.batch < 1) throw std::invalid_argument("--batch must be >= 1");
  if (o.depths.empty()) throw std::invalid_argument("--depths: no depth given");
  const int64_t eos = tok.eos_id();
  std::vector<NiahRecord> records;
  for (const NiahTask& task : o.tasks) {
    for (int64_t context : o.contexts) {
      const size_t first = records.size();
      // Samples are independent: made in parallel (tokenizing a long prompt takes a while).
      const int64_t n = static_cast<int64_t>(o.depths.size()) * o.samples;
      records.resize(first + static_cast<size_t>(n));
      std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic)
      for (int64_t k = 0; k < n; ++k) {
        try {
          records[first + static_cast<size_t>(k)].sample =
              gen.make(task, context, o.depths[static_cast<size_t>(k / o.samples)], k % o.samples, o.gen);
        } catch (...) {
          errors[static_cast<size_t>(k)] = std::current_exception();
        }
      }
      for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
      Tally tally;
      for (size_t b = first; b < records.size(); b += static_cast<size_t>(o.batch)) {
        const size_t end = std::min(records.size(), b + static_cast<size_t>(o.batch));
        std::vector<std::vector<int64_t>> prompts;
        for (size_t k = b; k < end; ++k) prompts.push_back(records[k].sample.tokens);
        auto holds_value = [&](size_t row, const std::vector<int64_t>& ids) {
          return niah_correct(decode_until(tok, ids, eos), records[b + row].sample.value);
        };
        const auto outs = greedy(prompts, o.gen, holds_value);
        for (size_t k = b; k < end; ++k) {
          NiahRecord& rec = records[k];
          rec.prediction = decode_until(tok, outs[k - b], eos);
          rec.correct = niah_correct(rec.prediction, rec.sample.value);
          rec.sample.tokens.clear();
          rec.sample.tokens.shrink_to_fit();
          tally.correct += rec.correct;
          tally.total += 1;
        }
      }
      if (on_cell) on_cell(task.name, context, tally.correct, tally.total);
    }
  }
  return records;
}

namespace {

// Tallies of one task: by (depth, context), by context, by depth, overall.
struct TaskTally {
  std::map<std::pair<int64_t, int64_t>, Tally> cell;
  std::map<int64_t, Tally> by_context, by_depth;
  Tally all;
};

TaskTally tally_task(const std::vector<NiahRecord>& records, const std::string& task) {
  TaskTally t;
  for (const auto& r : records) {
    if (r.sample.task != task) continue;
    for (Tally* x : {&t.cell[{r.sample.depth, r.sample.context}], &t.by_context[r.sample.context],
                     &t.by_depth[r.sample.depth], &t.all}) {
      x->correct += r.correct;
      x->total += 1;
    }
  }
  return t;
}

}  // namespace

nlohmann::json niah_results_json(const std::vector<NiahRecord>& records, const NiahOptions& o) {
  nlohmann::json tasks = nlohmann::json::array(), samples = nlohmann::json::array();
  for (const NiahTask& task : o.tasks) {
    TaskTally t = tally_task(records, task.name);
    nlohmann::json grid = nlohmann::json::array(), by_context = nlohmann::json::array(), by_depth = nlohmann::json::array();
    for (int64_t d : o.depths) {
      nlohmann::json row = nlohmann::json::array();
      for (int64_t c : o.contexts) row.push_back(t.cell[{d, c}].rate());
      grid.push_back(row);
      by_depth.push_back(t.by_depth[d].rate());
    }
    for (int64_t c : o.contexts) by_context.push_back(t.by_context[c].rate());
    tasks.push_back({{"name", task.name},
                     {"haystack", niah_haystack_name(task.haystack)},
                     {"key", niah_item_name(task.key)},
                     {"value", niah_item_name(task.value)},
                     {"contexts", o.contexts},
                     {"depths", o.depths},
                     {"samples_per_cell", o.samples},
                     {"grid", grid},
                     {"grid_layout", "grid[i][j]: accuracy at depths[i] and contexts[j]"},
                     {"accuracy_by_context", by_context},
                     {"accuracy_by_depth", by_depth},
                     {"accuracy", t.all.rate()},
                     {"correct", t.all.correct},
                     {"total", t.all.total}});
  }
  for (const auto& r : records)
    samples.push_back({{"task", r.sample.task},
                       {"context", r.sample.context},
                       {"depth", r.sample.depth},
                       {"index", r.sample.index},
                       {"key", r.sample.key},
                       {"value", r.sample.value},
                       {"haystack_units", r.sample.haystack_units},
                       {"prompt_begin", r.sample.prompt_begin},
                       {"needle_at", r.sample.needle_at},
                       {"prediction", r.prediction},
                       {"correct", r.correct}});
  return {{"tasks", tasks}, {"samples", samples}};
}

std::string format_niah_table(const std::vector<NiahRecord>& records, const NiahOptions& o) {
  std::string out;
  char buf[64];
  for (const NiahTask& task : o.tasks) {
    TaskTally t = tally_task(records, task.name);
    std::snprintf(buf, sizeof buf, "%.3f", t.all.rate());
    out += "task " + task.name + " (" + niah_haystack_name(task.haystack) + " haystack, " + niah_item_name(task.key) +
           " key, " + niah_item_name(task.value) + " value): accuracy " + buf + "\n  depth \\ context";
    for (int64_t c : o.contexts) {
      std::snprintf(buf, sizeof buf, "%9lld", static_cast<long long>(c));
      out += buf;
    }
    out += "\n";
    auto row = [&](const std::string& label, const std::function<Tally(int64_t)>& at) {
      std::snprintf(buf, sizeof buf, "  %15s", label.c_str());
      out += buf;
      for (int64_t c : o.contexts) {
        std::snprintf(buf, sizeof buf, "%9.2f", at(c).rate());
        out += buf;
      }
      out += "\n";
    };
    for (int64_t d : o.depths) row(std::to_string(d) + "%", [&](int64_t c) { return t.cell[{d, c}]; });
    row("all", [&](int64_t c) { return t.by_context[c]; });
  }
  return out;
}

}  // namespace ttt
