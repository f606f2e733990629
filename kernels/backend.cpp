// kernels/backend.cpp — device -> backend dispatch and dtype/device parsing.
#include "kernels/backend.h"

#include <algorithm>
#include <atomic>
#include <cctype>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/profiler.h"

namespace ttt {

// Defined in kernels/cuda/cuda_backend.cu when built with CUDA, else in kernels/cuda_stub.cpp.
Backend* cuda_backend_instance(int index);
int cuda_device_count_impl();
bool cuda_built_impl();

namespace {
Backend& device_backend(Device d) {
  if (d.is_cpu()) {
    static cpu_impl::CpuBackend cpu_backend;
    return cpu_backend;
  }
  if (!cuda_built())
    throw std::runtime_error("device " + d.str() + " requested but ttt was built without CUDA "
                             "(configure with -DTTT_CUDA=ON on a machine with nvcc)");
  int n = cuda_device_count();
  if (d.index < 0 || d.index >= n)
    throw std::runtime_error("device " + d.str() + " requested but " + std::to_string(n) +
                             " CUDA device(s) are visible");
  return *cuda_backend_instance(d.index);
}
}  // namespace

Backend& backend(Device d) {
  Backend& b = device_backend(d);
  return Profiler::enabled() ? profiling_backend(b) : b;
}

// No graphs by default (kernels/backend.h); graphs_supported() says so before anyone asks.
int64_t Backend::graph_begin_capture() {
  throw GraphCaptureError("graph capture is not supported on " + device().str());
}
void Backend::graph_end_capture(int64_t) { throw GraphCaptureError("graph capture is not supported on " + device().str()); }
void Backend::graph_abort_capture(int64_t) {}
void Backend::graph_replay(int64_t) { throw GraphCaptureError("graphs are not supported on " + device().str()); }
void Backend::graph_release(int64_t) {}

void check_dlogits_dtype(DType dt, DType dx_dt) {
  if (dx_dt != dt && !(dt == DType::f32 && dx_dt == DType::bf16))
    throw std::invalid_argument(std::string("cross_entropy backward: dlogits must be ") + dtype_name(dt) +
                                " (or bf16 for float32 logits), got " + dtype_name(dx_dt));
}

bool cuda_built() { return cuda_built_impl(); }
int cuda_device_count() {
  // Asked on every op that touches a GPU: query the driver once per process.
  static const int n = cuda_built_impl() ? cuda_device_count_impl() : 0;
  return n;
}
bool cuda_available() { return cuda_device_count() > 0; }

namespace {
std::atomic<bool> g_deterministic{false};
}  // namespace
void set_deterministic(bool on) { g_deterministic.store(on); }
bool deterministic() { return g_deterministic.load(); }

DType parse_dtype(const std::string& s0) {
  std::string s = s0;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "float64" || s == "f64" || s == "fp64" || s == "double") return DType::f64;
  if (s == "float32" || s == "f32" || s == "fp32" || s == "float") return DType::f32;
  if (s == "bfloat16" || s == "bf16") return DType::bf16;
  if (s == "int64" || s == "i64") return DType::i64;
  if (s == "int32" || s == "i32") return DType::i32;
  if (s == "uint16" || s == "u16") return DType::u16;
  throw std::invalid_argument("unknown dtype '" + s0 + "' (expected float32, bfloat16, float64, int64, int32 or uint16)");
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t pos = 0;
      int idx = std::stoi(s.substr(5), &pos);
      if (pos == s.size() - 5 && idx >= 0) return cuda(idx);
    } catch (const std::exception&) {
    }
  }
  throw std::invalid_argument("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

}  // namespace ttt
