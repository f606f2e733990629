// trainer/train_loop.h — the training loop of `ttt train`.
//
// One optimizer step = `accumulation` micro-batches, each forward + backward of the mean
// next-token loss scaled by 1/accumulation, gradients accumulated in .grad in a fixed order; then
// global-norm clipping, AdamW with the warmup-cosine lr, and the bookkeeping (metrics row, log
// line, periodic validation loss, checkpoint). Everything a step depends on is a function of the
// step number (data rows, lr) or is in the checkpoint (parameters, moments, optimizer count, RNG),
// so a resumed run reproduces the uninterrupted one bit for bit on the CPU.
//
// Run directory:  config.yaml (resolved), metrics.jsonl, train.log, checkpoints/step_N.h5.
// Stopping early (SIGINT/SIGTERM, train.max_minutes, TrainOptions::stop_at_step): the step in
// flight finishes, a checkpoint is written, and train() returns normally (stopped_early = true).
// Errors: a refused start (bad tokenizer, a resume that changes the plan, broken checkpoints)
// writes nothing to the run directory; an error during the run is also logged in train.log.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer/config.h"
#include "trainer/token_source.h"
#include "trainer/train_plan.h"

namespace ttt {

class Communicator;

struct TrainOptions {
  std::string run_dir;        // required
  bool resume = false;        // continue from the newest valid checkpoint of run_dir/checkpoints
  int64_t stop_at_step = -1;  // checkpoint and stop once this many steps are done (-1 = off); a run
                              // already there returns at once, writing nothing
  bool allow_config_change = false;  // resume even when the config changes the training plan
                                     // (trainer/run_checks.h); otherwise that is an error
  bool console = true;        // log to stderr (the file log is always written)
  // Data parallelism (trainer/comm.h): this process's rank among `comm->world_size()`; null = one
  // process. With a communicator other than the local one, gradients are averaged over the ranks
  // (trainer/ddp.h), rank r reads rows [r*B, (r+1)*B) of each step's global batch, and only rank 0
  // writes files and logs.
  Communicator* comm = nullptr;
};

struct TrainResult {
  TrainPlan plan;
  int64_t start_step = 0;         // steps done before this session (0, or the resumed checkpoint's)
  int64_t end_step = 0;           // steps done when train() returned
  bool stopped_early = false;
  std::string stop_reason;        // "SIGINT", "SIGTERM", "time limit", "stop_at_step"
  std::vector<double> losses;     // training loss of each step of this session
  std::vector<std::pair<int64_t, double>> val_losses;  // (steps done, validation loss)
  std::string last_checkpoint;    // path of the last checkpoint written ("" if none)
};

TrainResult train(const RunConfig& cfg, TokenSource& data, const TrainOptions& opt);

}  // namespace ttt
