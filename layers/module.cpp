// layers/module.cpp
#include "layers/module.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_defined("register_parameter", t);
  for (auto& p : params_)
    if (p.first == name) throw std::invalid_argument("register_parameter: duplicate name '" + name + "'");
  if (!t.is_leaf()) t = t.detach();
  t.set_requires_grad(true);
  t.set_name(name);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_defined("register_buffer", t);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  if (!m) throw std::invalid_argument("register_module: null module '" + name + "'");
  for (auto& c : children_)
    if (c.first == name) throw std::invalid_argument("register_module: duplicate name '" + name + "'");
  children_.emplace_back(name, std::move(m));
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& p : params_) out.emplace_back(prefix + p.first, p.second);
  for (auto& c : children_) {
    auto sub = c.second->named_parameters(prefix + c.first + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& b : buffers_) out.emplace_back(prefix + b.first, b.second);
  for (auto& c : children_) {
    auto sub = c.second->named_buffers(prefix + c.first + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.second.numel();
  return n;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> sd;
  for (auto& p : named_parameters()) sd[p.first] = p.second;
  for (auto& b : named_buffers()) sd[b.first] = b.second;
  return sd;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict) {
  auto mine = state_dict();
  std::string missing, unexpected;
  for (auto& [k, t] : mine) {
    auto it = sd.find(k);
    if (it == sd.end()) {
      missing += " " + k;
      continue;
    }
    if (it->second.shape() != t.shape())
      throw std::invalid_argument("load_state_dict: '" + k + "' has shape " + it->second.shape().str() +
                                  " in the checkpoint but " + t.shape().str() + " in the model");
  }
  for (auto& [k, t] : sd)
    if (!mine.count(k)) unexpected += " " + k;
  if (strict && (!missing.empty() || !unexpected.empty()))
    throw std::invalid_argument("load_state_dict: keys differ." + (missing.empty() ? "" : " Missing:" + missing) +
                                (unexpected.empty() ? "" : " Unexpected:" + unexpected));
  NoGradGuard ng;
  for (auto& [k, t] : mine) {
    auto it = sd.find(k);
    if (it == sd.end()) continue;
    Tensor src = it->second.to(t.device()).to(t.dtype());
    Tensor dst = t;
    dst.copy_(src);
  }
}

void Module::to(Device d) {
  NoGradGuard ng;
  for (auto& p : named_parameters())
    if (p.second.device() != d) {
      Tensor t = p.second;
      t.set_data(p.second.detach().to(d));
    }
  for (auto& b : named_buffers())
    if (b.second.device() != d) {
      Tensor t = b.second;
      t.set_data(b.second.detach().to(d));
    }
}

void Module::to(DType dt) {
  NoGradGuard ng;
  for (auto& p : named_parameters())
    if (is_floating(p.second.dtype()) && p.second.dtype() != dt) {
      Tensor t = p.second;
      t.set_data(p.second.detach().to(dt));
    }
  for (auto& b : named_buffers())
    if (is_floating(b.second.dtype()) && b.second.dtype() != dt) {
      Tensor t = b.second;
      t.set_data(b.second.detach().to(dt));
    }
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) {
    Tensor t = p.second;
    t.zero_grad();
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

uint64_t data_stamp(const tensor_list& tensors) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over (storage, version) pairs
  for (const Tensor& t : tensors)
    if (t.defined())
      for (uint64_t v : {static_cast<uint64_t>(reinterpret_cast<uintptr_t>(t.impl()->storage.get())),
                         static_cast<uint64_t>(t.version())})
        h = (h ^ v) * 1099511628211ull;
  return h;
}

Tensor init_normal(const Shape& s, Generator& g, double std, TensorOptions o) {
  o.requires_grad = false;
  return randn(s, g, o, 0.0, std);
}

Tensor init_uniform(const Shape& s, Generator& g, double bound, TensorOptions o) {
  o.requires_grad = false;
  return rand(s, g, o, -bound, bound);
}

}  // namespace ttt
