// autograd/ops/view.cpp — view ops: they share the input's storage and copy nothing.
//
//   reshape(x, s)        dx = reshape(dy, x.shape)          (copies only if no view is possible)
//   permute(x, p)        dx = permute(dy, p^-1)
//   transpose(x, a, b)   dx = transpose(dy, a, b)
//   narrow(x, d, s, n)   dx = narrow_scatter(dy, x.shape, d, s)   (zeros outside the slice)
//   expand(x, s)         dx = sum_to(dy, x.shape)
//   unsqueeze(x, d)      dx = squeeze(dy, d)
//   squeeze(x, d)        dx = unsqueeze(dy, d)
// No saved tensors: every backward needs only shapes.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

// Strides that let `new_shape` view memory laid out as (old_shape, old_strides), if any.
// Old dims are grouped into chunks that are contiguous among themselves; every new dim must
// fall inside one chunk.
bool view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape, Shape& out) {
  out = new_shape;
  if (old_shape.numel() == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  std::vector<int64_t> osz, ost;
  for (int i = 0; i < old_shape.size(); ++i)
    if (old_shape[i] != 1) {
      osz.push_back(old_shape[i]);
      ost.push_back(old_strides[i]);
    }
  int oi = static_cast<int>(osz.size()) - 1;
  int ni = new_shape.size() - 1;
  auto unit_stride = [&](int i) { return i + 1 < new_shape.size() ? out[i + 1] * new_shape[i + 1] : int64_t{1}; };
  while (ni >= 0) {
    if (new_shape[ni] == 1) {
      out[ni] = unit_stride(ni);
      --ni;
      continue;
    }
    if (oi < 0) return false;
    int oj = oi;
    int64_t chunk = osz[oi];
    const int64_t base = ost[oi];
    while (oj - 1 >= 0 && ost[oj - 1] == ost[oj] * osz[oj]) {
      --oj;
      chunk *= osz[oj];
    }
    oi = oj - 1;
    int64_t acc = 1;
    while (acc < chunk) {
      if (ni < 0) return false;
      out[ni] = base * acc;
      acc *= new_shape[ni];
      --ni;
    }
    if (acc != chunk) return false;
  }
  return oi < 0;
}

Shape infer_shape(const Shape& s, int64_t numel, const char* who, const Shape& from) {
  Shape r = s;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < r.size(); ++i) {
    if (r[i] == -1) {
      if (infer >= 0) throw std::invalid_argument(std::string(who) + ": only one dimension can be -1");
      infer = i;
    } else if (r[i] < 0) {
      throw std::invalid_argument(std::string(who) + ": invalid size in " + s.str());
    } else {
      known *= r[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      throw std::invalid_argument(std::string(who) + ": cannot reshape " + from.str() + " into " + s.str());
    r[infer] = numel / known;
  }
  if (r.numel() != numel)
    throw std::invalid_argument(std::string(who) + ": cannot reshape " + from.str() + " (" + std::to_string(numel) +
                                " elements) into " + s.str());
  return r;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& s0) {
  check_defined("reshape", x);
  Shape s = infer_shape(s0, x.numel(), "reshape", x.shape());
  if (s == x.shape()) return x;  // no node: identity
  Shape st;
  Tensor base = x;
  if (!view_strides(x.shape(), x.strides(), s, st)) {
    base = kc::contiguous(x);
    st = contiguous_strides(s);
  }
  Tensor y = make_view(base, s, st, base.offset());
  if (needs_grad({&x})) {
    Shape in = x.shape();
    record("reshape", {x}, {y}, {}, [in](BackwardCtx&, const tensor_list& g) { return tensor_list{reshape(g[0], in)}; });
  }
  return y;
}

Tensor permute(const Tensor& x, const std::vector<int>& dims) {
  check_defined("permute", x);
  const int n = x.dim();
  if (static_cast<int>(dims.size()) != n)
    throw std::invalid_argument("permute: " + std::to_string(dims.size()) + " dims given for a tensor of rank " +
                                std::to_string(n));
  Shape s, st;
  std::vector<int> inv(n, -1);
  for (int i = 0; i < n; ++i) {
    int d = wrap_dim(dims[i], n, "permute");
    if (inv[d] >= 0) throw std::invalid_argument("permute: repeated dim " + std::to_string(d));
    inv[d] = i;
    s.push_back(x.shape()[d]);
    st.push_back(x.strides()[d]);
  }
  Tensor y = make_view(x, s, st, x.offset());
  if (needs_grad({&x}))
    record("permute", {x}, {y}, {}, [inv](BackwardCtx&, const tensor_list& g) { return tensor_list{permute(g[0], inv)}; });
  return y;
}

Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  check_defined("transpose", x);
  const int n = x.dim();
  int da = wrap_dim(a, n, "transpose"), db = wrap_dim(b, n, "transpose");
  std::vector<int> p(n);
  for (int i = 0; i < n; ++i) p[i] = i;
  std::swap(p[da], p[db]);
  return permute(x, p);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check_defined("narrow", x);
  int d = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.shape()[d];
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n)
    throw std::invalid_argument("narrow: range [" + std::to_string(start) + ", " + std::to_string(start + length) +
                                ") out of bounds for dim " + std::to_string(d) + " of size " + std::to_string(n));
  if (start == 0 && length == n) return x;
  Shape s = x.shape();
  s[d] = length;
  Tensor y = make_view(x, s, x.strides(), x.offset() + start * x.strides()[d]);
  if (needs_grad({&x})) {
    Shape in = x.shape();
    record("narrow", {x}, {y}, {}, [in, d, start](BackwardCtx&, const tensor_list& g) {
      return tensor_list{narrow_scatter(g[0], in, d, start)};
    });
  }
  return y;
}

Tensor expand(const Tensor& x, const Shape& s) {
  check_defined("expand", x);
  if (s.size() < x.dim())
    throw std::invalid_argument("expand: target " + s.str() + " has fewer dims than " + x.shape().str());
  const int lead = s.size() - x.dim();
  Shape out = s, st;
  for (int d = 0; d < s.size(); ++d) {
    int xd = d - lead;
    int64_t want = s[d];
    if (xd < 0) {
      if (want < 0) throw std::invalid_argument("expand: -1 is not allowed for new leading dims");
      st.push_back(0);
      continue;
    }
    int64_t have = x.shape()[xd];
    if (want == -1) want = have;
    out[d] = want;
    if (have == want) st.push_back(x.strides()[xd]);
    else if (have == 1) st.push_back(0);
    else
      throw std::invalid_argument("expand: cannot expand " + x.shape().str() + " to " + s.str());
  }
  if (out == x.shape()) return x;
  Tensor y = make_view(x, out, st, x.offset());
  if (needs_grad({&x})) {
    Shape in = x.shape();
    record("expand", {x}, {y}, {}, [in](BackwardCtx&, const tensor_list& g) { return tensor_list{sum_to(g[0], in)}; });
  }
  return y;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  check_defined("unsqueeze", x);
  int d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape(), st = x.strides();
  int64_t stride = d < x.dim() ? x.strides()[d] * x.shape()[d] : 1;
  s.insert(d, 1);
  st.insert(d, stride);
  Tensor y = make_view(x, s, st, x.offset());
  if (needs_grad({&x}))
    record("unsqueeze", {x}, {y}, {}, [d](BackwardCtx&, const tensor_list& g) { return tensor_list{squeeze(g[0], d)}; });
  return y;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  check_defined("squeeze", x);
  int d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.shape()[d] != 1)
    throw std::invalid_argument("squeeze: dim " + std::to_string(d) + " of " + x.shape().str() + " is not 1");
  Shape s = x.shape(), st = x.strides();
  s.erase(d);
  st.erase(d);
  Tensor y = make_view(x, s, st, x.offset());
  if (needs_grad({&x}))
    record("squeeze", {x}, {y}, {}, [d](BackwardCtx&, const tensor_list& g) { return tensor_list{unsqueeze(g[0], d)}; });
  return y;
}

}  // namespace ttt
