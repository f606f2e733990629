// autograd/autocast.cpp
#include "autograd/autocast.h"

#include <algorithm>
#include <list>
#include <memory>
#include <stdexcept>
#include <vector>

#include "autograd/cuda_graph.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {
thread_local bool g_enabled = false;
thread_local DType g_dtype = DType::bf16;

// One cast made by cached_cast: the source's identity (its storage, held weakly so a freed and
// reused address never matches, and its layout and version) and the cast.
struct CastEntry {
  std::weak_ptr<Storage> storage;
  const Storage* raw = nullptr;
  int64_t offset = 0;
  Shape shape, strides;
  uint32_t version = 0;
  DType dtype = DType::f32;
  Tensor cast;
  // A cast of x's storage at its version and offset, to d.
  bool same_start(const Tensor& x, DType d) const {
    const TensorImpl* t = x.impl();
    return raw == t->storage.get() && !storage.expired() && version == t->storage->version && offset == t->offset &&
           dtype == d;
  }
  bool matches(const Tensor& x, DType d) const {
    return same_start(x, d) && shape == x.shape() && strides == x.strides();
  }
  // The same dense data seen with another shape (a [B, T, C] activation that a product reads as
  // [B·T, C]): the cast, viewed with x's shape, serves.
  bool matches_reshaped(const Tensor& x, DType d) const {
    return same_start(x, d) && x.is_contiguous() && cast.is_contiguous() && x.numel() == cast.numel() &&
           strides == contiguous_strides(shape);
  }
};

CastEntry entry_of(const Tensor& x, const Tensor& cast) {
  const TensorImpl* t = x.impl();
  return {t->storage, t->storage.get(), t->offset, t->shape, t->strides, t->storage->version, cast.dtype(), cast};
}
constexpr size_t kCastEntries = 4;  // a few: the reuse is among neighbouring products
thread_local std::list<CastEntry> g_casts;

// Casts of parameters (storage that holds a leaf requiring grad, Storage::holds_parameter: matmul
// casts a detached or transposed view of it), kept across autocast scopes while the parameter is
// unchanged (same version: the optimizer bumps it) and alive. Decoding casts each weight once
// instead of once per generated token; training once per step instead of once per use: per
// micro-batch, per recomputation of a checkpointed region, per TTT-E2E chunk (whose suffix and head
// weights every chunk multiplies, twice with remat). A weight's stale cast is dropped when the
// weight is cast at its new version (keep_weight_cast), so a step holds one cast of each weight, as
// the backward keeps anyway.
thread_local std::vector<CastEntry> g_weight_casts;

bool is_parameter(const Tensor& x) { return x.impl()->storage->holds_parameter; }

const Tensor* find_weight_cast(const Tensor& x, DType d) {
  for (const CastEntry& e : g_weight_casts)
    if (e.matches(x, d)) return &e.cast;
  return nullptr;
}

void keep_weight_cast(const Tensor& x, const Tensor& y) {
  const TensorImpl* t = x.impl();
  // Entries of freed storage, or of this one at an older version, can never match again.
  std::erase_if(g_weight_casts, [&](const CastEntry& e) {
    return e.storage.expired() || (e.raw == t->storage.get() && e.version != t->storage->version);
  });
  g_weight_casts.push_back(entry_of(x, y));
}

}  // namespace

thread_local bool g_keep_float32_operands = false;

bool Autocast::enabled() { return g_enabled; }
bool Autocast::keep_float32_operands() { return g_keep_float32_operands; }
bool Autocast::bf16_for(const Tensor& x) { return g_enabled && g_dtype == DType::bf16 && x.dtype() == DType::f32; }
KeepFloat32Operands::KeepFloat32Operands() : prev_(g_keep_float32_operands) { g_keep_float32_operands = true; }
KeepFloat32Operands::~KeepFloat32Operands() { g_keep_float32_operands = prev_; }

thread_local bool g_create_graph_at_autocast = false;
bool Autocast::create_graph_at_autocast() { return g_create_graph_at_autocast; }
AutocastCreateGraph::AutocastCreateGraph() : prev_(g_create_graph_at_autocast) { g_create_graph_at_autocast = true; }
AutocastCreateGraph::~AutocastCreateGraph() { g_create_graph_at_autocast = prev_; }
DType Autocast::dtype() { return g_dtype; }

Tensor Autocast::cached_cast(const Tensor& x, DType d) {
  if (x.dtype() == d) return x;
  const bool weight = g_enabled && is_parameter(x);
  if (weight)
    if (const Tensor* y = find_weight_cast(x, d)) {
      keep_alive_while_captured(*y);  // made before a graph capture under way: the graph reads it
      return *y;
    }
  if (g_enabled)
    for (auto it = g_casts.begin(); it != g_casts.end(); ++it)
      if (it->matches(x, d) || it->matches_reshaped(x, d)) {
        g_casts.splice(g_casts.begin(), g_casts, it);
        keep_alive_while_captured(it->cast);
        return it->cast.shape() == x.shape() ? it->cast
                                             : make_view(it->cast, x.shape(), contiguous_strides(x.shape()), it->cast.offset());
      }
  Tensor y = kc::cast_in_layout(x, d);  // a transposed weight stays transposed: a sequential copy
  remember_cast(x, y);
  if (weight) keep_weight_cast(x, y);
  return y;
}

namespace {
// Whether e is a cast of a view inside contiguous parameter p's elements (parameters may share a
// storage: a view of another one is not p's).
bool casts_view_of(const CastEntry& e, const Tensor& p) {
  const TensorImpl* t = p.impl();
  if (e.raw != t->storage.get() || e.storage.expired() || e.offset < t->offset) return false;
  int64_t last = e.offset;
  for (size_t d = 0; d < e.shape.size(); ++d) {
    if (e.shape[d] == 0) return false;
    last += (e.shape[d] - 1) * e.strides[d];
  }
  return last < t->offset + p.numel();
}
}  // namespace

bool Autocast::weight_cast_kept(const Tensor& p, DType d) {
  return std::any_of(g_weight_casts.begin(), g_weight_casts.end(), [&](const CastEntry& e) {
    return casts_view_of(e, p) && e.version == p.version() && e.dtype == d;
  });
}

void Autocast::refresh_weight_casts(const Tensor& p, const Tensor& cast) {
  const TensorImpl* t = p.impl();
  if (!p.is_contiguous() || !cast.is_contiguous() || cast.shape() != p.shape())
    throw std::invalid_argument("refresh_weight_casts: expected a contiguous parameter and a contiguous cast of its shape, got " +
                                p.str() + " and " + cast.str());
  // p and cast are both contiguous of one shape: element offsets within them agree.
  for (CastEntry& e : g_weight_casts) {
    if (!casts_view_of(e, p) || e.dtype != cast.dtype()) continue;
    e.cast = make_view(cast, e.shape, e.strides, cast.offset() + (e.offset - t->offset));
    e.version = t->storage->version;
  }
}

void Autocast::remember_cast(const Tensor& x, const Tensor& cast) {
  if (!g_enabled) return;
  g_casts.push_front(entry_of(x, cast));
  if (g_casts.size() > kCastEntries) g_casts.pop_back();
}

AutocastGuard::AutocastGuard(DType operand_dtype, bool enabled) : prev_enabled_(g_enabled), prev_dtype_(g_dtype) {
  if (enabled && operand_dtype != DType::bf16 && operand_dtype != DType::f32)
    throw std::invalid_argument(std::string("autocast: operand dtype must be bfloat16 or float32, got ") +
                                dtype_name(operand_dtype));
  g_enabled = enabled && operand_dtype != DType::f32;
  g_dtype = operand_dtype;
}

AutocastGuard::~AutocastGuard() {
  const bool was_enabled = g_enabled;
  g_enabled = prev_enabled_;
  g_dtype = prev_dtype_;
  if (was_enabled && !g_enabled) g_casts.clear();  // left the outermost enabled scope
}

}  // namespace ttt
