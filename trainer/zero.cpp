// trainer/zero.cpp — see zero.h.
#include "trainer/zero.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace ttt {

namespace {
// The flattened view of a contiguous parameter, outside autograd (same storage).
Tensor flat(const Tensor& p) { return p.detach().reshape({p.numel()}); }
}  // namespace

ShardedAdamW::ShardedAdamW(Communicator& comm, DataParallel& ddp,
                           const std::vector<std::pair<std::string, Tensor>>& named_params, AdamWOptions opt,
                           const std::function<bool(const std::string&, const Tensor&)>& decay)
    : comm_(comm), params_(ddp.parameters()), buckets_(ddp.buckets()) {
  if (!ddp.reduce_scatter())
    throw std::logic_error("ShardedAdamW: the DataParallel must reduce-scatter (DdpOptions::reduce_scatter)");
  // The segments cover the buckets, which cover DataParallel's parameters: those must be all of
  // the optimizer's, or some parameter would silently never be updated.
  bool same = named_params.size() == params_.size();
  for (size_t i = 0; same && i < params_.size(); ++i)
    same = named_params[i].first == params_[i].first && named_params[i].second.is_same(params_[i].second);
  if (!same)
    throw std::invalid_argument("dist.zero 1: every parameter must be trainable and registered once (the gradient "
                                "buckets do not cover the optimizer's parameters)");

  const int64_t w = comm.world_size(), r = comm.rank();
  std::vector<std::pair<std::string, Tensor>> seg_params;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    const BucketMembers& b = buckets_[k];
    const int64_t slice = b.buffer.numel() / w, lo = r * slice, hi = lo + slice;
    for (const auto& [i, offset] : b.members) {
      const Tensor& p = params_[i].second;
      const int64_t a = std::max(lo, offset), e = std::min(hi, offset + p.numel());
      if (a >= e) continue;
      Segment s{i, a - offset, e - a, k, a};
      Tensor seg = flat(p).narrow(0, s.begin, s.n);
      seg.set_grad(b.buffer.narrow(0, s.buffer_offset, s.n));  // the reduce-scattered mean lands here
      seg_params.emplace_back(params_[i].first + "[" + std::to_string(s.begin) + ":" + std::to_string(s.begin + s.n) + "]",
                              seg);
      segments_.push_back(s);
    }
  }
  adam_ = std::make_unique<AdamW>(seg_params, opt);
  // Weight decay is a property of the whole parameter (its name, its rank), not of the piece.
  for (size_t j = 0; j < segments_.size(); ++j) {
    const auto& [name, p] = params_[segments_[j].param];
    adam_->slots()[j].decay = decay ? decay(name, p) : true;
  }
}

double ShardedAdamW::grad_norm() {
  std::vector<Tensor> mine;
  for (const auto& s : adam_->slots()) mine.push_back(s.param);
  return std::sqrt(comm_.all_reduce_scalar(grad_sum_of_squares(mine)));
}

void ShardedAdamW::step(double lr, double grad_scale) {
  adam_->step(lr, grad_scale);
  NoGradGuard ng;
  // Pack this rank's updated slices into the (spent) gradient buffers, gather every slice.
  std::vector<std::unique_ptr<CommWork>> works;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    for (size_t j = 0; j < segments_.size(); ++j)
      if (segments_[j].bucket == k)
        buckets_[k].buffer.narrow(0, segments_[j].buffer_offset, segments_[j].n).copy_(adam_->slots()[j].param);
    works.push_back(comm_.all_gather_async(buckets_[k].buffer));
  }
  for (size_t k = 0; k < buckets_.size(); ++k) {
    works[k]->wait();
    for (const auto& [i, offset] : buckets_[k].members) {
      Tensor p = params_[i].second;
      flat(p).copy_(buckets_[k].buffer.narrow(0, offset, p.numel()));
      p.bump_version();  // changed behind autograd's back
    }
  }
}

size_t ShardedAdamW::state_bytes() const {
  size_t n = 0;
  for (const auto& s : segments_) n += static_cast<size_t>(s.n);
  return 2 * sizeof(float) * n;
}

size_t ShardedAdamW::full_state_bytes() const {
  size_t n = 0;
  for (const auto& [name, p] : params_) n += static_cast<size_t>(p.numel());
  return 2 * sizeof(float) * n;
}

OptimizerState ShardedAdamW::gather_moments(int root) {
  OptimizerState out;
  out.step_count = step_count();
  const bool keep = comm_.rank() == root;
  for (const auto& [name, p] : params_) {
    OptimizerState::Moments m{name, Tensor(), Tensor()};
    if (keep) {
      m.m = zeros(p.shape(), opts(DType::f32));
      m.v = zeros(p.shape(), opts(DType::f32));
    }
    out.moments.push_back(std::move(m));
  }
  NoGradGuard ng;
  // Bucket by bucket, m then v: this rank's segments into its slice of a bucket-sized buffer, an
  // in-place all-gather, then the root copies each parameter's piece out (device memory: one
  // bucket at a time).
  for (size_t k = 0; k < buckets_.size(); ++k) {
    const Tensor& like = buckets_[k].buffer;
    for (int which = 0; which < 2; ++which) {
      Tensor buf = zeros({like.numel()}, opts(DType::f32, like.device()));
      for (size_t j = 0; j < segments_.size(); ++j) {
        if (segments_[j].bucket != k) continue;
        const AdamW::Slot& s = adam_->slots()[j];
        buf.narrow(0, segments_[j].buffer_offset, segments_[j].n).copy_(which == 0 ? s.m : s.v);
      }
      comm_.all_gather_async(buf)->wait();
      if (!keep) continue;
      Tensor host = buf.to(cpu());
      for (const auto& [i, offset] : buckets_[k].members) {
        Tensor& dst = which == 0 ? out.moments[i].m : out.moments[i].v;
        flat(dst).copy_(host.narrow(0, offset, dst.numel()));
      }
    }
  }
  return out;
}

void ShardedAdamW::load_moments(const OptimizerState& full) {
  std::map<std::string, const OptimizerState::Moments*> by_name;
  for (const auto& m : full.moments) by_name[m.name] = &m;
  NoGradGuard ng;
  for (size_t j = 0; j < segments_.size(); ++j) {
    const auto& [name, p] = params_[segments_[j].param];
    auto it = by_name.find(name);
    if (it == by_name.end() || it->second->m.numel() != p.numel() || it->second->v.numel() != p.numel())
      throw std::invalid_argument("ShardedAdamW: no full-size moments of '" + name + "' to load");
    AdamW::Slot& s = adam_->slots()[j];
    const Device dev = s.m.device();
    s.m.copy_(flat(it->second->m.contiguous()).narrow(0, segments_[j].begin, segments_[j].n).to(dev));
    s.v.copy_(flat(it->second->v.contiguous()).narrow(0, segments_[j].begin, segments_[j].n).to(dev));
  }
  set_step_count(full.step_count);
}

}  // namespace ttt
