// trainer/train_optimizer.cpp — see train_optimizer.h.
#include "trainer/train_optimizer.h"

#include <stdexcept>

namespace ttt {

TrainOptimizer::TrainOptimizer(const NamedTensors& named, AdamWOptions opt, DecayFn decay, bool sharded)
    : named_(named), opt_(opt), decay_(std::move(decay)), sharded_(sharded) {
  if (!sharded_) adam_ = std::make_unique<AdamW>(named_, opt_, decay_);
}

CheckpointMeta TrainOptimizer::load(const std::string& path) {
  if (adam_) return load_checkpoint(path, named_, adam_.get());
  if (zero_) throw std::logic_error("TrainOptimizer::load after attach()");
  // Full-shape moments in host memory until the shards exist; attach() keeps this rank's pieces.
  OptimizerState full;
  for (const auto& [name, p] : named_)
    full.moments.push_back({name, zeros(p.shape(), opts(DType::f32)), zeros(p.shape(), opts(DType::f32))});
  CheckpointMeta meta = load_checkpoint(path, named_, &full);
  pending_ = std::move(full);
  return meta;
}

void TrainOptimizer::attach(Communicator& comm, DataParallel& ddp) {
  if (!sharded_) return;
  zero_ = std::make_unique<ShardedAdamW>(comm, ddp, named_, opt_, decay_);
  if (pending_) zero_->load_moments(*pending_);
  pending_.reset();
}

double TrainOptimizer::grad_norm() {
  if (zero_) return zero_->grad_norm();
  if (sharded_) throw std::logic_error("TrainOptimizer: sharded but not attached");
  std::vector<Tensor> params;
  for (const auto& [name, p] : named_) params.push_back(p);
  return global_grad_norm(params);
}

void TrainOptimizer::step(double lr, double grad_scale) {
  if (zero_) return zero_->step(lr, grad_scale);
  if (sharded_) throw std::logic_error("TrainOptimizer: sharded but not attached");
  adam_->step(lr, grad_scale);
}

void TrainOptimizer::zero_grad() {
  if (adam_) adam_->zero_grad();
}

OptimizerState TrainOptimizer::checkpoint_state() {
  if (zero_) return zero_->gather_moments(0);
  if (sharded_) throw std::logic_error("TrainOptimizer: sharded but not attached");
  return optimizer_state_of(*adam_);
}

size_t TrainOptimizer::state_bytes() const {
  if (zero_) return zero_->state_bytes();
  return adam_ ? full_state_bytes() : 0;
}

size_t TrainOptimizer::full_state_bytes() const {
  size_t n = 0;
  for (const auto& [name, p] : named_) n += static_cast<size_t>(p.numel());
  return 2 * sizeof(float) * n;
}

}  // namespace ttt
