// trainer/cli_bench.cpp — `ttt bench --config X [--seq-len T --batch B ...]`: throughput and
// memory of one model on one device, as JSON (stdout, and --out FILE).
//
//   train    forward + backward + gradient-norm clipping (train.grad_clip) + AdamW step on [B, T]
//            tokens, the optimizer step as the train loop runs it: tokens/s = B*T / step time
//   prefill  forward without gradients on [B, T]:              tokens/s = B*T / time
//   decode   after a prefill of T tokens, one token per call for each of B sequences:
//            tokens/s = B*N / time  (TTT layers: primal form, attention: KV cache); also the
//            prefill's own time (prefill_time_s: init_decode + one decode call over the prompt,
//            head at the last position only: what ttt generate runs, leaving the decode state)
//            and ms_per_token = time / N (one step of the batch).
// --contexts T1,T2,...: the prefill and decode phases at each context instead of at --seq-len, as
// a "contexts" array of {context, prefill: {time_s, ms_per_token = time / T, ...}, decode: {...}};
// here prefill is the decode-state prefill (init_decode + decode of the prompt), the latency a
// generation pays (scripts/plot_latency.py draws ms_per_token against context).
// Inputs are random token ids; `--warmup` untimed repetitions come first; times are the median
// of `--repeat` timed repetitions. Peak memory is the backend allocator's high-water mark during
// the phase (bytes held by tensors; 0 where the backend does not track it); reserved memory is
// what the allocator holds from the driver at the end of the phase (CUDA: handed out + cached).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/graph_memory.h"
#include "autograd/ops.h"
#include "data/file_io.h"
#include "kernels/profiler.h"
#include "layers/decode_graphs.h"
#include "trainer/cli_common.h"
#include "trainer/commands.h"
#include "trainer/optimizer.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ttt {

namespace {

struct BenchArgs {
  ConfigArgs config;
  std::string device = "cpu", out, phases = "train,prefill,decode", dtype;
  int64_t seq_len = 0, batch = 1, warmup = 1, repeat = 3, decode_tokens = 32;
  std::vector<int64_t> contexts;
  bool profile = false, deterministic = false, saved = false, no_cuda_graphs = false;
};

using Clock = std::chrono::steady_clock;

// Median wall time of `repeat` runs of fn after `warmup` untimed ones; synchronizes the device.
double time_median(Device dev, int64_t warmup, int64_t repeat, const std::function<void()>& fn) {
  for (int64_t i = 0; i < warmup; ++i) fn();
  backend(dev).synchronize();
  std::vector<double> t;
  for (int64_t i = 0; i < repeat; ++i) {
    auto t0 = Clock::now();
    fn();
    backend(dev).synchronize();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor random_ids(int64_t rows, int64_t cols, int64_t vocab, Generator& g) {
  std::vector<double> u = rand({rows * cols}, g, opts(DType::f64)).tolist<double>();
  std::vector<int64_t> ids(u.size());
  for (size_t i = 0; i < u.size(); ++i) ids[i] = std::min<int64_t>(vocab - 1, static_cast<int64_t>(u[i] * vocab));
  return from_vector_i64(ids, {rows, cols});
}

// Per kernel, `all` less `part` (calls, time, bytes; kernels left with no calls dropped), largest
// first: what a run did beyond a run of its first part.
std::vector<KernelStat> profile_minus(std::vector<KernelStat> all, const std::vector<KernelStat>& part) {
  for (const KernelStat& p : part)
    for (KernelStat& k : all)
      if (k.name == p.name) k.calls -= p.calls, k.seconds -= p.seconds, k.bytes -= p.bytes;
  std::erase_if(all, [](const KernelStat& k) { return k.calls <= 0; });
  std::sort(all.begin(), all.end(), [](const KernelStat& x, const KernelStat& y) { return x.seconds > y.seconds; });
  return all;
}

// The saved-tensor table of one training forward, largest first; also printed to stderr.
nlohmann::json saved_json(const std::vector<SavedBytes>& rows) {
  int64_t total = 0;
  for (const SavedBytes& r : rows) total += r.bytes;
  std::fprintf(stderr, "saved for backward by one training forward: %.1f MB\n", total / 1e6);
  nlohmann::json out = nlohmann::json::array();
  for (const SavedBytes& r : rows) {
    if (r.bytes == 0) continue;
    std::fprintf(stderr, "  %-28s %10.1f MB  %5lld storages  %5lld nodes\n", r.op.c_str(), r.bytes / 1e6,
                 static_cast<long long>(r.storages), static_cast<long long>(r.nodes));
    out.push_back({{"op", r.op}, {"bytes", r.bytes}, {"storages", r.storages}, {"nodes", r.nodes}});
  }
  return out;
}

// The per-kernel table of one profiled step, largest first; also printed to stderr.
nlohmann::json profile_json(const std::vector<KernelStat>& stats) {
  double total = 0, bytes = 0;
  int64_t calls = 0;
  for (auto& k : stats) {
    total += k.seconds;
    bytes += k.bytes;
    calls += k.calls;
  }
  nlohmann::json rows = nlohmann::json::array();
  std::fprintf(stderr, "profile of one step (each backend call timed alone): %lld calls, %.1f ms, %.1f MB moved\n",
               static_cast<long long>(calls), total * 1e3, bytes / 1e6);
  std::fprintf(stderr, "  %-34s %8s %10s %7s %11s\n", "kernel", "calls", "ms", "share", "MB");
  for (size_t i = 0; i < stats.size(); ++i) {
    const KernelStat& k = stats[i];
    rows.push_back({{"kernel", k.name}, {"calls", k.calls}, {"ms", k.seconds * 1e3}, {"mbytes", k.bytes / 1e6}});
    if (i < 25)
      std::fprintf(stderr, "  %-34s %8lld %10.2f %6.1f%% %11.1f\n", k.name.c_str(), static_cast<long long>(k.calls),
                   k.seconds * 1e3, total > 0 ? 100.0 * k.seconds / total : 0.0, k.bytes / 1e6);
  }
  return {{"backend_calls", calls}, {"serialized_ms", total * 1e3}, {"mbytes", bytes / 1e6}, {"kernels", rows}};
}

// Where the profiled step's memory peaked, beside what the forward left held for the backward (the
// saved tensors, parameters, gradients and optimizer state); also printed to stderr.
nlohmann::json memory_peak_json(const MemoryPeakStat& peak, size_t held_after_forward) {
  std::fprintf(stderr, "memory: %.3f GB held after the forward; peak %.3f GB at an allocation of %.1f MB after '%s'\n",
               held_after_forward / 1e9, peak.bytes / 1e9, peak.alloc_bytes / 1e6, peak.after.c_str());
  return {{"held_after_forward_bytes", held_after_forward}, {"peak_bytes", peak.bytes},
          {"peak_alloc_bytes", peak.alloc_bytes}, {"peak_after_call", peak.after}};
}

// The profiled step's calls by (scope, kernel): the autograd node whose backward made them,
// "gradient accumulation" or "forward"; the 25 largest by time also printed to stderr.
nlohmann::json scoped_profile_json(const std::vector<ScopedKernelStat>& stats) {
  nlohmann::json rows = nlohmann::json::array();
  std::fprintf(stderr, "  by scope (the node whose backward made the call, or forward):\n");
  std::fprintf(stderr, "  %-28s %-30s %8s %10s %11s\n", "scope", "kernel", "calls", "ms", "MB");
  for (size_t i = 0; i < stats.size(); ++i) {
    const ScopedKernelStat& k = stats[i];
    rows.push_back({{"scope", k.scope}, {"kernel", k.kernel}, {"calls", k.calls}, {"ms", k.seconds * 1e3},
                    {"mbytes", k.bytes / 1e6}});
    if (i < 25)
      std::fprintf(stderr, "  %-28s %-30s %8lld %10.2f %11.1f\n", k.scope.c_str(), k.kernel.c_str(),
                   static_cast<long long>(k.calls), k.seconds * 1e3, k.bytes / 1e6);
  }
  return rows;
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median times of the prefill (a fresh decode state, then one decode call over `prompt`, logits of
// the last position only) and of `steps` single-token decode calls after it, over a.repeat runs
// after a.warmup; the device is synchronized around each part.
std::pair<double, double> time_prefill_decode(LanguageModel& model, Backend& be, const BenchArgs& a, const Tensor& prompt,
                                              const Tensor& next, bool amp, int64_t steps) {
  std::vector<double> tp, td;
  for (int64_t r = 0; r < a.warmup + a.repeat; ++r) {
    AutocastGuard ac(DType::bf16, amp);
    be.synchronize();
    const auto t0 = Clock::now();
    auto st = model.init_decode(prompt.size(0));
    (void)model.decode(prompt, *st, /*last_only=*/true);
    be.synchronize();
    const auto t1 = Clock::now();
    for (int64_t i = 0; i < steps; ++i) (void)model.decode(next, *st);
    be.synchronize();
    const auto t2 = Clock::now();
    if (r < a.warmup) continue;
    tp.push_back(std::chrono::duration<double>(t1 - t0).count());
    td.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  return {median(tp), median(td)};
}

nlohmann::json decode_json(const BenchArgs& a, int64_t B, double s, Backend& be) {
  return {{"new_tokens", a.decode_tokens}, {"time_s", s}, {"ms_per_token", 1e3 * s / static_cast<double>(a.decode_tokens)},
          {"tokens_per_s", static_cast<double>(B * a.decode_tokens) / s}, {"peak_memory_bytes", be.memory_peak()},
          {"reserved_memory_bytes", be.memory_reserved()}};
}

// --contexts: prefill and decode latency at each context, one entry per context.
nlohmann::json by_context(LanguageModel& model, Backend& be, Device dev, const BenchArgs& a, bool prefill, bool decode,
                          bool amp, int64_t vocab, Generator& g) {
  model.train(false);
  NoGradGuard ng;
  nlohmann::json rows = nlohmann::json::array();
  const int64_t B = a.batch;
  for (int64_t T : a.contexts) {
    Tensor prompt = random_ids(B, T, vocab, g).to(dev), next = random_ids(B, 1, vocab, g).to(dev);
    be.reset_peak_memory();
    const auto [p, d] = time_prefill_decode(model, be, a, prompt, next, amp, decode ? a.decode_tokens : 0);
    nlohmann::json row = {{"context", T}, {"peak_memory_bytes", be.memory_peak()},
                          {"reserved_memory_bytes", be.memory_reserved()}};
    std::string line = "context " + std::to_string(T) + ":";
    if (prefill) {
      row["prefill"] = {{"time_s", p}, {"ms_per_token", 1e3 * p / static_cast<double>(T)},
                        {"tokens_per_s", static_cast<double>(B * T) / p}};
      line += " prefill " + std::to_string(1e3 * p) + " ms";
    }
    if (decode) {
      row["decode"] = decode_json(a, B, d, be);
      row["decode"].erase("peak_memory_bytes");
      row["decode"].erase("reserved_memory_bytes");
      line += " decode " + std::to_string(row["decode"]["ms_per_token"].get<double>()) + " ms/token";
    }
    std::fprintf(stderr, "%s\n", line.c_str());  // progress: a long sweep shows each context as it ends
    if (a.profile) {
      // One more prefill, then one with its decode steps, every backend call timed on its own
      // (kernels/profiler.h); the decode table is the second minus the first.
      const BenchArgs once{.warmup = 0, .repeat = 1};
      const auto profiled = [&](int64_t steps) {
        Profiler::reset();
        Profiler::set_enabled(true);
        (void)time_prefill_decode(model, be, once, prompt, next, amp, steps);
        Profiler::set_enabled(false);
        return Profiler::snapshot();
      };
      const std::vector<KernelStat> pre = profiled(0);
      row["prefill_profile"] = profile_json(pre);
      if (decode) row["decode_profile"] = profile_json(profile_minus(profiled(a.decode_tokens), pre));
    }
    rows.push_back(row);
  }
  return rows;
}

// The --phases list as a set; an unknown or empty entry is an error naming it.
std::set<std::string> parse_phases(const std::string& list) {
  static const std::set<std::string> known = {"train", "prefill", "decode"};
  std::set<std::string> phases;
  std::stringstream ss(list);
  for (std::string p; std::getline(ss, p, ',');) {
    if (!known.count(p))
      throw std::invalid_argument("--phases: unknown phase '" + p + "' (expected a comma-separated subset of train,prefill,decode)");
    phases.insert(p);
  }
  if (phases.empty()) throw std::invalid_argument("--phases: no phase given (expected a subset of train,prefill,decode)");
  return phases;
}

void run_bench(const BenchArgs& a) {
  const std::set<std::string> phases = parse_phases(a.phases);
  if (!a.contexts.empty() && (phases.count("train") || a.seq_len > 0))
    throw std::invalid_argument("--contexts measures the prefill and decode phases at each context: drop train from "
                                "--phases and --seq-len");
  if (!a.out.empty()) check_writable(a.out, "benchmark report");  // before minutes of measuring
  RunConfig cfg = a.config.load();
  const Device dev = device_from_option(a.device);
  const int64_t T = a.seq_len > 0 ? a.seq_len : cfg.seq_len(), B = a.batch;
  auto want = [&](const std::string& p) { return phases.count(p) != 0; };
  LanguageModel model(cfg.model);
  model.to(dev);
  model.set_decode_graphs(!a.no_cuda_graphs);
  Generator g(1234);
  Backend& be = backend(dev);

  nlohmann::json j;
  j["config"] = cfg.source;
  j["model"] = {{"mixer", cfg.model.mixer}, {"backbone", cfg.model.backbone}, {"parameters", model.num_parameters()},
                {"impl", cfg.model.ttt.impl}};
  j["device"] = dev.str();
#ifdef _OPENMP
  j["threads"] = omp_get_max_threads();
#else
  j["threads"] = 1;
#endif
  const bool amp = (a.dtype.empty() ? cfg.train.dtype : a.dtype) == "bf16";
  j["dtype"] = amp ? "bf16" : "fp32";
  set_deterministic(a.deterministic || cfg.train.deterministic);
  j["deterministic"] = deterministic();
  j["cuda_graphs"] = !a.no_cuda_graphs;
  // The wavefront prefill's setting (LanguageModel::prefill_segment: off, auto or a token count).
  const int64_t segment = model.prefill_segment();
  if (segment < 0) j["prefill_segment"] = "off";
  else if (segment == 0) j["prefill_segment"] = "auto";
  else j["prefill_segment"] = segment;
  if (a.contexts.empty()) j["seq_len"] = T;
  j["batch"] = B;
  j["repeat"] = a.repeat;
  j["warmup"] = a.warmup;

  if (want("train")) {
    model.train(true);
    AdamW opt(model.named_parameters(), {});
    Tensor rows = random_ids(B, T + 1, cfg.model.vocab_size, g).to(dev);
    Tensor ids = rows.narrow(1, 0, T).contiguous(), targets = rows.narrow(1, 1, T).contiguous();
    size_t held_after_forward = 0;  // read by --profile
    auto step = [&] {
      opt.zero_grad();
      Tensor loss;
      {
        AutocastGuard ac(DType::bf16, amp);
        loss = model.loss(ids, targets);
      }
      held_after_forward = be.memory_allocated();
      backward({loss});
      opt.step(1e-4, clip_scale(global_grad_norm(model.parameters()), cfg.train.grad_clip));
    };
    be.reset_peak_memory();
    double s = time_median(dev, a.warmup, a.repeat, step);
    const double tok_s = static_cast<double>(B * T) / s;
    j["train"] = {{"step_s", s}, {"tokens_per_s", tok_s}, {"peak_memory_bytes", be.memory_peak()},
                  {"reserved_memory_bytes", be.memory_reserved()},
                  {"model_tflops", 3.0 * model.flops_per_token(T) * tok_s / 1e12}};
    if (a.saved) {
      // What one training forward keeps for its backward, by op (autograd/graph_memory.h).
      Tensor loss;
      {
        AutocastGuard ac(DType::bf16, amp);
        loss = model.loss(ids, targets);
      }
      j["train"]["saved_by_op"] = saved_json(saved_bytes_by_op(loss));
    }
    if (a.profile) {
      // One more step with every backend call timed on its own (kernels/profiler.h).
      Profiler::reset();
      Profiler::set_enabled(true);
      step();
      Profiler::set_enabled(false);
      j["train"]["profile"] = profile_json(Profiler::snapshot());
      j["train"]["profile"]["memory"] = memory_peak_json(Profiler::memory_peak(), held_after_forward);
      j["train"]["profile"]["by_scope"] = scoped_profile_json(Profiler::scoped_snapshot());
    }
    opt.zero_grad();
  }
  if (!a.contexts.empty()) {
    j["contexts"] = by_context(model, be, dev, a, want("prefill"), want("decode"), amp, cfg.model.vocab_size, g);
  } else if (want("prefill")) {
    model.train(false);
    NoGradGuard ng;
    Tensor ids = random_ids(B, T, cfg.model.vocab_size, g).to(dev);
    be.reset_peak_memory();
    double s = time_median(dev, a.warmup, a.repeat, [&] {
      AutocastGuard ac(DType::bf16, amp);
      (void)model.forward(ids);
    });
    j["prefill"] = {{"time_s", s}, {"tokens_per_s", static_cast<double>(B * T) / s},
                    {"peak_memory_bytes", be.memory_peak()}, {"reserved_memory_bytes", be.memory_reserved()}};
  }
  if (want("decode") && a.contexts.empty()) {
    model.train(false);
    NoGradGuard ng;
    Tensor prompt = random_ids(B, T, cfg.model.vocab_size, g).to(dev);
    Tensor next = random_ids(B, 1, cfg.model.vocab_size, g).to(dev);
    be.reset_peak_memory();
    const auto [pre, dec] = time_prefill_decode(model, be, a, prompt, next, amp, a.decode_tokens);
    j["decode"] = decode_json(a, B, dec, be);
    j["decode"]["prompt_tokens"] = T;
    j["decode"]["prefill_time_s"] = pre;
  }
  if (want("decode"))
    j["decode_graphs"] = {{"recorded", model.decode_graphs().recorded()}, {"replays", model.decode_graphs().replays()}};
  const std::string text = j.dump(2);
  std::printf("%s\n", text.c_str());
  if (!a.out.empty()) write_file_atomic(a.out, text + "\n", "benchmark report");
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure train / prefill / decode tokens/s and peak memory (JSON)");
  auto a = std::make_shared<BenchArgs>();
  a->config.add_to(cmd, true);
  cmd->add_option("--seq-len", a->seq_len, "Tokens per sequence (default: the config's training context)")
      ->check(cli::positive_int());
  cmd->add_option("--batch", a->batch, "Sequences per call")->capture_default_str()->check(cli::positive_int());
  cmd->add_option("--warmup", a->warmup, "Untimed repetitions")->capture_default_str()->check(cli::non_negative_int());
  cmd->add_option("--repeat", a->repeat, "Timed repetitions (median)")->capture_default_str()->check(cli::positive_int());
  cmd->add_option("--decode-tokens", a->decode_tokens, "Tokens decoded one at a time")
      ->capture_default_str()
      ->check(cli::positive_int());
  cmd->add_option("--phases", a->phases, "Comma-separated subset of train,prefill,decode")->capture_default_str();
  cmd->add_option("--contexts", a->contexts,
                  "Context lengths, e.g. 1024,2048,4096: prefill and decode latency at each (JSON \"contexts\")")
      ->delimiter(',')
      ->check(cli::positive_int());
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_flag("--profile", a->profile,
                 "After the timed train steps, time every backend call of one more step (kernel table on stderr and "
                 "in the JSON); with --contexts, of one more prefill and its decode steps at each context");
  cmd->add_flag("--saved", a->saved,
                "After the timed train steps, list what one training forward saves for backward, by op (bytes of "
                "distinct storages; stderr and the JSON's train.saved_by_op)");
  cmd->add_option("--dtype", a->dtype, "fp32 or bf16 (autocast); default: the config's train.dtype")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_flag("--deterministic", a->deterministic,
                "GPU kernels sum in a fixed order instead of with float atomics (as train.deterministic)");
  cmd->add_flag("--no-cuda-graphs", a->no_cuda_graphs,
                "Decode every token eagerly (default: one-token decode steps replay CUDA graphs where the model allows)");
  cmd->add_option("--out", a->out, "Also write the JSON to this file");
  cmd->callback([a]() { run_bench(*a); });
}

}  // namespace ttt
