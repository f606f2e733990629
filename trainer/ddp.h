// trainer/ddp.h — data parallelism: gradients averaged over the ranks in buckets, overlapped
// with the backward pass (the scheme of PyTorch DDP's Reducer, with gradient_as_bucket_view).
//
// Buckets: parameters are grouped in *reverse* registration order — roughly the order in which
// backward produces their gradients — into buckets of about `bucket_bytes` (25 MB by default,
// DDP's default); a parameter larger than that gets a bucket of its own, and a bucket never mixes
// dtypes or devices. Each bucket is one flat buffer, and every parameter's .grad is a view into
// it, so backward accumulates straight into the buffer and no gradient is ever copied.
//
// Overlap: a post-accumulate-grad hook on every parameter marks its gradient ready; the engine
// runs it as soon as that gradient is complete (autograd/engine.cpp runs a leaf's AccumulateGrad
// once its inputs are, before the earlier layers' backward). On the last micro-batch of a step
// (set_sync(true); the earlier micro-batches only accumulate), a bucket is all-reduced (mean over
// ranks) as soon as all its gradients are ready, while backward goes on with the earlier layers.
// Buckets are launched strictly in bucket order, so every rank issues the same sequence of
// collectives even if gradients become ready in a different order.
//
// Timeline (DdpOptions::timeline, `dist.timeline`): per bucket of the last synced step, when it
// became ready, when its all-reduce started and ended, against the end of backward (the call of
// finish()); on NCCL these are CUDA events, i.e. GPU times (see CommStamp in comm.h).
// finish() launches whatever is left (parameters that got no gradient contribute zeros) and waits
// for all buckets; call it after the last backward and before clipping and the optimizer step.
//
// Note [late gradients]: a parameter whose hook fires again after its bucket was launched (a
// leaf reached by two separate backward() calls in the same micro-batch) would change a buffer
// that is being reduced; that is reported as an error rather than silently averaged wrong.
//
// ZeRO-1 (DdpOptions::reduce_scatter, `dist.zero: 1`): the same buckets, hooks and launch order,
// but each bucket is reduce-scattered instead of all-reduced: its buffer is padded to a multiple
// of the world size W and rank r receives the mean over ranks of slice r only (the rest of the
// buffer keeps this rank's own gradients). ShardedAdamW (trainer/zero.h) updates the parameters'
// elements of those slices and all-gathers them back.
//
// World size 1 with the local communicator needs none of this: the trainer does not build it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainer/comm.h"

namespace ttt {

struct DdpOptions {
  size_t bucket_bytes = 25u << 20;  // dist.bucket_mb
  bool overlap = true;              // dist.overlap: launch buckets during backward
  bool timeline = false;            // dist.timeline: record each step's per-bucket timeline
  bool reduce_scatter = false;      // dist.zero 1: rank r gets the mean of slice r of each bucket
};

// A bucket as ZeRO-1 sees it: the flat gradient buffer (numel a multiple of the world size when
// reduce-scattered) and each member parameter's element offset in it.
struct BucketMembers {
  Tensor buffer;
  std::vector<std::pair<size_t, int64_t>> members;  // (index into DataParallel::parameters(), offset)
};

// One bucket of a step's timeline. Times are seconds relative to the end of backward (when
// finish() was called; on NCCL when the GPU finished the kernels enqueued before it): negative =
// before it. The MPI backend sees a collective end only when it polls it (at the next gradient
// hook or in finish()), so its end is an upper bound.
struct BucketTiming {
  int bucket = 0;           // launch order
  size_t bytes = 0;
  int params = 0;
  double ready_s = 0;       // its last gradient was complete
  double start_s = 0;       // its all-reduce started
  double end_s = 0;         // ... and ended
  bool launched_in_backward = false;  // from a gradient hook (not by finish())
};

// What bucket assignment needs to know of a parameter.
struct BucketParam {
  size_t bytes = 0;
  DType dtype = DType::f32;
  Device device;
};

// Indices of `params` (given in registration order) per bucket, buckets in launch order: the
// last parameters first. Pure function, tested on its own.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<BucketParam>& params, size_t bucket_bytes);

class DataParallel {
 public:
  // Registers the hooks and builds the buckets; checks that every rank has the same parameters
  // (names, shapes, dtypes) and throws CommError naming the first difference otherwise.
  DataParallel(Communicator& comm, std::vector<std::pair<std::string, Tensor>> named_params, DdpOptions opt = {});
  ~DataParallel();  // the hooks stay registered but do nothing afterwards
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Copies rank `root`'s parameter values to every rank (call once after init / loading).
  void broadcast_parameters(int root = 0);
  // Throws CommError when the parameters differ between ranks (a cheap checksum per tensor).
  void check_parameters_in_sync();

  // Zeroes every bucket and makes each .grad a view into its bucket (use instead of dropping
  // the gradients: a dropped .grad is re-attached on the next backward at the cost of a copy).
  void zero_grad();
  // Whether the next backward() is the last micro-batch of the step (its gradients get reduced).
  void set_sync(bool last_micro_batch);
  // Launches the remaining buckets and waits for all; .grad then holds the mean over ranks.
  void finish();

  // The parameters it reduces, in registration order (frozen ones and second names of a shared
  // tensor left out).
  std::vector<std::pair<std::string, Tensor>> parameters() const;
  // Every bucket's buffer and members, in launch order.
  std::vector<BucketMembers> buckets() const;
  bool reduce_scatter() const;

  int num_buckets() const;
  // Parameter indices (registration order) of each bucket, in launch order.
  std::vector<std::vector<size_t>> bucket_layout() const;
  // Buckets launched from hooks (during backward) in the last finish()ed step: the overlap.
  int buckets_launched_in_backward() const;
  // The per-bucket timeline of the last finish()ed step (empty unless DdpOptions::timeline).
  std::vector<BucketTiming> timeline() const;
  // The reading of the timeline's clock (CommStamp::seconds) that its times are relative to.
  double timeline_zero_s() const;

  struct State;  // shared with the hooks

 private:
  Communicator& comm_;
  std::shared_ptr<State> state_;
};

}  // namespace ttt
