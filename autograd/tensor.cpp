// autograd/tensor.cpp — Storage, Tensor accessors, in-place helpers, factories, grad mode.
#include "autograd/tensor.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ttt {

// --- Storage ---------------------------------------------------------------------------------

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) {
  data = n ? backend(d).alloc(n) : nullptr;
}
Storage::~Storage() {
  if (data) backend(device).free(data, nbytes);
}

// --- grad mode ----------------------------------------------------------------------------------

namespace {
thread_local bool g_grad_enabled = true;
}
bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool e) { g_grad_enabled = e; }

// --- accessors ----------------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != s) return false;
    s *= impl_->shape[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

View Tensor::view() const {
  View v;
  v.data = data_ptr();
  v.dtype = dtype();
  v.ndim = dim();
  for (int i = 0; i < v.ndim; ++i) {
    v.size[i] = impl_->shape[i];
    v.stride[i] = impl_->strides[i];
  }
  return v;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return "Tensor" + shape().str() + " " + dtype_name(dtype()) + " " + device().str();
}

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << str() << " {";
  auto v = tolist<double>();
  for (size_t i = 0; i < v.size() && i < 64; ++i) os << (i ? ", " : "") << v[i];
  if (v.size() > 64) os << ", ...";
  os << "}";
  return os.str();
}

// --- autograd accessors -----------------------------------------------------------------------

AutogradMeta& Tensor::ensure_autograd_meta() const {
  if (!impl_->autograd) impl_->autograd = std::make_unique<AutogradMeta>();
  return *impl_->autograd;
}

bool Tensor::requires_grad() const {
  auto* m = autograd_meta();
  return m && (m->requires_grad || m->grad_fn);
}

Tensor& Tensor::set_requires_grad(bool r) {
  if (!is_leaf())
    throw std::invalid_argument("set_requires_grad: only leaf tensors can change requires_grad; "
                                "use detach() to make a leaf from " + str());
  if (r && !is_floating(dtype()))
    throw std::invalid_argument("set_requires_grad: only floating tensors can require grad, got " +
                                std::string(dtype_name(dtype())));
  ensure_autograd_meta().requires_grad = r;
  if (r) impl_->storage->holds_parameter = true;
  return *this;
}

bool Tensor::is_leaf() const {
  auto* m = autograd_meta();
  return !m || !m->grad_fn;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  auto* m = autograd_meta();
  return m ? m->grad_fn : none;
}

uint32_t Tensor::output_nr() const {
  auto* m = autograd_meta();
  return m ? m->output_nr : 0;
}

Tensor Tensor::grad() const {
  auto* m = autograd_meta();
  return m && m->grad ? Tensor(m->grad) : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && (g.shape() != shape() || g.dtype() != dtype()))
    throw std::invalid_argument("set_grad: gradient " + g.str() + " does not match " + str());
  ensure_autograd_meta().grad = g.impl_ptr();
}

void Tensor::zero_grad() {
  if (auto* m = autograd_meta()) m->grad.reset();
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph, bool create_graph) const {
  tensor_list gos;
  if (grad_output.defined()) gos.push_back(grad_output);
  ttt::backward({*this}, gos, retain_graph || create_graph, create_graph);
}

void Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) {
  if (!is_leaf() || !requires_grad())
    throw std::invalid_argument("register_hook: hooks are supported on leaf tensors that require grad");
  ensure_autograd_meta().hooks.push_back(std::move(hook));
}

void Tensor::register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) {
  if (!is_leaf() || !requires_grad())
    throw std::invalid_argument(
        "register_post_accumulate_grad_hook: only leaf tensors that require grad have one");
  ensure_autograd_meta().post_accumulate_hooks.push_back(std::move(hook));
}

Tensor& Tensor::set_name(const std::string& n) {
  ensure_autograd_meta().name = n;
  return *this;
}
std::string Tensor::name() const {
  auto* m = autograd_meta();
  return m ? m->name : std::string();
}

// --- conversions ----------------------------------------------------------------------------

Tensor Tensor::to(DType d) const { return d == dtype() ? *this : to_dtype(*this, d); }
Tensor Tensor::to(Device d) const { return d == device() ? *this : to_device(*this, d); }
Tensor Tensor::contiguous() const { return ttt::contiguous(*this); }
Tensor Tensor::clone() const { return ttt::clone(*this); }

double Tensor::item() const {
  if (numel() != 1) throw std::invalid_argument("item: tensor " + str() + " has more than one element");
  return tolist<double>()[0];
}

template <class T> std::vector<T> Tensor::tolist() const {
  NoGradGuard ng;
  Tensor c = device().is_cpu() ? *this : to_device(*this, cpu());
  c = ttt::contiguous(c);
  std::vector<T> out(static_cast<size_t>(c.numel()));
  dispatch_dtype(c.dtype(), [&](auto tag) {
    using S = decltype(tag);
    const S* p = c.data<S>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(to_compute(p[i]));
  });
  return out;
}
template std::vector<double> Tensor::tolist<double>() const;
template std::vector<float> Tensor::tolist<float>() const;
template std::vector<int64_t> Tensor::tolist<int64_t>() const;
template std::vector<int32_t> Tensor::tolist<int32_t>() const;

// --- views (differentiable, in ops/view.cpp) ------------------------------------------------------

Tensor Tensor::reshape(const Shape& s) const { return ttt::reshape(*this, s); }
Tensor Tensor::flatten(int64_t start, int64_t end) const {
  int n = dim();
  if (n == 0) return ttt::reshape(*this, {1});
  int s = wrap_dim(start, n, "flatten"), e = wrap_dim(end, n, "flatten");
  Shape out;
  for (int i = 0; i < s; ++i) out.push_back(shape()[i]);
  int64_t p = 1;
  for (int i = s; i <= e; ++i) p *= shape()[i];
  out.push_back(p);
  for (int i = e + 1; i < n; ++i) out.push_back(shape()[i]);
  return ttt::reshape(*this, out);
}
Tensor Tensor::permute(const std::vector<int>& dims) const { return ttt::permute(*this, dims); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return ttt::transpose(*this, a, b); }
Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  return ttt::narrow(*this, d, start, length);
}
Tensor Tensor::select(int64_t d, int64_t index) const {
  int w = wrap_dim(d, dim(), "select");
  int64_t i = index < 0 ? index + shape()[w] : index;
  return ttt::squeeze(ttt::narrow(*this, w, i, 1), w);
}
Tensor Tensor::expand(const Shape& s) const { return ttt::expand(*this, s); }
Tensor Tensor::unsqueeze(int64_t d) const { return ttt::unsqueeze(*this, d); }
Tensor Tensor::squeeze(int64_t d) const { return ttt::squeeze(*this, d); }

// --- in-place ----------------------------------------------------------------------------------

namespace {
void check_inplace(const Tensor& t, const char* op) {
  if (GradMode::is_enabled() && t.requires_grad())
    throw std::invalid_argument(std::string(op) + ": in-place modification of a tensor that "
                                "requires grad while grad mode is on (use NoGradGuard)");
  // Writing through a view whose elements share memory (an expanded tensor) would add into the
  // same element several times (and race on a GPU): refused, as PyTorch does.
  if (may_self_overlap(t.shape(), t.strides()))
    throw std::invalid_argument(std::string(op) + ": in-place write into " + t.str() + " with strides " +
                                t.strides().str() + ", whose elements overlap in memory (an expanded "
                                "view?); write into a copy (.contiguous() / clone())");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  Tensor s = src;
  if (s.device() != device()) s = ttt::to_device(s.detach(), device());
  if (s.shape() != shape()) s = ttt::expand(s.detach(), shape());
  backend(device()).unary(UnaryOp::copy, view(), s.view());
  bump_version();
  return *this;
}

void Tensor::set_data(const Tensor& other) {
  check_defined("set_data", other);
  impl_->storage = other.impl()->storage;
  impl_->shape = other.shape();
  impl_->strides = other.strides();
  impl_->offset = other.offset();
  impl_->dtype = other.dtype();
  if (requires_grad()) impl_->storage->holds_parameter = true;
  if (auto* m = autograd_meta()) m->grad.reset();
}

Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  backend(device()).fill(view(), v);
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& o, double alpha) {
  check_inplace(*this, "add_");
  check_same_device("add_", *this, o);
  NoGradGuard ng;
  Tensor other = alpha == 1.0 ? o : ttt::mul_scalar(o, alpha);
  if (other.dtype() != dtype()) other = ttt::to_dtype(other, dtype());
  if (other.shape() != shape()) other = ttt::expand(other, shape());
  backend(device()).binary(BinaryOp::add, view(), view(), other.view());
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(double s) {
  check_inplace(*this, "mul_");
  backend(device()).unary(UnaryOp::affine, view(), view(), s, 0.0);
  bump_version();
  return *this;
}

// --- factories ----------------------------------------------------------------------------------

Tensor empty(const Shape& s, TensorOptions o) {
  for (int64_t d : s)
    if (d < 0) throw std::invalid_argument("empty: negative dimension in shape " + s.str());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(s.numel()) * dtype_size(o.dtype), o.device);
  impl->shape = s;
  impl->strides = contiguous_strides(s);
  impl->dtype = o.dtype;
  Tensor t(std::move(impl));
  if (o.requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor full(const Shape& s, double v, TensorOptions o) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(s, o);
  if (t.numel()) backend(o.device).fill(t.view(), v);
  if (rg) t.set_requires_grad(true);
  return t;
}
Tensor zeros(const Shape& s, TensorOptions o) { return full(s, 0.0, o); }
Tensor ones(const Shape& s, TensorOptions o) { return full(s, 1.0, o); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), opts(t.dtype(), t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), opts(t.dtype(), t.device())); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), opts(t.dtype(), t.device())); }
Tensor scalar_tensor(double v, TensorOptions o) { return full(Shape{}, v, o); }

Tensor arange(int64_t start, int64_t end, int64_t step, TensorOptions o) {
  if (step == 0) throw std::invalid_argument("arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, (end - start + step + (step > 0 ? -1 : 1)) / step);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(start + i * step);
  return from_vector(v, {n}, o);
}

Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o) {
  if (static_cast<int64_t>(v.size()) != s.numel())
    throw std::invalid_argument("from_vector: " + std::to_string(v.size()) +
                                " values do not fill shape " + s.str());
  bool rg = o.requires_grad;
  TensorOptions host = o;
  host.device = cpu();
  host.requires_grad = false;
  Tensor t = empty(s, host);
  dispatch_dtype(o.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = from_compute<T>(v[i]);
  });
  if (!o.device.is_cpu()) t = to_device(t, o.device);
  if (rg) t.set_requires_grad(true);
  return t;
}

Tensor from_vector_i64(const std::vector<int64_t>& v, const Shape& s, TensorOptions o) {
  if (static_cast<int64_t>(v.size()) != s.numel())
    throw std::invalid_argument("from_vector_i64: " + std::to_string(v.size()) +
                                " values do not fill shape " + s.str());
  TensorOptions host = o;
  host.device = cpu();
  Tensor t = empty(s, host);
  dispatch_dtype(o.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = from_compute<T>(v[i]);
  });
  return o.device.is_cpu() ? t : to_device(t, o.device);
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

Tensor randn(const Shape& s, Generator& g, TensorOptions o, double mean, double std) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(s, o);
  backend(o.device).random(t.view(), RandomDist::normal, g.seed, g.offset, mean, std);
  g.offset += static_cast<uint64_t>(t.numel());
  if (rg) t.set_requires_grad(true);
  return t;
}

Tensor rand(const Shape& s, Generator& g, TensorOptions o, double lo, double hi) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(s, o);
  backend(o.device).random(t.view(), RandomDist::uniform, g.seed, g.offset, lo, hi);
  g.offset += static_cast<uint64_t>(t.numel());
  if (rg) t.set_requires_grad(true);
  return t;
}

// --- checks ------------------------------------------------------------------------------------

void check_defined(const char* op, const Tensor& t, const char* what) {
  if (!t.defined()) throw std::invalid_argument(std::string(op) + ": " + what + " is undefined");
}
void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    throw std::invalid_argument(std::string(op) + ": tensors on different devices: " + a.str() +
                                " and " + b.str());
}
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw std::invalid_argument(std::string(op) + ": dtype mismatch: " + a.str() + " and " + b.str() +
                                " (convert one with .to(dtype))");
}

}  // namespace ttt
