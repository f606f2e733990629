// kernels/cpu/elementwise.cpp — memory, fill, unary, binary, where, triangle, random.
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strided.h"
#include "kernels/philox.h"
#include "kernels/scalar_math.h"

namespace ttt::cpu_impl {

// --- memory -----------------------------------------------------------------------------------

void* CpuBackend::alloc(size_t nbytes) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p)
    throw OutOfMemory("out of host memory allocating " + std::to_string(nbytes) + " bytes (" +
                      std::to_string(allocated_.load()) + " bytes already held by tensors)");
  size_t now = allocated_.fetch_add(nbytes) + nbytes;
  size_t pk = peak_.load();
  while (now > pk && !peak_.compare_exchange_weak(pk, now)) {
  }
  return p;
}

void CpuBackend::free(void* p, size_t nbytes) {
  std::free(p);
  allocated_.fetch_sub(nbytes);
}

void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

double load_as_double(const void* p, DType dt, int64_t i) {
  return dispatch_dtype(dt, [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(to_compute(static_cast<const T*>(p)[i]));
  });
}

int64_t load_index(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::i64: return static_cast<const int64_t*>(p)[i];
    case DType::i32: return static_cast<const int32_t*>(p)[i];
    case DType::u16: return static_cast<const uint16_t*>(p)[i];
    default: throw std::invalid_argument(std::string("index tensors must be integer, got ") + dtype_name(dt));
  }
}

// --- elementwise ----------------------------------------------------------------------------

void CpuBackend::fill(const View& out, double value) {
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    const T v = from_compute<T>(static_cast<C>(value));
    T* o = static_cast<T*>(out.data);
    for_each_element<1>(out, {&out}, [&](const std::array<int64_t, 1>& off) { o[off[0]] = v; });
  });
}

void CpuBackend::unary(UnaryOp op, const View& out, const View& in, double a, double b) {
  if (op == UnaryOp::copy) {
    dispatch_dtype(out.dtype, [&](auto otag) {
      using O = decltype(otag);
      dispatch_dtype(in.dtype, [&](auto itag) {
        using I = decltype(itag);
        O* o = static_cast<O*>(out.data);
        const I* x = static_cast<const I*>(in.data);
        for_each_element<2>(out, {&out, &in}, [&](const std::array<int64_t, 2>& off) {
          if constexpr (std::is_same_v<O, I>) {
            o[off[0]] = x[off[1]];
          } else if constexpr (std::is_same_v<O, bf16>) {
            o[off[0]] = bf16::from_float(static_cast<float>(to_compute(x[off[1]])));
          } else {
            o[off[0]] = static_cast<O>(to_compute(x[off[1]]));
          }
        });
      });
    });
    return;
  }
  if (out.dtype != in.dtype)
    throw std::invalid_argument("cpu unary: output and input dtypes differ");
  dispatch_float(out.dtype, "unary op", [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    T* o = static_cast<T*>(out.data);
    const T* x = static_cast<const T*>(in.data);
    const C ca = static_cast<C>(a), cb = static_cast<C>(b);
    for_each_element<2>(out, {&out, &in}, [&](const std::array<int64_t, 2>& off) {
      o[off[0]] = from_compute<T>(smath::unary<C>(op, to_compute(x[off[1]]), ca, cb));
    });
  });
}

void CpuBackend::binary(BinaryOp op, const View& out, const View& a, const View& b) {
  if (out.dtype != a.dtype || out.dtype != b.dtype)
    throw std::invalid_argument("cpu binary: operand dtypes differ");
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    T* o = static_cast<T*>(out.data);
    const T* x = static_cast<const T*>(a.data);
    const T* y = static_cast<const T*>(b.data);
    for_each_element<3>(out, {&out, &a, &b}, [&](const std::array<int64_t, 3>& off) {
      if constexpr (std::is_same_v<C, int64_t>) {
        o[off[0]] = static_cast<T>(smath::binary_int(op, to_compute(x[off[1]]), to_compute(y[off[2]])));
      } else {
        o[off[0]] = from_compute<T>(smath::binary<C>(op, to_compute(x[off[1]]), to_compute(y[off[2]])));
      }
    });
  });
}

void CpuBackend::where(const View& out, const View& cond, const View& a, const View& b) {
  dispatch_dtype(cond.dtype, [&](auto ctag) {
    using CT = decltype(ctag);
    dispatch_dtype(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      T* o = static_cast<T*>(out.data);
      const CT* c = static_cast<const CT*>(cond.data);
      const T* x = static_cast<const T*>(a.data);
      const T* y = static_cast<const T*>(b.data);
      for_each_element<4>(out, {&out, &cond, &a, &b}, [&](const std::array<int64_t, 4>& off) {
        o[off[0]] = to_compute(c[off[1]]) != 0 ? x[off[2]] : y[off[3]];
      });
    });
  });
}

void CpuBackend::triangle(const View& out, const View& in, int64_t diagonal, bool lower, double fill) {
  if (out.ndim < 2) throw std::invalid_argument("tril/triu: need at least 2 dims");
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    T* o = static_cast<T*>(out.data);
    const T* x = static_cast<const T*>(in.data);
    const T fv = from_compute<T>(static_cast<C>(fill));
    const int nd = out.ndim;
    const int64_t R = out.size[nd - 2], K = out.size[nd - 1];
    int64_t batch = 1;
    for (int d = 0; d < nd - 2; ++d) batch *= out.size[d];
    for (int64_t bi = 0; bi < batch; ++bi) {
      int64_t oo = 0, io = 0, rem = bi;
      for (int d = nd - 3; d >= 0; --d) {
        int64_t i = rem % out.size[d];
        rem /= out.size[d];
        oo += i * out.stride[d];
        io += i * in.stride[d];
      }
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < K; ++c) {
          bool keep = lower ? (c - r <= diagonal) : (c - r >= diagonal);
          o[oo + r * out.stride[nd - 2] + c * out.stride[nd - 1]] =
              keep ? x[io + r * in.stride[nd - 2] + c * in.stride[nd - 1]] : fv;
        }
    }
  });
}

// --- random -----------------------------------------------------------------------------------

void CpuBackend::random(const View& out, RandomDist dist, uint64_t seed, uint64_t offset, double a, double b) {
  if (!out.is_contiguous()) throw std::invalid_argument("random: output must be contiguous");
  dispatch_float(out.dtype, "random", [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.data);
    const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      uint64_t idx = offset + static_cast<uint64_t>(i);
      double v = dist == RandomDist::normal ? a + b * philox::normal(seed, idx)
                                            : a + (b - a) * static_cast<double>(philox::uniform(seed, idx));
      o[i] = from_compute<T>(v);
    }
  });
}

}  // namespace ttt::cpu_impl
