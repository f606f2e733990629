// trainer/train_loop.cpp — see train_loop.h.
#include "trainer/train_loop.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <optional>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/ops.h"
#include "data/file_io.h"
#include "data/sha256.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/comm.h"
#include "trainer/ddp.h"
#include "trainer/eval.h"
#include "trainer/init_from.h"
#include "trainer/metrics.h"
#include "trainer/model_hooks.h"
#include "trainer/optimizer.h"
#include "trainer/train_optimizer.h"
#include "trainer/run_checks.h"
#include "trainer/schedule.h"
#include "trainer/signals.h"
#include "trainer/train_dist.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Device device_of(const RunConfig& cfg) {
  Device d = parse_device(cfg.train.device);
  if (d.is_cuda() && !cuda_available())
    throw std::invalid_argument("train.device is '" + cfg.train.device + "' but " +
                                (cuda_built() ? "no GPU is visible" : "this build has no CUDA backend"));
  return d;
}

// One ddp_timeline.jsonl row: the step and, per gradient bucket, milliseconds relative to the
// end of backward (negative = before it).
nlohmann::json timeline_row(int64_t step, const std::vector<BucketTiming>& tl) {
  nlohmann::json buckets = nlohmann::json::array();
  for (const BucketTiming& b : tl)
    buckets.push_back({{"bucket", b.bucket}, {"bytes", b.bytes}, {"params", b.params}, {"ready_ms", 1e3 * b.ready_s},
                       {"start_ms", 1e3 * b.start_s}, {"end_ms", 1e3 * b.end_s},
                       {"launched_in_backward", b.launched_in_backward}});
  return {{"step", step}, {"buckets", buckets}};
}

// "3 of 4 buckets started their all-reduce before the end of backward; the last ended 1.2 ms after it"
std::string timeline_summary(const std::vector<BucketTiming>& tl) {
  int before = 0;
  double last_end = -1e300;
  for (const BucketTiming& b : tl) {
    before += b.start_s < 0 ? 1 : 0;
    last_end = std::max(last_end, b.end_s);
  }
  return fmt::format("{} of {} gradient buckets started their all-reduce before the end of backward; the last "
                     "ended {:.3f} ms {} it",
                     before, tl.size(), std::abs(1e3 * last_end), last_end < 0 ? "before" : "after");
}

// train.deterministic for the duration of one run (tests run several in one process).
struct DeterministicScope {
  bool prev;
  explicit DeterministicScope(bool on) : prev(deterministic()) { set_deterministic(on); }
  ~DeterministicScope() { set_deterministic(prev); }
};

// Mean loss over the first `windows` validation windows of the training context.
double validation_loss(LanguageModel& model, TokenSource& data, const RunConfig& cfg, Device dev) {
  model.train(false);
  TokenLossFn fn = [&](const Tensor& ids, const Tensor& targets) {
    AutocastGuard amp(DType::bf16, cfg.train.dtype == "bf16");
    return model.token_losses(ids.to(dev), targets.to(dev)).to(cpu());
  };
  ContextResult r = evaluate_context(fn, data, cfg.seq_len(), cfg.train.eval_windows,
                                     cfg.train.micro_batch, 1);
  model.train(true);
  return r.loss;
}

// The whole of train(); `file_log` is set once the run directory's train.log is in use, so that
// train() can record there an error that ends the run.
TrainResult train_run(const RunConfig& cfg, TokenSource& data, const TrainOptions& opt,
                      std::shared_ptr<spdlog::logger>& file_log) {
  validate_for_training(cfg, /*check_required=*/false);
  if (opt.run_dir.empty()) throw std::invalid_argument("train: no run directory given");
  std::unique_ptr<Communicator> own_comm;
  Communicator* comm = opt.comm;
  if (!comm) {
    own_comm = make_local_communicator(device_of(cfg));
    comm = own_comm.get();
  }
  const int rank = comm->rank(), world = comm->world_size();
  // One GPU per process: rank r of a multi-process job trains on cuda:<local rank>.
  const Device dev = rank_device(device_of(cfg), comm->launch(), cuda_device_count());
  const bool lead = rank == 0;  // rank 0 writes files and logs
  DeterministicScope deterministic_kernels(cfg.train.deterministic);

  // train.log is opened once the checks below pass: a refused run leaves no trace on disk.
  auto log = make_run_logger("", opt.console && lead);

  // --- model, plan, optimizer ----------------------------------------------------------------
  // A model vocabulary larger than the data's is fine (padded embeddings); smaller would index
  // out of range in the embedding.
  if (data.vocab_size() > cfg.model.vocab_size)
    throw std::invalid_argument("the data's vocabulary (" + std::to_string(data.vocab_size()) +
                                " tokens) is larger than model.vocab_size (" + std::to_string(cfg.model.vocab_size) + ")");
  LanguageModel model(cfg.model);
  model.to(dev);
  model.train(true);
  // The optimizer and checkpoints hold these very handles: Module::to() and load_checkpoint
  // replace data in place, never the tensors themselves.
  const auto named = model.named_parameters();
  TrainResult res;
  res.plan = plan_training(cfg, model.num_parameters(), world);
  const TrainPlan& plan = res.plan;
  // dist.zero 1 shards AdamW's moments over the ranks of DataParallel (one process: nothing to shard).
  const bool data_parallel = comm->backend_name() != "local";
  TrainOptimizer optim(named, AdamWOptions{cfg.train.beta1, cfg.train.beta2, cfg.train.eps, cfg.train.weight_decay},
                       cfg.train.decay_all ? TrainOptimizer::DecayFn() : decay_only_matrices,
                       data_parallel && cfg.dist.zero == 1);
  const LRSchedule sched{cfg.train.lr, cfg.train.min_lr, plan.warmup_steps, plan.total_steps};
  Generator rng(cfg.train.seed);  // no step draws from it today; saved so that any future use resumes exactly

  // --- run directory and resume ---------------------------------------------------------------
  // Everything that can refuse the run is decided before anything is written to the run directory.
  const std::string ckpt_dir = (fs::path(opt.run_dir) / "checkpoints").string();
  const std::string metrics_path = (fs::path(opt.run_dir) / "metrics.jsonl").string();
  // Every checkpoint carries the tokenizer, so eval/generate need nothing but the checkpoint; it
  // must be the one the data was made with.
  const std::string tokenizer_blob = training_tokenizer(cfg, data);
  int64_t step = 0;  // optimizer steps done = index of the next update
  std::optional<std::string> resume_path;
  std::vector<SkippedCheckpoint> broken;  // rank 0: unreadable checkpoints newer than resume_path
  CheckpointMeta resume_meta;
  if (opt.resume) {
    resume_path = agree_on_resume_checkpoint(*comm, ckpt_dir, &broken);  // rank 0 picks, every rank loads
    if (resume_path) {
      resume_meta = read_checkpoint_meta(*resume_path);
      const RunConfig stored = load_config_string(resume_meta.config_yaml, *resume_path + " (stored config)");
      // A changed batch, schedule, model or data would silently turn the run into another one
      // (and could even declare it finished): only on request.
      const auto changes = training_plan_changes(stored, cfg);
      if (!changes.empty() && !opt.allow_config_change) {
        std::string list;
        for (const auto& c : changes) list += "\n  " + c;
        throw std::invalid_argument("cannot resume " + opt.run_dir + " from step " + std::to_string(resume_meta.step) +
                                    ": the config changes its training plan (checkpoint -> now):" + list +
                                    "\nto continue it as it was: " + resume_command(opt.run_dir) +
                                    "\nto continue with these changes: add --allow-config-change");
      }
      if (opt.stop_at_step >= 0 && resume_meta.step >= opt.stop_at_step) {
        log->info("{} is at step {}, already at --stop-at-step {}: nothing to do", opt.run_dir, resume_meta.step,
                  opt.stop_at_step);
        res.start_step = res.end_step = resume_meta.step;
        res.stopped_early = true;
        res.stop_reason = "stop_at_step";
        res.last_checkpoint = *resume_path;
        return res;
      }
    }
  } else if (comm->broadcast_string(list_checkpoints(ckpt_dir).empty() ? "" : "has checkpoints") != "") {
    // Starting over in a used directory would interleave two runs' checkpoints and metrics.
    throw std::invalid_argument("run directory '" + opt.run_dir +
                                "' already has checkpoints: pass --resume to continue it, or choose another --run-dir");
  }
  if (!resume_path && opt.stop_at_step == 0) {
    log->info("--stop-at-step 0: nothing to do");
    res.stopped_early = true;
    res.stop_reason = "stop_at_step";
    return res;
  }

  if (lead) attach_run_log_file(*log, opt.run_dir);
  file_log = log;
  // An unreadable checkpoint is set aside, never deleted and never counted as the newest again
  // (checkpoint.keep_last would keep it and delete the good ones written after it).
  std::string broken_list;
  for (const auto& b : broken) {
    const std::string moved = set_aside_checkpoint(b.path);
    log->warn("checkpoint {} is unreadable ({}); moved aside to {}", b.path, b.problem, moved);
    broken_list += (broken_list.empty() ? "" : ", ") + moved;
  }
  if (opt.resume && !resume_path) {
    if (comm->broadcast_string(broken_list) != "")
      throw std::runtime_error("--resume: no checkpoint of " + ckpt_dir + " can be read (moved aside: " +
                               (broken_list.empty() ? "see rank 0" : broken_list) +
                               "); nothing else was changed. Run the same command again to start the run over from step 0");
    log->warn("--resume: {} has no checkpoint yet; starting from step 0", ckpt_dir);
  }
  std::string newest_checkpoint;  // named when a step fails
  if (resume_path) {
    const CheckpointMeta& meta = resume_meta;
    try {
      optim.load(*resume_path);
    } catch (const std::exception& e) {
      if (world == 1) throw;
      throw std::runtime_error(std::string(e.what()) + " (rank " + std::to_string(rank) +
                               " loads the checkpoint rank 0 chose: the run directory must be on a file "
                               "system that every rank sees)");
    }
    auto tok = meta.extras.find("tokenizer.model");
    if (tok != meta.extras.end() && !data.tokenizer_sha256().empty() &&
        sha256_hex(tok->second) != data.tokenizer_sha256())
      throw std::invalid_argument("cannot resume " + *resume_path + ": it was trained on data of another tokenizer than " +
                                  data.describe());
    step = meta.step;
    rng.seed = meta.rng_seed;
    rng.offset = meta.rng_offset;
    newest_checkpoint = *resume_path;
    // Settings that do not change the plan (device, logging, evaluation, ...) may differ; said.
    for (const auto& d : config_differences(load_config_string(meta.config_yaml, *resume_path), cfg))
      log->warn("config differs from the checkpoint's: {}", d);
    log->info("resumed from {} (step {}, {} tokens)", *resume_path, meta.step, meta.tokens);
  }
  res.start_step = step;
  // A new run from another run's parameters (train.init_from); the optimizer and schedule start
  // fresh. A resumed run continues from its own checkpoint instead.
  if (step == 0 && !cfg.train.init_from.empty()) {
    const InitFromResult init = init_from_checkpoint(cfg.train.init_from, cfg, named, data.tokenizer_sha256());
    for (const auto& d : init.differences) log->info("model config differs from the init checkpoint's: {}", d);
    log->info("initialized from {} (step {} of its run); optimizer and schedule start fresh", cfg.train.init_from,
              init.meta.step);
  }
  if (lead) {
    fs::create_directories(ckpt_dir);
    write_file_atomic((fs::path(opt.run_dir) / "config.yaml").string(), dump_config(cfg), "run config");
    if (step == 0) fs::remove(metrics_path);  // a fresh run starts a fresh metrics file
  }
  MetricsLog metrics(lead ? metrics_path : "/dev/null", lead ? step : -1);
  const double elapsed_before = metrics.last_row().contains("elapsed_s") ? metrics.last_row()["elapsed_s"].get<double>() : 0.0;

  log->info("model: {} ({}, {} backbone), device {}", cfg.name.empty() ? cfg.model.mixer : cfg.name, cfg.model.mixer,
            cfg.model.backbone, dev.str());
  log->info("plan: {}", plan.summary());
  if (cfg.train.deterministic)
    log->info("deterministic mode: GPU reductions in a fixed order (train.deterministic)");
  // Data parallelism whenever a launcher started us (even at world size 1, so that a single-GPU
  // `mpirun -np 1` exercises the same path as N GPUs); replicas start from rank 0's values.
  std::unique_ptr<DataParallel> ddp;
  if (data_parallel) {
    ddp = std::make_unique<DataParallel>(
        *comm, named, DdpOptions{static_cast<size_t>(cfg.dist.bucket_mb * (1 << 20)), cfg.dist.overlap, cfg.dist.timeline,
                                 optim.sharded()});
    ddp->broadcast_parameters(0);
    optim.attach(*comm, *ddp);
    log->info("data parallel: {} rank(s), backend {}, launcher {}, {} gradient buckets of <= {} MB ({}), overlap {}",
              world, comm->backend_name(), comm->launch().launcher, ddp->num_buckets(), cfg.dist.bucket_mb,
              optim.sharded() ? "reduce-scatter, ZeRO-1" : "all-reduce", cfg.dist.overlap ? "on" : "off");
    if (optim.sharded()) {  // every rank's share of AdamW's moments, in bytes
      std::string per_rank;
      for (uint64_t b : comm->all_gather<uint64_t>(optim.state_bytes())) per_rank += (per_rank.empty() ? "" : " ") + std::to_string(b);
      log->info("ZeRO-1: AdamW moments per rank (bytes): {} (unsharded: {})", per_rank, optim.full_state_bytes());
    }
  } else if (cfg.dist.zero == 1) {
    log->info("dist.zero 1: one process, nothing to shard (plain AdamW)");
  }
  log->info("data: {}", data.describe());
  std::unique_ptr<MetricsLog> timeline_log;  // dist.timeline: per-step bucket timelines (rank 0)
  if (ddp && cfg.dist.timeline && lead)
    timeline_log = std::make_unique<MetricsLog>((fs::path(opt.run_dir) / "ddp_timeline.jsonl").string(), step);

  auto save = [&](int64_t done, const OptimizerState& optim_state) {
    CheckpointMeta meta;
    meta.step = done;
    meta.tokens = done * plan.batch_tokens;
    meta.rng_seed = rng.seed;
    meta.rng_offset = rng.offset;
    meta.config_yaml = dump_config(cfg);
    if (!tokenizer_blob.empty()) meta.extras["tokenizer.model"] = tokenizer_blob;
    const std::string path = checkpoint_path(ckpt_dir, done);
    auto t0 = Clock::now();
    save_checkpoint(path, named, &optim_state, meta);
    const double mb = fs::file_size(path) / 1e6;
    for (const auto& r : prune_checkpoints(ckpt_dir, cfg.checkpoint.keep_last, done)) log->info("removed old checkpoint {}", r);
    log->info("saved checkpoint {} ({:.1f} MB, {:.2f}s)", path, mb, seconds_since(t0));
    res.last_checkpoint = newest_checkpoint = path;
  };

  const bool has_val = data.val_windows(cfg.seq_len()) > 0;
  if (cfg.train.eval_every > 0 && !has_val)
    log->warn("train.eval_every is set but the data has no validation window of {} tokens; skipping validation",
              cfg.seq_len() + 1);
  auto run_eval = [&](int64_t done, double elapsed) {
    const double v = validation_loss(model, data, cfg, dev);
    res.val_losses.emplace_back(done, v);
    metrics.write({{"step", done}, {"tokens", done * plan.batch_tokens}, {"val_loss", v}, {"val_ppl", std::exp(v)},
                   {"elapsed_s", elapsed}});
    log->info("step {}/{} | val loss {:.4f} | val ppl {:.2f}", done, plan.total_steps, v, std::exp(v));
  };

  // --- the loop ---------------------------------------------------------------------------------
  // Handlers live for the loop only: outside it, Ctrl-C keeps its usual meaning.
  StopSignals signals;
  clear_stop_request();
  ProgressLine progress(plan.total_steps, opt.console && lead && stderr_is_terminal());
  const double flops_per_token = 3.0 * model.flops_per_token(plan.seq_len);  // forward + backward
  const auto t_start = Clock::now();
  if (step == 0 && cfg.train.eval_every > 0 && has_val) run_eval(0, elapsed_before);
  double window_time = 0;
  int64_t window_steps = 0;
  while (step < plan.total_steps) {
    const auto t0 = Clock::now();
    const double lr = sched.at(step);
    apply_ttt_base_lr_warmup(model, step, plan.warmup_steps);
    if (ddp) ddp->zero_grad();  // gradients are views into the all-reduce buckets
    else optim.zero_grad();
    // All rows of the step at once, then sliced per micro-batch: the data of a step depends on
    // the global batch only, not on how it is split into micro-batches.
    Tensor rows;
    try {
      rows = data.train_rows(step, rank, world, plan.micro_batch * plan.accumulation, plan.seq_len);
    } catch (const std::exception& e) {
      throw std::runtime_error("step " + std::to_string(step + 1) + ": reading the training data failed: " + e.what());
    }
    double loss_sum = 0;
    for (int64_t micro = 0; micro < plan.accumulation; ++micro) {
      auto [ids, targets] = split_inputs_targets(rows.narrow(0, micro * plan.micro_batch, plan.micro_batch));
      Tensor loss;
      {
        AutocastGuard amp(DType::bf16, cfg.train.dtype == "bf16");  // backward keeps the forward's choice
        loss = model.loss(ids.to(dev), targets.to(dev));
      }
      loss_sum += loss.item();
      if (ddp) ddp->set_sync(micro == plan.accumulation - 1);  // reduce on the last micro-batch only
      // Scaling each micro loss makes the accumulated .grad the gradient of the step's mean loss.
      backward({mul_scalar(loss, 1.0 / static_cast<double>(plan.accumulation))});
    }
    if (ddp) ddp->finish();  // .grad = mean over ranks
    if (timeline_log) {
      timeline_log->write(timeline_row(step + 1, ddp->timeline()));
      if (step == res.start_step || step + 1 == plan.total_steps)
        log->info("step {} all-reduce timeline: {}", step + 1, timeline_summary(ddp->timeline()));
    }
    // The loss over all ranks, and whether any rank wants to stop (signal, time limit).
    const int signal = stop_requested() ? (stop_signal() ? stop_signal() : -1) : 0;
    const bool time_up = cfg.train.max_minutes > 0 && seconds_since(t_start) >= 60.0 * cfg.train.max_minutes;
    const StepAgreement agreed = agree_on_step(*comm, loss_sum / static_cast<double>(plan.accumulation), signal, time_up);
    const double loss = agreed.loss;
    const double gnorm = optim.grad_norm();  // ZeRO-1: from the shards, summed over ranks
    // Stop before the update: a NaN written into the weights would be saved by the next checkpoint.
    if (!std::isfinite(loss) || !std::isfinite(gnorm))
      throw std::runtime_error("non-finite " + std::string(std::isfinite(loss) ? "gradient norm" : "loss") + " at step " +
                               std::to_string(step + 1) + "; parameters not updated" +
                               (newest_checkpoint.empty() ? "" : " (last checkpoint: " + newest_checkpoint + ")"));
    optim.step(lr, clip_scale(gnorm, cfg.train.grad_clip));
    if (!ddp) optim.zero_grad();
    ++step;
    res.losses.push_back(loss);

    // --- bookkeeping ---
    const double dt = seconds_since(t0);
    const double elapsed = elapsed_before + seconds_since(t_start);
    window_time += dt;
    ++window_steps;
    const double tok_s = static_cast<double>(plan.batch_tokens) / dt;
    // ETA from this session's mean step time (the first steps of a run include warm-up costs,
    // but a mean over the session settles quickly and never jumps like a last-step estimate).
    const double eta = seconds_since(t_start) / static_cast<double>(step - res.start_step) *
                       static_cast<double>(plan.total_steps - step);
    nlohmann::json mfu = nullptr;
    if (cfg.train.peak_tflops > 0) mfu = flops_per_token * tok_s / (cfg.train.peak_tflops * 1e12);
    metrics.write({{"step", step}, {"tokens", step * plan.batch_tokens}, {"loss", loss}, {"lr", lr},
                   {"grad_norm", gnorm}, {"tokens_per_s", tok_s}, {"mfu", mfu}, {"elapsed_s", elapsed}});
    const double peak_memory = static_cast<double>(backend(dev).memory_peak());
    progress.update(step, loss, tok_s, peak_memory, eta);
    // The first step of a session is logged too: a sign of life before log_every steps have passed
    // (its time includes the warm-up).
    if (step % cfg.train.log_every == 0 || step == plan.total_steps || step == res.start_step + 1) {
      progress.clear();
      const double avg_tok_s = static_cast<double>(plan.batch_tokens * window_steps) / window_time;
      log->info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {} tok/s{} | tokens {} | peak mem {} | elapsed {} | ETA {}",
                step, plan.total_steps, loss, lr, gnorm, human_count(avg_tok_s),
                mfu.is_null() ? "" : fmt::format(" | MFU {:.1f}%", 100.0 * mfu.get<double>()),
                human_count(static_cast<double>(step * plan.batch_tokens)), human_bytes(peak_memory),
                format_duration(elapsed), format_duration(eta));
      window_time = 0;
      window_steps = 0;
    }
    if (cfg.train.eval_every > 0 && has_val && (step % cfg.train.eval_every == 0 || step == plan.total_steps)) {
      progress.clear();
      run_eval(step, elapsed);
    }

    // --- stop or save ---
    // Checked only between steps, so a checkpoint never holds half an update.
    std::string reason = agreed.stop_reason;
    if (reason.empty() && opt.stop_at_step >= 0 && step >= opt.stop_at_step && step < plan.total_steps)
      reason = "stop_at_step";
    const bool periodic = cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0;
    if (periodic || step == plan.total_steps || !reason.empty()) {
      // Replicas must be bit-identical: check before their state is written down.
      if (ddp) ddp->check_parameters_in_sync();
      const OptimizerState optim_state = optim.checkpoint_state();  // ZeRO-1: gathered to rank 0
      if (lead) {
        progress.clear();
        save(step, optim_state);
      }
    }
    if (!reason.empty()) {
      res.stopped_early = true;
      res.stop_reason = reason;
      log->info("interrupted at step {} ({}), checkpoint saved: {}", step, reason, res.last_checkpoint);
      break;
    }
  }
  progress.clear();
  res.end_step = step;
  if (!res.stopped_early) log->info("done: {} steps, {} tokens, {}", step, human_count(static_cast<double>(step * plan.batch_tokens)),
                                    format_duration(elapsed_before + seconds_since(t_start)));
  log->flush();
  return res;
}

}  // namespace

TrainResult train(const RunConfig& cfg, TokenSource& data, const TrainOptions& opt) {
  std::shared_ptr<spdlog::logger> file_log;
  try {
    return train_run(cfg, data, opt, file_log);
  } catch (const std::exception& e) {
    // main() prints the error to the console; train.log keeps it with the run.
    if (file_log) log_error_to_file(*file_log, e.what());
    throw;
  }
}

}  // namespace ttt
