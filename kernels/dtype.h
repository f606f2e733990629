// kernels/dtype.h — element types, devices and the bf16 storage type.
//
// This is the lowest header of the project: kernels/, autograd/ and everything above use these
// enums. It includes no CUDA header; TTT_HD marks helpers that nvcc also compiles for the device.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define TTT_HD __host__ __device__ __forceinline__
#else
#define TTT_HD inline
#endif

namespace ttt {

enum class DType : uint8_t { f64, f32, bf16, i64, i32, u16 };
constexpr int kNumDTypes = 6;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::u16: return 2;
  }
  return 0;
}
inline bool is_floating(DType t) { return t == DType::f64 || t == DType::f32 || t == DType::bf16; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f64: return "float64";
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::i64: return "int64";
    case DType::i32: return "int32";
    case DType::u16: return "uint16";
  }
  return "?";
}
// Parses "float32"/"f32"/"fp32", "bfloat16"/"bf16", ... Throws std::invalid_argument otherwise.
DType parse_dtype(const std::string& s);

enum class DeviceType : uint8_t { cpu, cuda };
struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};
inline Device cpu() { return {DeviceType::cpu, 0}; }
inline Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
// Parses "cpu", "cuda", "cuda:1". Throws std::invalid_argument otherwise.
Device parse_device(const std::string& s);

// bfloat16 storage: the upper 16 bits of an IEEE float32. Conversion rounds to nearest even,
// NaN stays NaN. All arithmetic happens in float32 (CPU) or native bf16/fp32 units (CUDA).
struct bf16 {
  uint16_t bits = 0;
  TTT_HD static bf16 from_float(float f) {
    uint32_t u;
#if defined(__CUDA_ARCH__)
    u = __float_as_uint(f);
#else
    std::memcpy(&u, &f, 4);
#endif
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet and NaN
      r.bits = static_cast<uint16_t>((u >> 16) | 0x40u);
      return r;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    r.bits = static_cast<uint16_t>(u >> 16);
    return r;
  }
  TTT_HD float to_float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
  }
};

// The C++ type stored for each dtype, and a helper to dispatch a generic lambda over dtypes.
template <DType T> struct StorageType;
template <> struct StorageType<DType::f64> { using type = double; };
template <> struct StorageType<DType::f32> { using type = float; };
template <> struct StorageType<DType::bf16> { using type = bf16; };
template <> struct StorageType<DType::i64> { using type = int64_t; };
template <> struct StorageType<DType::i32> { using type = int32_t; };
template <> struct StorageType<DType::u16> { using type = uint16_t; };

// Widen a stored element to the type arithmetic is done in (double for f64, float otherwise
// for floats, int64 for integers), and narrow back.
TTT_HD float to_compute(bf16 v) { return v.to_float(); }
TTT_HD float to_compute(float v) { return v; }
TTT_HD double to_compute(double v) { return v; }
TTT_HD int64_t to_compute(int64_t v) { return v; }
TTT_HD int64_t to_compute(int32_t v) { return v; }
TTT_HD int64_t to_compute(uint16_t v) { return v; }
template <class T, class S> TTT_HD T from_compute(S v) { return static_cast<T>(v); }
template <> TTT_HD bf16 from_compute<bf16, float>(float v) { return bf16::from_float(v); }
template <> TTT_HD bf16 from_compute<bf16, double>(double v) { return bf16::from_float(static_cast<float>(v)); }
template <> TTT_HD bf16 from_compute<bf16, int64_t>(int64_t v) { return bf16::from_float(static_cast<float>(v)); }

// Calls f(T{}) with T the storage type of `t`. Usage: dispatch(t, [&](auto tag){ using T = decltype(tag); ... });
template <class F> decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f64: return f(double{});
    case DType::f32: return f(float{});
    case DType::bf16: return f(bf16{});
    case DType::i64: return f(int64_t{});
    case DType::i32: return f(int32_t{});
    case DType::u16: return f(uint16_t{});
  }
  throw std::logic_error("dispatch_dtype: bad dtype");
}
template <class F> decltype(auto) dispatch_float(DType t, const char* who, F&& f) {
  switch (t) {
    case DType::f64: return f(double{});
    case DType::f32: return f(float{});
    case DType::bf16: return f(bf16{});
    default: break;
  }
  throw std::invalid_argument(std::string(who) + ": expected a floating dtype, got " + dtype_name(t));
}

}  // namespace ttt
