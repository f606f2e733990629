// trainer/train_optimizer.h — the train loop's optimizer: AdamW over every parameter (dist.zero 0,
// or one process), or ShardedAdamW over this rank's shard (dist.zero 1 with data parallelism;
// trainer/zero.h). One interface for the loop: norm, step, resume, checkpoint state.
//
// Order of use: construct (unsharded AdamW exists at once; the sharded one needs the gradient
// buckets), load() a checkpoint if resuming, attach(DataParallel) once the buckets exist (the
// sharded optimizer is built then and takes its segments of the loaded moments), then step.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "trainer/checkpoint.h"
#include "trainer/ddp.h"
#include "trainer/optimizer.h"
#include "trainer/zero.h"

namespace ttt {

class TrainOptimizer {
 public:
  using DecayFn = std::function<bool(const std::string&, const Tensor&)>;
  TrainOptimizer(const NamedTensors& named, AdamWOptions opt, DecayFn decay, bool sharded);

  // Loads parameters and optimizer state from a checkpoint (either kind: the format is the same).
  CheckpointMeta load(const std::string& path);
  // With `sharded`: builds the ShardedAdamW over ddp's buckets (ddp must reduce-scatter).
  void attach(Communicator& comm, DataParallel& ddp);

  bool sharded() const { return sharded_; }
  // Collective when sharded. The global gradient norm (after DataParallel::finish()).
  double grad_norm();
  void step(double lr, double grad_scale);
  // Drops the gradients (unsharded, without DataParallel: DataParallel zeroes its buckets itself).
  void zero_grad();
  // Collective when sharded: the full state to write, complete on rank 0.
  OptimizerState checkpoint_state();

  // Bytes of AdamW moments held by this process, and unsharded.
  size_t state_bytes() const;
  size_t full_state_bytes() const;

 private:
  NamedTensors named_;
  AdamWOptions opt_;
  DecayFn decay_;
  bool sharded_;
  std::unique_ptr<AdamW> adam_;            // unsharded
  std::unique_ptr<ShardedAdamW> zero_;     // sharded, after attach()
  std::optional<OptimizerState> pending_;  // sharded: full moments loaded before attach()
};

}  // namespace ttt
