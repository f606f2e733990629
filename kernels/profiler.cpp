// kernels/profiler.cpp — see profiler.h.
#include "kernels/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>

namespace ttt {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::map<std::string, KernelStat>& stats() {
  static std::map<std::string, KernelStat> s;
  return s;
}
MemoryPeakStat g_peak;
std::string g_last_call;
std::map<std::pair<std::string, std::string>, ScopedKernelStat>& scoped_stats() {
  static std::map<std::pair<std::string, std::string>, ScopedKernelStat> s;
  return s;
}
thread_local const char* g_scope = nullptr;

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::copy: return "copy";
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::scaled_sigmoid: return "scaled_sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::silu: return "silu";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::gelu_erf: return "gelu_erf";
    case UnaryOp::abs: return "abs";
    case UnaryOp::sign: return "sign";
    case UnaryOp::reciprocal: return "reciprocal";
    case UnaryOp::square: return "square";
    case UnaryOp::pow_scalar: return "pow_scalar";
    case UnaryOp::affine: return "affine";
    case UnaryOp::silu_grad: return "silu_grad";
    case UnaryOp::gelu_tanh_grad: return "gelu_tanh_grad";
    case UnaryOp::gelu_erf_grad: return "gelu_erf_grad";
    case UnaryOp::relu_mask: return "relu_mask";
  }
  return "?";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::pow: return "pow";
    default: return "compare";
  }
}

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
    case ReduceOp::sum_sq: return "sum_sq";
  }
  return "?";
}

// Bytes of a view's distinct elements (broadcast dims, stride 0, count once).
double vb(const View& v) {
  double n = 1;
  for (int d = 0; d < v.ndim; ++d)
    if (v.stride[d] != 0) n *= static_cast<double>(v.size[d]);
  if (v.numel() == 0) n = 0;
  return n * static_cast<double>(dtype_size(v.dtype));
}
double rb(int64_t rows, int64_t cols, DType dt, double buffers) {
  return static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(dtype_size(dt)) * buffers;
}
double attn_bytes(const AttentionShape& s, DType dt, double q_like, double kv_like) {
  const double bh = static_cast<double>(s.batch * s.heads) * static_cast<double>(s.head_dim) * dtype_size(dt);
  return bh * (q_like * static_cast<double>(s.q_len) + kv_like * static_cast<double>(s.kv_len));
}

// Forwards every call to `inner`; compute calls are bracketed by synchronizations and timed.
class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : b_(inner) {}

  Device device() const override { return b_.device(); }
  void* alloc(size_t n) override {
    void* p = b_.alloc(n);
    if (Profiler::enabled()) Profiler::note_allocation(b_.memory_allocated(), n);
    return p;
  }
  void free(void* p, size_t n) override { b_.free(p, n); }
  void copy_from_host(void* d, const void* s, size_t n) override { timed("copy_from_host", static_cast<double>(n), [&] { b_.copy_from_host(d, s, n); }); }
  void copy_to_host(void* d, const void* s, size_t n) override { timed("copy_to_host", static_cast<double>(n), [&] { b_.copy_to_host(d, s, n); }); }
  void synchronize() override { b_.synchronize(); }
  void* native_stream() override { return b_.native_stream(); }
  size_t memory_allocated() const override { return b_.memory_allocated(); }
  size_t memory_peak() const override { return b_.memory_peak(); }
  void reset_peak_memory() override { b_.reset_peak_memory(); }
  size_t memory_reserved() const override { return b_.memory_reserved(); }

  void fill(const View& o, double v) override { timed("fill", vb(o), [&] { b_.fill(o, v); }); }
  void unary(UnaryOp op, const View& o, const View& i, double a, double b) override {
    timed(std::string("unary ") + unary_name(op), vb(o) + vb(i), [&] { b_.unary(op, o, i, a, b); });
  }
  void binary(BinaryOp op, const View& o, const View& a, const View& b) override {
    timed(std::string("binary ") + binary_name(op), vb(o) + vb(a) + vb(b), [&] { b_.binary(op, o, a, b); });
  }
  void where(const View& o, const View& c, const View& a, const View& b) override { timed("where", vb(o) + vb(c) + vb(a) + vb(b), [&] { b_.where(o, c, a, b); }); }
  void triangle(const View& o, const View& i, int64_t d, bool l, double f) override {
    timed("triangle", vb(o) + vb(i), [&] { b_.triangle(o, i, d, l, f); });
  }
  void reduce(ReduceOp op, const View& o, const View& i) override {
    timed(std::string("reduce ") + reduce_name(op), vb(o) + vb(i), [&] { b_.reduce(op, o, i); });
  }
  void argmax(const View& o, const View& i, int d) override { timed("argmax", vb(o) + vb(i), [&] { b_.argmax(o, i, d); }); }
  void cumsum(const View& o, const View& i, int d) override { timed("cumsum", vb(o) + vb(i), [&] { b_.cumsum(o, i, d); }); }
  void gemm(const GemmArgs& g) override {
    const bool batched = g.batch > 1;
    const double ab = dtype_size(g.ab_dtype), cb = dtype_size(g.c_dtype), nb = static_cast<double>(g.batch);
    const double bytes = (g.stride_a ? nb : 1.0) * g.m * g.k * ab + (g.stride_b ? nb : 1.0) * g.k * g.n * ab +
                         nb * g.m * g.n * cb * (g.beta != 0 ? 2 : 1);
    timed(std::string(batched ? "gemm batched " : "gemm ") + dtype_name(g.ab_dtype) + "->" + dtype_name(g.c_dtype),
          bytes, [&] { b_.gemm(g); });
  }
  void index_select(const View& o, const View& i, int d, const View& x) override {
    timed("index_select", vb(o) + vb(o) + vb(x), [&] { b_.index_select(o, i, d, x); });
  }
  void index_add(const View& o, int d, const View& x, const View& s) override { timed("index_add", vb(s) * 2 + vb(s) + vb(x), [&] { b_.index_add(o, d, x, s); }); }
  void softmax_fwd(void* y, const void* x, int64_t r, int64_t c, DType dt, bool l) override {
    timed("softmax_fwd", rb(r, c, dt, 2), [&] { b_.softmax_fwd(y, x, r, c, dt, l); });
  }
  void softmax_bwd(void* dx, const void* dy, const void* y, int64_t r, int64_t c, DType dt, bool l) override {
    timed("softmax_bwd", rb(r, c, dt, 3), [&] { b_.softmax_bwd(dx, dy, y, r, c, dt, l); });
  }
  void layer_norm_fwd(void* y, float* m, float* rs, const void* x, const void* w, const void* b, int64_t r, int64_t c,
                      double eps, DType dt) override {
    timed("layer_norm_fwd", rb(r, c, dt, 2), [&] { b_.layer_norm_fwd(y, m, rs, x, w, b, r, c, eps, dt); });
  }
  void layer_norm_bwd(void* dx, float* dw, float* db, const void* dy, const void* x, const float* m, const float* rs,
                      const void* w, int64_t r, int64_t c, DType dt) override {
    timed("layer_norm_bwd", rb(r, c, dt, 3), [&] { b_.layer_norm_bwd(dx, dw, db, dy, x, m, rs, w, r, c, dt); });
  }
  void rms_norm_fwd(void* y, float* rs, const void* x, const void* w, int64_t r, int64_t c, double eps, DType dt) override {
    timed("rms_norm_fwd", rb(r, c, dt, 2), [&] { b_.rms_norm_fwd(y, rs, x, w, r, c, eps, dt); });
  }
  void rms_norm_bwd(void* dx, float* dw, const void* dy, const void* x, const float* rs, const void* w, int64_t r,
                    int64_t c, DType dt) override {
    timed("rms_norm_bwd", rb(r, c, dt, 3), [&] { b_.rms_norm_bwd(dx, dw, dy, x, rs, w, r, c, dt); });
  }
  void cross_entropy_fwd(float* l, float* lse, const void* x, const int64_t* t, int64_t r, int64_t c, int64_t ig,
                         DType dt) override {
    timed("cross_entropy_fwd", rb(r, c, dt, 1), [&] { b_.cross_entropy_fwd(l, lse, x, t, r, c, ig, dt); });
  }
  void cross_entropy_bwd(void* dx, const float* dl, const void* x, const float* lse, const int64_t* t, int64_t r,
                         int64_t c, int64_t ig, DType dt, DType dx_dt) override {
    timed("cross_entropy_bwd", rb(r, c, dt, 1) + rb(r, c, dx_dt, 1),
          [&] { b_.cross_entropy_bwd(dx, dl, x, lse, t, r, c, ig, dt, dx_dt); });
  }
  void rope(const View& o, const View& i, const View& c, const View& s, int td, bool inv) override {
    timed("rope", vb(o) + vb(i) + vb(c) + vb(s), [&] { b_.rope(o, i, c, s, td, inv); });
  }
  void swiglu_fwd(const View& o, const View& a, const View& b) override {
    timed("swiglu_fwd", vb(o) + vb(a) + vb(b), [&] { b_.swiglu_fwd(o, a, b); });
  }
  void swiglu_bwd(const View& da, const View& db, const View& dy, const View& a, const View& b) override {
    timed("swiglu_bwd", vb(da) + vb(db) + vb(dy) + vb(a) + vb(b), [&] { b_.swiglu_bwd(da, db, dy, a, b); });
  }
  bool attention_supported(int64_t d, DType dt) const override { return b_.attention_supported(d, dt); }
  void attention_fwd(void* o, float* lse, const void* q, const void* k, const void* v, const AttentionShape& s,
                     DType dt) override {
    timed("attention_fwd", attn_bytes(s, dt, 2, 2), [&] { b_.attention_fwd(o, lse, q, k, v, s, dt); });
  }
  void attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                     const void* out, const float* lse, const AttentionShape& s, DType dt) override {
    timed("attention_bwd", attn_bytes(s, dt, 4, 4), [&] { b_.attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, s, dt); });
  }
  void random(const View& o, RandomDist d, uint64_t seed, uint64_t off, double a, double b) override {
    timed("random", vb(o), [&] { b_.random(o, d, seed, off, a, b); });
  }
  void adamw(const AdamWArgs& a) override { timed("adamw", static_cast<double>(a.n) * (24.0 + dtype_size(a.grad_dtype)), [&] { b_.adamw(a); }); }
  void run(FusedCall& c) override { timed(c.name(), c.bytes(), [&] { b_.run(c); }); }

 private:
  template <class F> void timed(const std::string& name, double bytes, F&& f) {
    if (!Profiler::enabled()) {
      f();
      return;
    }
    b_.synchronize();
    auto t0 = std::chrono::steady_clock::now();
    f();
    b_.synchronize();
    Profiler::add(name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), bytes);
  }
  Backend& b_;
};

}  // namespace

bool Profiler::enabled() { return g_enabled.load(std::memory_order_relaxed); }
void Profiler::set_enabled(bool on) { g_enabled.store(on); }

void Profiler::reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  stats().clear();
  scoped_stats().clear();
  g_peak = MemoryPeakStat{};
  g_last_call.clear();
}

MemoryPeakStat Profiler::memory_peak() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_peak;
}

void Profiler::note_allocation(size_t held, size_t alloc_bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (held > g_peak.bytes) g_peak = {held, alloc_bytes, g_last_call};
}

void Profiler::add(const std::string& name, double seconds, double bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  const std::string scope = g_scope ? g_scope : "forward";
  ScopedKernelStat& sk = scoped_stats()[{scope, name}];
  sk.scope = scope;
  sk.kernel = name;
  sk.calls++;
  sk.seconds += seconds;
  sk.bytes += bytes;
  KernelStat& s = stats()[name];
  g_last_call = name;
  s.name = name;
  s.calls++;
  s.seconds += seconds;
  s.bytes += bytes;
}

std::vector<KernelStat> Profiler::snapshot() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<KernelStat> v;
  for (auto& [k, s] : stats()) v.push_back(s);
  std::sort(v.begin(), v.end(), [](const KernelStat& a, const KernelStat& b) { return a.seconds > b.seconds; });
  return v;
}

std::vector<ScopedKernelStat> Profiler::scoped_snapshot() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<ScopedKernelStat> v;
  for (auto& [k, s] : scoped_stats()) v.push_back(s);
  std::sort(v.begin(), v.end(), [](const ScopedKernelStat& a, const ScopedKernelStat& b) { return a.seconds > b.seconds; });
  return v;
}

ProfileScope::ProfileScope(const char* scope) : prev_(g_scope) { g_scope = scope; }
ProfileScope::~ProfileScope() { g_scope = prev_; }

Backend& profiling_backend(Backend& inner) {
  static std::mutex mu;
  static std::map<Backend*, std::unique_ptr<ProfilingBackend>> wrappers;
  std::lock_guard<std::mutex> lock(mu);
  auto& w = wrappers[&inner];
  if (!w) w = std::make_unique<ProfilingBackend>(inner);
  return *w;
}

}  // namespace ttt
