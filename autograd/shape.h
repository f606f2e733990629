// autograd/shape.h — Shape: a small inline array of dimension sizes (or strides), no heap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"

namespace ttt {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> l) { assign(l.begin(), l.end()); }
  explicit Shape(const std::vector<int64_t>& v) { assign(v.begin(), v.end()); }
  template <class It> Shape(It b, It e) { assign(b, e); }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v) {
    if (n_ == kMaxDims) throw std::invalid_argument("tensor rank exceeds " + std::to_string(kMaxDims));
    d_[n_++] = v;
  }
  void pop_back() { --n_; }
  void insert(int pos, int64_t v) {
    push_back(0);
    for (int i = n_ - 1; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  std::vector<int64_t> vec() const { return {d_, d_ + n_}; }
  bool operator==(const Shape& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i)
      if (d_[i] != o.d_[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < n_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
    return s + "]";
  }

 private:
  template <class It> void assign(It b, It e) {
    n_ = 0;
    for (; b != e; ++b) push_back(static_cast<int64_t>(*b));
  }
  int64_t d_[kMaxDims] = {};
  int n_ = 0;
};

// Row-major contiguous strides of a shape.
inline Shape contiguous_strides(const Shape& s) {
  Shape st = s;
  int64_t acc = 1;
  for (int i = s.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// True when two different indices of a (shape, strides) layout may address the same element:
// a stride-0 dimension of size > 1 (an expanded view) or dimensions whose extents interleave.
// Sorting the dimensions by stride, a layout is overlap-free when each stride exceeds the largest
// offset reachable with the smaller strides; this is exact for every layout views produce
// (contiguous, permuted, narrowed, expanded) and errs on the safe side for exotic ones.
inline bool may_self_overlap(const Shape& shape, const Shape& strides) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (|stride|, size) of dimensions of size > 1
  for (int i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return false;  // no elements
    if (shape[i] > 1) dims.emplace_back(strides[i] < 0 ? -strides[i] : strides[i], shape[i]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;  // largest offset spanned by the dimensions seen so far
  for (auto [stride, size] : dims) {
    if (stride <= reach) return true;
    reach += stride * (size - 1);
  }
  return false;
}

// Wraps a possibly negative dim into [0, ndim); throws naming `who` when out of range.
inline int wrap_dim(int64_t dim, int ndim, const char* who) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    throw std::invalid_argument(std::string(who) + ": dim " + std::to_string(dim) +
                                " out of range for a tensor of rank " + std::to_string(ndim));
  return static_cast<int>(d);
}

// NumPy broadcasting of two shapes; throws naming `who` and both shapes when incompatible.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* who) {
  int n = std::max(a.size(), b.size());
  Shape out;
  for (int i = 0; i < n; ++i) {
    int ia = a.size() - n + i, ib = b.size() - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(who) + ": shapes " + a.str() + " and " + b.str() +
                                  " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

}  // namespace ttt
