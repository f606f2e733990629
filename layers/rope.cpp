// layers/rope.cpp — see rope.h.
#include "layers/rope.h"

#include <cmath>
#include <list>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "autograd/cuda_graph.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

// The checks apply_rope and apply_rope_composite share; returns the wrapped time dim.
int check_rope_args(const Tensor& x, const Tensor& positions, int64_t time_dim) {
  check_defined("apply_rope", x);
  if (x.dim() < 2) throw std::invalid_argument("apply_rope: expected rank >= 2, got " + x.shape().str());
  const int nd = x.dim();
  const int td = wrap_dim(time_dim, nd, "apply_rope");
  if (td == nd - 1) throw std::invalid_argument("apply_rope: time_dim must not be the feature (last) dim");
  const int64_t T = x.shape()[td];
  if (positions.defined() && positions.dim() == 1 && positions.shape()[0] != T)
    throw std::invalid_argument("apply_rope: " + std::to_string(positions.shape()[0]) + " positions for " +
                                std::to_string(T) + " time steps (x " + x.shape().str() + ", time_dim " +
                                std::to_string(td) + ")");
  return td;
}

// Tables of recent calls, so a training step does not rebuild them on the host and copy them
// to the device for every layer (the positions repeat: 0..T−1 for attention, t mod b for TTT).
// Keyed by the position values themselves; a handful of entries, least recently used evicted.
class TableCache {
 public:
  RopeTables get(const Tensor& positions, int64_t dim, double theta, DType dtype, Device device) {
    check_defined("apply_rope", positions, "positions");
    if (positions.dim() != 1 || is_floating(positions.dtype()))
      throw std::invalid_argument("apply_rope: positions must be a 1-D integer tensor, got " + positions.str());
    Key key{positions.tolist<int64_t>(), dim, theta, dtype, device.str()};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = entries_.begin(); it != entries_.end(); ++it)
        if (it->first == key) {
          entries_.splice(entries_.begin(), entries_, it);
          keep_alive_while_captured(it->second.cos);  // evicted later, still read by a graph
          keep_alive_while_captured(it->second.sin);
          return it->second;
        }
    }
    RopeTables t = rope_tables(positions, dim, theta, dtype, device);
    std::lock_guard<std::mutex> lock(mu_);
    entries_.emplace_front(std::move(key), t);
    if (entries_.size() > kEntries) entries_.pop_back();
    return t;
  }

 private:
  using Key = std::tuple<std::vector<int64_t>, int64_t, double, DType, std::string>;
  static constexpr size_t kEntries = 16;
  std::mutex mu_;
  std::list<std::pair<Key, RopeTables>> entries_;
};

TableCache& table_cache() {
  static TableCache* c = new TableCache();  // never destroyed: tensors may outlive static destruction order
  return *c;
}

}  // namespace

Tensor rope_positions(int64_t start, int64_t len) { return arange(start, start + len); }

RopeTables rope_tables(const Tensor& positions, int64_t dim, double theta, DType dtype, Device device) {
  check_defined("apply_rope", positions, "positions");
  if (positions.dim() != 1 || is_floating(positions.dtype()))
    throw std::invalid_argument("apply_rope: positions must be a 1-D integer tensor, got " + positions.str());
  if (dim <= 0 || dim % 2 != 0)
    throw std::invalid_argument("apply_rope: the rotated dim must be even and positive, got " + std::to_string(dim));
  if (!(theta > 0)) throw std::invalid_argument("apply_rope: theta must be positive");
  const std::vector<int64_t> pos = positions.tolist<int64_t>();
  const int64_t T = static_cast<int64_t>(pos.size()), half = dim / 2;
  std::vector<double> c(T * half), s(T * half);
  for (int64_t i = 0; i < half; ++i) {
    const double omega = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
    for (int64_t t = 0; t < T; ++t) {
      const double a = static_cast<double>(pos[t]) * omega;
      c[t * half + i] = std::cos(a);
      s[t * half + i] = std::sin(a);
    }
  }
  return {from_vector(c, {T, half}, opts(dtype)).to(device), from_vector(s, {T, half}, opts(dtype)).to(device)};
}

Tensor apply_rope(const Tensor& x, const Tensor& positions, double theta, int64_t time_dim, bool keep_layout) {
  const int td = check_rope_args(x, positions, time_dim);
  // bf16 (and float32) rotate in float32 tables; float64 in float64.
  const DType cd = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  RopeTables tab = table_cache().get(positions, x.shape()[x.dim() - 1], theta, cd, x.device());
  return rope(x, tab.cos, tab.sin, td, /*inverse=*/false, keep_layout);
}

Tensor apply_rope_composite(const Tensor& x0, const Tensor& positions, double theta, int64_t time_dim) {
  const int td = check_rope_args(x0, positions, time_dim);
  const int nd = x0.dim();
  const int64_t d = x0.shape()[nd - 1], T = x0.shape()[td], half = d / 2;
  // bf16 (and any non-f32/f64 float) is rotated in fp32.
  const DType cd = x0.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor x = x0.dtype() == cd ? x0 : to_dtype(x0, cd);
  RopeTables tab = rope_tables(positions, d, theta, cd, x.device());

  // x as [..., d/2, 2]; tables broadcast as [1.., T at td, 1.., d/2, 1].
  Shape pair_shape = x.shape();
  pair_shape[nd - 1] = half;
  pair_shape.push_back(2);
  Shape tab_shape;
  for (int i = 0; i <= nd; ++i) tab_shape.push_back(i == td ? T : i == nd - 1 ? half : 1);
  Tensor c = reshape(tab.cos, tab_shape), s = reshape(tab.sin, tab_shape);
  Tensor xp = reshape(x, pair_shape);
  Tensor xe = narrow(xp, nd, 0, 1), xo = narrow(xp, nd, 1, 1);
  Tensor ye = sub(mul(xe, c), mul(xo, s));
  Tensor yo = add(mul(xe, s), mul(xo, c));
  Tensor y = add(narrow_scatter(ye, pair_shape, nd, 0), narrow_scatter(yo, pair_shape, nd, 1));
  y = reshape(y, x0.shape());
  return x0.dtype() == cd ? y : to_dtype(y, x0.dtype());
}

}  // namespace ttt
