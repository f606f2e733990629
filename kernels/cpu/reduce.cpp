// kernels/cpu/reduce.cpp — sum / max / min / sum of squares over dims, argmax, cumsum.
// Sums accumulate in double on the CPU (this backend is the reference the others are checked
// against).
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strided.h"

namespace ttt::cpu_impl {

namespace {

// Splits `in` into kept dims (out.size[d] == in.size[d]) and reduced dims (out.size[d] == 1).
struct ReducePlan {
  int nk = 0, nr = 0;
  int64_t ksize[kMaxDims], kin[kMaxDims], kout[kMaxDims];
  int64_t rsize[kMaxDims], rin[kMaxDims];
  int64_t kept = 1, reduced = 1;
};

ReducePlan plan_reduce(const View& out, const View& in) {
  if (out.ndim != in.ndim) throw std::invalid_argument("reduce: output rank differs from input rank");
  ReducePlan p;
  for (int d = 0; d < in.ndim; ++d) {
    if (out.size[d] == in.size[d]) {
      p.ksize[p.nk] = in.size[d];
      p.kin[p.nk] = in.stride[d];
      p.kout[p.nk] = out.stride[d];
      p.kept *= in.size[d];
      p.nk++;
    } else if (out.size[d] == 1) {
      p.rsize[p.nr] = in.size[d];
      p.rin[p.nr] = in.stride[d];
      p.reduced *= in.size[d];
      p.nr++;
    } else {
      throw std::invalid_argument("reduce: output size must be 1 or the input size in every dim");
    }
  }
  return p;
}

template <class F> void for_reduced(const ReducePlan& p, int64_t base, F&& f) {
  // Walk the reduced multi-index with the last reduced dim innermost.
  if (p.nr == 0) {
    f(base);
    return;
  }
  const int64_t inner = p.rsize[p.nr - 1], inner_st = p.rin[p.nr - 1];
  const int64_t outer = p.reduced / inner;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t off = base, rem = o;
    for (int d = p.nr - 2; d >= 0; --d) {
      off += (rem % p.rsize[d]) * p.rin[d];
      rem /= p.rsize[d];
    }
    for (int64_t i = 0; i < inner; ++i) f(off + i * inner_st);
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const View& out, const View& in) {
  if (out.dtype != in.dtype) throw std::invalid_argument("reduce: dtypes differ");
  ReducePlan p = plan_reduce(out, in);
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    using Acc = std::conditional_t<std::is_same_v<C, int64_t>, int64_t, double>;
    const T* x = static_cast<const T*>(in.data);
    T* o = static_cast<T*>(out.data);
    auto one = [&](int64_t k) {
      int64_t ib = 0, ob = 0, rem = k;
      for (int d = p.nk - 1; d >= 0; --d) {
        int64_t i = rem % p.ksize[d];
        rem /= p.ksize[d];
        ib += i * p.kin[d];
        ob += i * p.kout[d];
      }
      Acc acc = 0;
      switch (op) {
        case ReduceOp::sum:
        case ReduceOp::sum_sq: acc = 0; break;
        // Floats start at -inf/+inf (lowest() would turn a max over all -inf into -DBL_MAX).
        case ReduceOp::max:
          if constexpr (std::is_integral_v<Acc>) acc = std::numeric_limits<Acc>::lowest();
          else acc = -std::numeric_limits<Acc>::infinity();
          break;
        case ReduceOp::min:
          if constexpr (std::is_integral_v<Acc>) acc = std::numeric_limits<Acc>::max();
          else acc = std::numeric_limits<Acc>::infinity();
          break;
      }
      bool nan = false;
      for_reduced(p, ib, [&](int64_t off) {
        Acc v = static_cast<Acc>(to_compute(x[off]));
        switch (op) {
          case ReduceOp::sum: acc += v; break;
          case ReduceOp::sum_sq: acc += v * v; break;
          case ReduceOp::max:
            if constexpr (!std::is_integral_v<Acc>) nan |= std::isnan(v);
            acc = v > acc ? v : acc;
            break;
          case ReduceOp::min:
            if constexpr (!std::is_integral_v<Acc>) nan |= std::isnan(v);
            acc = v < acc ? v : acc;
            break;
        }
      });
      if constexpr (!std::is_integral_v<Acc>)
        if (nan) acc = std::numeric_limits<Acc>::quiet_NaN();
      o[ob] = from_compute<T>(static_cast<C>(acc));
    };
    if (p.kept >= 64 && p.kept * p.reduced >= kParallelGrain) {
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < p.kept; ++k) one(k);
    } else {
      for (int64_t k = 0; k < p.kept; ++k) one(k);
    }
  });
}

void CpuBackend::argmax(const View& out, const View& in, int dim) {
  if (out.dtype != DType::i64) throw std::invalid_argument("argmax: output must be int64");
  View shape_in = in;
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(in.data);
    int64_t* o = static_cast<int64_t*>(out.data);
    const int64_t n = in.size[dim], st = in.stride[dim];
    // Iterate over the output positions (size 1 along dim).
    View oshape = out;
    View ishape = shape_in;
    ishape.size[dim] = 1;
    for_each_element<2>(oshape, {&out, &ishape}, [&](const std::array<int64_t, 2>& off) {
      int64_t best = 0;
      auto bv = to_compute(x[off[1]]);
      for (int64_t i = 1; i < n; ++i) {
        auto v = to_compute(x[off[1] + i * st]);
        if (v > bv) {
          bv = v;
          best = i;
        }
      }
      o[off[0]] = best;
    });
  });
}

void CpuBackend::cumsum(const View& out, const View& in, int dim) {
  if (out.dtype != in.dtype) throw std::invalid_argument("cumsum: dtypes differ");
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    using Acc = std::conditional_t<std::is_same_v<C, int64_t>, int64_t, double>;
    const T* x = static_cast<const T*>(in.data);
    T* o = static_cast<T*>(out.data);
    const int64_t n = in.size[dim], si = in.stride[dim], so = out.stride[dim];
    View oshape = out, ishape = in;
    oshape.size[dim] = 1;
    ishape.size[dim] = 1;
    for_each_element<2>(oshape, {&oshape, &ishape}, [&](const std::array<int64_t, 2>& off) {
      Acc acc = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc += static_cast<Acc>(to_compute(x[off[1] + i * si]));
        o[off[0] + i * so] = from_compute<T>(static_cast<C>(acc));
      }
    });
  });
}

}  // namespace ttt::cpu_impl
