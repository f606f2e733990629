// kernels/cuda/elementwise.cu — fill, unary (incl. the dtype-converting copy), binary, where and
// triangle. The per-element formulas are kernels/scalar_math.h, shared with the CPU reference;
// the dtype rules are the CPU's: float math for f32/bf16, double for f64, int64 for integers.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/map.cuh"
#include "kernels/scalar_math.h"

namespace ttt::cuda_impl {

namespace {

// Functors for launch_map (map.cuh): each maps one element of every input to one output element.
// fill has no input; its value is converted on the host with the CPU's rules and moved as bits.
template <class T> struct FillFn {
  T v;
  __device__ __forceinline__ T operator()() const { return v; }
};

// The op is a run-time switch inside the kernel rather than a template parameter: uniform
// across the grid, so it costs a few instructions, and it keeps compile time and binary size
// down (22 ops x 3 dtypes x 4 kernel variants otherwise).
template <class T> struct UnaryFn {
  UnaryOp op;
  compute_t<T> a, b;
  __device__ __forceinline__ T operator()(T x) const {
    return from_compute<T>(smath::unary<compute_t<T>>(op, to_compute(x), a, b));
  }
};

// The `copy` op between any two dtypes, with the CPU's conversion rules.
template <class O, class I> struct ConvertFn {
  __device__ __forceinline__ O operator()(I x) const {
    if constexpr (std::is_same_v<O, I>) return x;
    else if constexpr (std::is_same_v<O, bf16>) return bf16::from_float(static_cast<float>(to_compute(x)));
    else return static_cast<O>(to_compute(x));
  }
};

// Integers go through smath::binary_int (truncating division, division by zero gives 0), floats
// through smath::binary in their compute type, exactly as on the CPU.
template <class T> struct BinaryFn {
  BinaryOp op;
  __device__ __forceinline__ T operator()(T x, T y) const {
    if constexpr (std::is_same_v<compute_t<T>, int64_t>)
      return static_cast<T>(smath::binary_int(op, to_compute(x), to_compute(y)));
    else
      return from_compute<T>(smath::binary<compute_t<T>>(op, to_compute(x), to_compute(y)));
  }
};

// where: the selected values only move, so they are handled as raw bits of their width.
template <class C, class Bits> struct WhereFn {
  __device__ __forceinline__ Bits operator()(C c, Bits a, Bits b) const { return to_compute(c) != 0 ? a : b; }
};

// triangle: one block-row per matrix row (no per-element division), columns across threads.
template <class Bits>
__global__ void __launch_bounds__(kThreads) triangle_kernel(Bits* out, const Bits* in, OffsetCalc<2> batch,
                                                            int64_t nrows_total, int64_t R, int64_t K,
                                                            int64_t os_r, int64_t os_c, int64_t is_r,
                                                            int64_t is_c, int64_t diagonal, bool lower,
                                                            Bits fill) {
  for (int64_t row = blockIdx.x; row < nrows_total; row += gridDim.x) {
    const int64_t bi = row / R, r = row - bi * R;
    int64_t off[2];
    batch.get64(bi, off);
    Bits* o = out + off[0] + r * os_r;
    const Bits* x = in + off[1] + r * is_r;
    for (int64_t c = threadIdx.x; c < K; c += blockDim.x) {
      const bool keep = lower ? (c - r <= diagonal) : (c - r >= diagonal);
      o[c * os_c] = keep ? x[c * is_c] : fill;
    }
  }
}

}  // namespace

void CudaBackend::fill(const View& out, double value) {
  activate();
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = from_compute<T>(static_cast<compute_t<T>>(value));
    using Bits = typename BitsOf<sizeof(T)>::type;
    launch_map<Bits>(FillFn<Bits>{to_bits(v)}, stream_, sm_count_, out, {});
  });
}

void CudaBackend::unary(UnaryOp op, const View& out, const View& in, double a, double b) {
  activate();
  if (op == UnaryOp::copy) {
    // Three tiers: a dense same-dtype copy is a DMA-engine memcpy; a strided same-dtype copy
    // moves raw bits; only a dtype change needs the converting functor (6 x 6 instantiations).
    if (out.dtype == in.dtype && out.is_contiguous() && in.is_contiguous()) {
      const size_t nbytes = static_cast<size_t>(out.numel()) * dtype_size(out.dtype);
      if (nbytes && out.data != in.data)
        CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, nbytes, cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    if (out.dtype == in.dtype) {  // a strided copy only moves bits
      dispatch_bits(out.dtype, [&](auto bits) {
        using B = decltype(bits);
        launch_map<B, B>(ConvertFn<B, B>{}, stream_, sm_count_, out, {&in});
      });
      return;
    }
    dispatch_dtype(out.dtype, [&](auto otag) {
      using O = decltype(otag);
      dispatch_dtype(in.dtype, [&](auto itag) {
        using I = decltype(itag);
        launch_map<O, I>(ConvertFn<O, I>{}, stream_, sm_count_, out, {&in});
      });
    });
    return;
  }
  if (out.dtype != in.dtype) throw std::invalid_argument("cuda unary: output and input dtypes differ");
  dispatch_float(out.dtype, "unary op", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    launch_map<T, T>(UnaryFn<T>{op, static_cast<C>(a), static_cast<C>(b)}, stream_, sm_count_, out, {&in});
  });
}

void CudaBackend::binary(BinaryOp op, const View& out, const View& a, const View& b) {
  if (out.dtype != a.dtype || out.dtype != b.dtype) throw std::invalid_argument("cuda binary: operand dtypes differ");
  activate();
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch_map<T, T, T>(BinaryFn<T>{op}, stream_, sm_count_, out, {&a, &b});
  });
}

void CudaBackend::where(const View& out, const View& cond, const View& a, const View& b) {
  if (out.dtype != a.dtype || out.dtype != b.dtype) throw std::invalid_argument("cuda where: value dtypes differ");
  activate();
  dispatch_dtype(cond.dtype, [&](auto ctag) {
    using C = decltype(ctag);
    dispatch_bits(out.dtype, [&](auto bits) {
      using B = decltype(bits);
      launch_map<B, C, B, B>(WhereFn<C, B>{}, stream_, sm_count_, out, {&cond, &a, &b});
    });
  });
}

void CudaBackend::triangle(const View& out, const View& in, int64_t diagonal, bool lower, double fill) {
  if (out.ndim < 2) throw std::invalid_argument("tril/triu: need at least 2 dims");
  if (out.dtype != in.dtype) throw std::invalid_argument("cuda triangle: dtypes differ");
  activate();
  const int nd = out.ndim;
  const int64_t R = out.size[nd - 2], K = out.size[nd - 1];
  // Leading dims are batch dims of arbitrary strides: their offsets come from an OffsetCalc,
  // once per matrix row; the last two dims are handled with plain row/column strides.
  View bshape = out;  // the batch dims, for the offsets of each matrix
  bshape.ndim = nd - 2;
  View ib = in;
  ib.ndim = nd - 2;
  OffsetCalc<2> batch = make_offset_calc<2>(bshape, {&bshape, &ib});
  const int64_t rows = batch.numel() * R;
  if (rows == 0 || K == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, std::max<int64_t>(32, next_pow2(K))));
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{sm_count_} * 32));
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using B = typename BitsOf<sizeof(T)>::type;
    const B fv = to_bits(from_compute<T>(static_cast<compute_t<T>>(fill)));
    triangle_kernel<B><<<grid, threads, 0, stream_>>>(static_cast<B*>(out.data), static_cast<const B*>(in.data),
                                                      batch, rows, R, K, out.stride[nd - 2], out.stride[nd - 1],
                                                      in.stride[nd - 2], in.stride[nd - 1], diagonal, lower, fv);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ttt::cuda_impl
