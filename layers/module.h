// layers/module.h — Module: named parameters and submodules, state dict, parameter counting.
//
// Parameters are leaf Tensors that require grad, registered under a name; submodules are
// registered under a name too, so every parameter has a dotted path ("blocks.3.mixer.W1") used by
// checkpoints and the optimizer. Handles stay valid for the module's lifetime: to() replaces the
// data behind each parameter in place (Tensor::set_data), so an optimizer built afterwards and
// the module's own members see the same tensors.
//
// Initialization is deterministic: constructors take a Generator and draw from it in a fixed
// order, so the same seed and config give bit-identical weights on CPU and CUDA.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a parameter (made a leaf requiring grad) and returns a handle to it.
  Tensor register_parameter(const std::string& name, Tensor t);
  // Registers non-trainable state that belongs in the state dict (e.g. running tables).
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // Depth-first, in registration order: ("name", tensor) with dotted prefixes.
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "") const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  int64_t num_parameters() const;

  // Parameters and buffers by dotted name.
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in (converting dtype, moving device). strict: every key must match both ways.
  // Errors name the key and both shapes.
  void load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true);

  void to(Device d);
  void to(DType d);  // floating parameters and buffers only
  void zero_grad();
  void train(bool on = true);
  bool is_training() const { return training_; }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A numbered list of submodules: children "0", "1", ... (so parameters read "blocks.3.mixer.wq").
class ModuleList : public Module {
 public:
  template <class M> std::shared_ptr<M> append(std::shared_ptr<M> m) {
    return register_module(std::to_string(size_++), std::move(m));
  }
  int64_t size() const { return size_; }
 private:
  int64_t size_ = 0;
};

// A number that changes whenever one of the tensors' data does (its storage or version), for
// caches of values derived from weights (decode graphs, concatenated projections). Undefined
// tensors are skipped.
uint64_t data_stamp(const tensor_list& tensors);

// Initializers (draw from g in row-major order).
Tensor init_normal(const Shape& s, Generator& g, double std, TensorOptions o = {});
Tensor init_uniform(const Shape& s, Generator& g, double bound, TensorOptions o = {});

}  // namespace ttt
