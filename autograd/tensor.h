// autograd/tensor.h — Tensor: a cheap shared handle to (storage, shape, strides, offset, dtype)
// plus the autograd metadata (requires_grad, grad_fn, .grad, hooks).
//
// Views (reshape of contiguous data, permute, transpose, narrow, expand, unsqueeze, squeeze)
// share storage. Every storage carries a version counter that in-place ops bump, so a tensor
// saved for backward and modified afterwards is detected (SavedTensor in node.h).
//
// The differentiable ops are free functions declared in autograd/ops.h; the member functions
// here are conveniences that call them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/shape.h"
#include "kernels/backend.h"

namespace ttt {

class Node;
class Tensor;
using tensor_list = std::vector<Tensor>;

// Raw device memory with a version counter. Freed through its device's backend.
struct Storage {
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  uint32_t version = 0;
  // A leaf that requires grad (a parameter) lives here: set by set_requires_grad(true) and
  // set_data(); autocast keeps the casts of such storage across scopes (autograd/autocast.h).
  bool holds_parameter = false;
};

struct TensorImpl;

// Autograd state of a tensor; present only on tensors that take part in autograd.
struct AutogradMeta {
  bool requires_grad = false;          // set by the user on leaves
  std::shared_ptr<Node> grad_fn;       // the node that produced this tensor (null for leaves)
  uint32_t output_nr = 0;              // which output of grad_fn this is
  std::shared_ptr<TensorImpl> grad;    // accumulated gradient of a leaf
  std::weak_ptr<Node> grad_accumulator;
  // Called with the incoming gradient of a leaf before it is accumulated; may return a
  // replacement (an undefined Tensor keeps the gradient as is).
  std::vector<std::function<Tensor(const Tensor&)>> hooks;
  // Called with the leaf after its .grad has been updated (the data-parallel all-reduce hook).
  std::vector<std::function<void(Tensor&)>> post_accumulate_hooks;
  std::string name;                    // optional, used in error messages
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;
};

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = cpu();
  bool requires_grad = false;
  TensorOptions& with(DType d) { dtype = d; return *this; }
  TensorOptions& with(Device d) { device = d; return *this; }
};
inline TensorOptions opts(DType d, Device dev = cpu()) { return {d, dev, false}; }

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- identity and layout ---------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int dim() const { return impl_->shape.size(); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return impl_->shape.numel(); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  bool is_contiguous() const;
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  bool shares_storage(const Tensor& o) const { return impl_->storage == o.impl_->storage; }
  void* data_ptr() const;
  template <class T> T* data() const { return static_cast<T*>(data_ptr()); }
  // The kernel-level description of this tensor's memory.
  View view() const;
  std::string str() const;        // "Tensor[2, 3] float32 cpu"
  std::string to_string() const;  // values, for debugging and test messages (small tensors)

  // --- autograd -----------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool r);    // leaves only
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  Tensor grad() const;                  // undefined if none
  void set_grad(const Tensor& g);
  void zero_grad();                     // drops .grad
  Tensor detach() const;                // same storage, no autograd history
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;
  void register_hook(std::function<Tensor(const Tensor&)> hook);
  void register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook);
  Tensor& set_name(const std::string& n);
  std::string name() const;
  AutogradMeta* autograd_meta() const { return impl_ ? impl_->autograd.get() : nullptr; }
  AutogradMeta& ensure_autograd_meta() const;

  // --- conversion and copies (differentiable where it makes sense) ----------------------------
  Tensor to(DType d) const;
  Tensor to(Device d) const;
  Tensor contiguous() const;
  Tensor clone() const;
  double item() const;                     // one element, as double
  template <class T> std::vector<T> tolist() const;  // contiguous copy on the host, converted

  // --- views (differentiable) -------------------------------------------------------------
  Tensor reshape(const Shape& s) const;    // a view when possible, else a copy; one dim may be -1
  Tensor view_as_shape(const Shape& s) const { return reshape(s); }
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor permute(const std::vector<int>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;   // narrow + squeeze
  Tensor expand(const Shape& s) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;

  // --- in-place, never taped (they refuse tensors that require grad while grad mode is on, and
  // destinations whose elements overlap in memory: see may_self_overlap in shape.h) ---
  Tensor& copy_(const Tensor& src);        // broadcasting, converting copy into this
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& o, double alpha = 1.0);
  Tensor& mul_(double s);
  // Replaces this tensor's data (storage, shape, dtype) with other's, keeping its identity and
  // autograd metadata: how Module::to() moves parameters without invalidating handles to them.
  void set_data(const Tensor& other);
  void bump_version() const { ++impl_->storage->version; }
  uint32_t version() const { return impl_->storage->version; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// --- factories -------------------------------------------------------------------------------
Tensor empty(const Shape& s, TensorOptions o = {});
Tensor zeros(const Shape& s, TensorOptions o = {});
Tensor ones(const Shape& s, TensorOptions o = {});
Tensor full(const Shape& s, double v, TensorOptions o = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor arange(int64_t start, int64_t end, int64_t step = 1, TensorOptions o = {DType::i64});
Tensor scalar_tensor(double v, TensorOptions o = {});
// From host values; the shape's element count must match.
Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o = {});
Tensor from_vector_i64(const std::vector<int64_t>& v, const Shape& s, TensorOptions o = {DType::i64});
// Wraps a raw view of existing tensor memory (internal: used by ops that build strided views).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Counter-based random numbers: the same seed gives the same numbers on CPU and CUDA.
// A Generator is a (seed, offset) pair; each call advances the offset by the elements drawn.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;
  explicit Generator(uint64_t s = 0) : seed(s) {}
};
Tensor randn(const Shape& s, Generator& g, TensorOptions o = {}, double mean = 0, double std = 1);
Tensor rand(const Shape& s, Generator& g, TensorOptions o = {}, double lo = 0, double hi = 1);

// --- grad mode ---------------------------------------------------------------------------------
struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool e);
};
// Disables taping in its scope (like torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
 private:
  bool prev_;
};
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : prev_(GradMode::is_enabled()) { GradMode::set_enabled(enabled); }
  ~GradModeGuard() { GradMode::set_enabled(prev_); }
 private:
  bool prev_;
};

// Throw std::invalid_argument with a message naming `op`: check_same_device unless the tensors
// are on the same device, check_same_dtype unless they have the same dtype, check_defined when
// `t` is undefined (`what` names it in the message).
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_defined(const char* op, const Tensor& t, const char* what = "input");

}  // namespace ttt
