// trainer/cli_train.cpp — `ttt train --config X [--set k=v ...] [--run-dir DIR] [--resume]`.
#include <cstdio>
#include <filesystem>

#include "trainer/cli_common.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/run_checks.h"
#include "trainer/token_source.h"
#include "trainer/train_loop.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

struct TrainArgs {
  ConfigArgs config;
  std::string run_dir, data_dir, device, init_from;
  bool resume = false, allow_config_change = false;
  int64_t stop_at_step = -1;
};

// Without --config, `--init-from C` trains with C's stored config (model and recipe), --set on top.
RunConfig init_checkpoint_config(const std::string& checkpoint, const std::vector<std::string>& sets) {
  if (checkpoint.empty()) throw std::invalid_argument("--config is required (or --init-from CHECKPOINT to use its config)");
  if (!fs::exists(checkpoint)) throw std::invalid_argument("--init-from: '" + checkpoint + "' does not exist");
  RunConfig cfg = load_config_string(read_checkpoint_meta(checkpoint).config_yaml, checkpoint + " (stored config)");
  for (const auto& s : sets) apply_override(cfg, s);
  return cfg;
}

void run_train(const TrainArgs& a) {
  std::vector<std::string> sets = a.config.sets;
  // Shorthands for the two keys most runs change; --set still wins when given after them.
  if (!a.data_dir.empty()) sets.insert(sets.begin(), "data.dir=" + a.data_dir);
  if (!a.device.empty()) sets.insert(sets.begin(), "train.device=" + a.device);
  if (!a.init_from.empty()) sets.insert(sets.begin(), "train.init_from=" + a.init_from);
  RunConfig cfg = a.config.path.empty() ? init_checkpoint_config(a.init_from, sets) : load_config(a.config.path, sets);
  validate_for_training(cfg);
  if (a.config.path.empty() && a.run_dir.empty())
    throw std::invalid_argument("--run-dir is required when the config comes from --init-from");
  // Stored absolute (in config.yaml and every checkpoint), so that eval, generate and a resume work
  // from any directory.
  for (std::string* p : {&cfg.data.dir, &cfg.data.tokenizer})
    if (!p->empty()) *p = fs::absolute(*p).lexically_normal().string();
  const std::string run_dir = !a.run_dir.empty() ? a.run_dir : (fs::path("runs") / fs::path(a.config.path).stem()).string();
  // Under a launcher (mpirun, srun, torchrun-style RANK/WORLD_SIZE) this process is one rank of a
  // data-parallel job: see trainer/comm.h for how the backend is chosen.
  const LaunchInfo launch = detect_launch();
  // Every rank fails the batch split alike (it depends on the config and the world size alone), so
  // it is checked before any communicator exists: each rank reports it and exits, and none waits in
  // a collective. Through comm->abort below, the first rank to fail would kill the others before
  // they could print.
  if (launch.world_size > 1) {
    try {
      accumulation_steps(cfg, launch.world_size);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("rank " + std::to_string(launch.rank) + " of " +
                                  std::to_string(launch.world_size) + ": " + e.what());
    }
  }
  const Device dev = rank_device(parse_device(cfg.train.device), launch, cuda_device_count());
  auto comm = make_communicator(dev, CommOptions{cfg.dist.backend, cfg.dist.timeout_s}, launch);
  TrainResult r;
  try {
    auto data = open_shard_source(cfg.data.dir, cfg.train.seed);
    TrainOptions opt;
    opt.run_dir = run_dir;
    opt.resume = a.resume;
    opt.stop_at_step = a.stop_at_step;
    opt.allow_config_change = a.allow_config_change;
    opt.comm = comm.get();
    r = train(cfg, *data, opt);
  } catch (const std::exception& e) {
    // One rank failing must stop the others (they would wait in their next collective).
    if (comm->world_size() > 1) comm->abort(e.what());
    throw;
  }
  if (comm->rank() != 0) return;
  if (r.stopped_early)
    std::printf("to continue: %s\n", resume_command(run_dir).c_str());
  else
    std::printf("finished %lld steps; run directory: %s (metrics.jsonl, train.log, checkpoints/)\n",
                static_cast<long long>(r.end_step), run_dir.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model from a YAML config");
  auto a = std::make_shared<TrainArgs>();
  a->config.add_to(cmd, false);  // required unless --init-from supplies the config
  cmd->add_option("--run-dir", a->run_dir, "Run directory (default: runs/<config name>)");
  cmd->add_flag("--resume", a->resume, "Continue from the newest valid checkpoint of the run directory");
  cmd->add_flag("--allow-config-change", a->allow_config_change,
                "With --resume: continue even though the config changes the training plan (batch, schedule, "
                "length, model, data, ...); without it such a resume is refused, naming the changed keys");
  cmd->add_option("--data", a->data_dir, "Prepared data directory (same as --set data.dir=DIR)");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N (same as --set train.device=...)");
  cmd->add_option("--init-from", a->init_from,
                  "Start a new run from this checkpoint's parameters, with a fresh optimizer and schedule (same as "
                  "--set train.init_from=C); without --config, the checkpoint's own config is used");
  cmd->add_option("--stop-at-step", a->stop_at_step,
                  "Save a checkpoint and exit once this many steps are done (the schedule still "
                  "spans the whole run; continue with --resume)")
      ->check(cli::positive_int());
  cmd->callback([a]() { run_train(*a); });
}

}  // namespace ttt
