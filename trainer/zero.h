// trainer/zero.h — ZeRO-1: AdamW with its moments sharded over the data-parallel ranks (stage 1 of
// Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models";
// `dist.zero: 1`).
//
// The flat parameter space is DataParallel's buckets (DdpOptions::reduce_scatter): each bucket's
// buffer is cut into W equal slices (padded to a multiple of the world size W) and rank r owns
// slice r of every bucket. A step:
//   1. backward: each bucket is reduce-scattered (mean) as soon as its gradients are in, from the
//      same gradient hooks and in the same order as the all-reduce of dist.zero 0, so it overlaps
//      backward the same way; rank r then holds the mean gradient of its slices;
//   2. grad_norm(): the global gradient norm from the shards: this rank's sum of squares over its
//      slices, added over the ranks in rank order (every rank gets the same bits, so the same clip
//      factor and the same non-finite decision);
//   3. step(): the same AdamW (one multi-tensor call) over this rank's *segments*, the pieces of
//      parameters that lie in its slices; m and v exist for the segments only, so a rank holds
//      ~1/W of the optimizer state (state_bytes());
//   4. the updated slices are all-gathered in place in the buckets' gradient buffers (the
//      gradients are spent by then: no extra buffer), and copied into the parameters.
// Every element gets the same AdamW arithmetic as with dist.zero 0, from the same averaged
// gradient (reduce-scatter and all-reduce add the same ranks' values); only the gradient norm's
// summation order differs (float rounding, then carried along by AdamW).
// After step() the parameters' .grad views hold weights, not gradients, until the next
// DataParallel::zero_grad().
//
// Checkpoints (trainer/checkpoint.h) keep the unsharded format: gather_moments() assembles every
// parameter's full m and v on rank 0 before it writes, and load_moments() takes this rank's
// segments from the full moments that every rank reads. So a checkpoint resumes at any world size
// and with either dist.zero, and eval/export/h5py read it as any other. (Why not one file per rank
// with an index: every reader would have to reshard, and a checkpoint would be tied to W. The cost
// of gathering: rank 0 holds one full float32 copy of m and v in host memory while writing, 8
// bytes per parameter, and each rank reads the full moments from the file when resuming.)
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint.h"
#include "trainer/comm.h"
#include "trainer/ddp.h"
#include "trainer/optimizer.h"

namespace ttt {

class ShardedAdamW {
 public:
  // `ddp` must reduce-scatter (DdpOptions::reduce_scatter) and hold exactly `named_params` (every
  // parameter trainable and registered once); `decay` as for AdamW. `comm` and `ddp` (its gradient
  // buffers) must outlive this object.
  ShardedAdamW(Communicator& comm, DataParallel& ddp, const std::vector<std::pair<std::string, Tensor>>& named_params,
               AdamWOptions opt, const std::function<bool(const std::string&, const Tensor&)>& decay = nullptr);

  // Collective. The global gradient norm (after DataParallel::finish()).
  double grad_norm();
  // Collective. AdamW on this rank's segments (gradients times grad_scale), then the all-gather.
  void step(double lr, double grad_scale = 1.0);

  int64_t step_count() const { return adam_->step_count(); }
  void set_step_count(int64_t t) { adam_->set_step_count(t); }

  // Bytes of m and v on this rank, and what unsharded AdamW holds for the same parameters.
  size_t state_bytes() const;
  size_t full_state_bytes() const;
  // This rank's segments: (parameter index, first element, elements), for tests.
  struct Segment {
    size_t param = 0;        // index into named_params
    int64_t begin = 0, n = 0;  // elements [begin, begin + n) of the flattened parameter
    size_t bucket = 0;
    int64_t buffer_offset = 0;  // of element `begin` in the bucket's buffer
  };
  const std::vector<Segment>& segments() const { return segments_; }

  // Collective. The full-shape moments (CPU, float32) of every parameter, on rank `root`; other
  // ranks get only the step count and names.
  OptimizerState gather_moments(int root = 0);
  // Full-shape moments for this rank's parameters (e.g. read from a checkpoint): keeps its
  // segments, sets the step count. Not collective.
  void load_moments(const OptimizerState& full);

 private:
  Communicator& comm_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<BucketMembers> buckets_;
  std::vector<Segment> segments_;
  std::unique_ptr<AdamW> adam_;  // over the segments (views of the parameters)
};

}  // namespace ttt
