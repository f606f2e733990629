// kernels/backend.h — the one compute interface, implemented by kernels/cpu (the reference) and
// kernels/cuda. Kernels see raw memory through `View`s (pointer, dtype, sizes, element strides);
// they know nothing of Tensors or autograd. autograd/ calls these through `backend(device)`.
//
// Conventions
// - A View's `data` already points at element [0,...,0]. Strides count elements, may be 0
//   (broadcast) and, for inputs, may be anything (transposed, sliced). Outputs are written
//   through their strides too, but must not overlap themselves.
// - Elementwise ops take operands of the output's ndim; broadcasting is expressed by stride 0.
// - Floating math is done in float32 for f32/bf16 storage and in float64 for f64 storage.
//   Reductions accumulate in double on the CPU (the reference) and in float32 on CUDA (float64
//   for f64); GEMMs accumulate in float32 (float64 for f64; the CPU's loop for small products
//   in double).
// - Fused kernels (norms, softmax, cross-entropy, AdamW, ...) require row-contiguous inputs;
//   the autograd op that calls them makes inputs contiguous first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/dtype.h"
#include "kernels/fused_call.h"

namespace ttt {

constexpr int kMaxDims = 8;

struct View {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= size[i];
    return n;
  }
  bool is_contiguous() const {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (size[i] != 1 && stride[i] != s) return false;
      s *= size[i];
    }
    return true;
  }
};

enum class UnaryOp : uint8_t {
  copy,        // y = x (with dtype conversion)
  neg, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, silu, gelu_tanh, gelu_erf, abs, sign,
  reciprocal, square,
  pow_scalar,  // y = x^a
  affine,      // y = a*x + b
  scaled_sigmoid,  // y = a * sigmoid(x)
  // Derivatives used by the fused (non-create_graph) backward paths:
  silu_grad,       // d silu / dx
  gelu_tanh_grad,  // d gelu_tanh / dx
  gelu_erf_grad,   // d gelu_erf / dx
  relu_mask,       // x > 0 ? 1 : 0
};

enum class BinaryOp : uint8_t {
  add, sub, mul, div, maximum, minimum, pow,
  eq, ne, lt, le, gt, ge,  // comparisons write 1 or 0 in the output dtype
};

enum class ReduceOp : uint8_t { sum, max, min, sum_sq };

enum class RandomDist : uint8_t { uniform, normal };

struct GemmArgs {
  // Row-major, batched: C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i], i in [0, batch).
  // op(A) is m x k, op(B) is k x n, C is m x n. lda/ldb/ldc are row strides (elements) of the
  // matrices as stored (before op). stride_* is the distance between consecutive batch items.
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  double alpha = 1.0, beta = 0.0;
  const void* a = nullptr; int64_t lda = 0, stride_a = 0;
  const void* b = nullptr; int64_t ldb = 0, stride_b = 0;
  void* c = nullptr; int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
  DType ab_dtype = DType::f32;  // dtype of A and B
  DType c_dtype = DType::f32;   // dtype of C (may differ: bf16 inputs, fp32 output)
};

struct AdamWArgs {
  // One fused AdamW step over n elements. param/m/v are float32 (master weights and moments);
  // grad may be f32 or bf16. Bias corrections are computed by the caller:
  //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
  //   p -= lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p)
  float* param = nullptr; const void* grad = nullptr; DType grad_dtype = DType::f32;
  float* m = nullptr; float* v = nullptr;
  int64_t n = 0;
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0, bias_correction1 = 1,
         bias_correction2 = 1;
  double grad_scale = 1.0;  // grads are multiplied by this first (clipping)
};

// Where the rows of one [batch, heads, len, head_dim] attention operand lie (in elements; a row's
// head_dim values are contiguous): row t of head h of batch b starts at b·sb + h·sh + t·st. Unset
// (st == 0) means contiguous. A [B, T, H, D] projection seen as [B, H, T, D] is {T·H·D, D, H·D}: the
// kernels read and write it in place, so splitting and merging heads cost no copies.
struct AttentionLayout {
  int64_t sb = 0, sh = 0, st = 0;
  TTT_HD bool set() const { return st != 0; }
  TTT_HD int64_t at(int64_t b, int64_t h, int64_t t) const { return b * sb + h * sh + t * st; }
  // Element offset of row t of flat head bh = b · heads + h.
  TTT_HD int64_t row(int64_t bh, int64_t heads, int64_t t) const { return at(bh / heads, bh % heads, t); }
};

// Shape and masking of one fused causal attention call (Backend::attention_fwd / _bwd).
// Buffers are [batch, heads, len, head_dim] in the layouts below (contiguous where unset); q has
// q_len rows, k and v kv_len rows; dq, dk, dv are written in their own layouts.
// Query row i sits at absolute position i + (kv_len - q_len): the queries are the LAST q_len
// positions of the keys (decode: the new tokens against the whole KV cache), so q_len <= kv_len
// when causal. Row i attends to key j iff
//   causal:  j <= pos(i)  and, with window > 0, j > pos(i) - window
//   !causal: every j (window must be 0).
// Every query row attends to at least its own position, so no row is empty.
struct AttentionShape {
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  bool causal = true;
  int64_t window = 0;
  double scale = 1.0;  // scores = scale * q . k
  AttentionLayout q, k, v, out, dout, dq, dk, dv;
  // This shape with every unset layout contiguous (what the backends index with).
  AttentionShape resolved() const {
    AttentionShape r = *this;
    const auto fill = [&](AttentionLayout& l, int64_t len) {
      if (!l.set()) l = {heads * len * head_dim, len * head_dim, head_dim};
    };
    for (AttentionLayout* l : {&r.q, &r.out, &r.dout, &r.dq}) fill(*l, q_len);
    for (AttentionLayout* l : {&r.k, &r.v, &r.dk, &r.dv}) fill(*l, kv_len);
    return r;
  }
  TTT_HD int64_t q_offset() const { return kv_len - q_len; }
  // The keys query row i attends to: [key_begin(i), key_end(i)).
  TTT_HD int64_t key_begin(int64_t i) const {
    const int64_t b = i + q_offset() - window + 1;
    return causal && window > 0 && b > 0 ? b : 0;
  }
  TTT_HD int64_t key_end(int64_t i) const { return causal ? i + q_offset() + 1 : kv_len; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // --- memory ---------------------------------------------------------------------------
  virtual void* alloc(size_t nbytes) = 0;  // throws std::bad_alloc-derived ttt::OutOfMemory
  virtual void free(void* p, size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void synchronize() = 0;
  // The stream all of this device's work is ordered on (a cudaStream_t for CUDA), for libraries
  // that enqueue their own work after it (the NCCL communicator). Null when the backend has none:
  // callers then synchronize() instead.
  virtual void* native_stream() { return nullptr; }
  // Bytes currently held and the peak since the last reset (the allocator's view).
  virtual size_t memory_allocated() const = 0;
  virtual size_t memory_peak() const = 0;
  virtual void reset_peak_memory() = 0;
  // Bytes the allocator holds from the driver (handed out + cached); without a cache, allocated.
  virtual size_t memory_reserved() const { return memory_allocated(); }

  // --- elementwise ------------------------------------------------------------------------
  virtual void fill(const View& out, double value) = 0;
  virtual void unary(UnaryOp op, const View& out, const View& in, double a = 0, double b = 0) = 0;
  virtual void binary(BinaryOp op, const View& out, const View& a, const View& b) = 0;
  // out = cond != 0 ? a : b  (cond any dtype; a, b, out same dtype)
  virtual void where(const View& out, const View& cond, const View& a, const View& b) = 0;
  // Keep elements of the last two dims with (col - row) <= diagonal (lower) or >= diagonal
  // (upper); the rest become `fill`. out and in have the same shape.
  virtual void triangle(const View& out, const View& in, int64_t diagonal, bool lower,
                        double fill) = 0;

  // --- reductions -------------------------------------------------------------------------
  // out has in's ndim, with size 1 in every reduced dim.
  virtual void reduce(ReduceOp op, const View& out, const View& in) = 0;
  // Index (int64) of the max along `dim`; out has size 1 in `dim`.
  virtual void argmax(const View& out, const View& in, int dim) = 0;
  virtual void cumsum(const View& out, const View& in, int dim) = 0;

  // --- matrix products ----------------------------------------------------------------------
  virtual void gemm(const GemmArgs& args) = 0;

  // --- indexing ---------------------------------------------------------------------------
  // out = in.index_select(dim, index): out.size[dim] == index count. index is i64/i32/u16.
  virtual void index_select(const View& out, const View& in, int dim, const View& index) = 0;
  // out.index_add_(dim, index, src): out[.., index[i], ..] += src[.., i, ..] (duplicates add).
  virtual void index_add(const View& out, int dim, const View& index, const View& src) = 0;

  // --- fused rows (contiguous, the normalized / softmax dim is the last, `cols` wide) -----------
  virtual void softmax_fwd(void* y, const void* x, int64_t rows, int64_t cols, DType dt, bool log) = 0;
  // dx = y * (dy - sum(dy*y))  or, for log: dx = dy - exp(y) * sum(dy)
  virtual void softmax_bwd(void* dx, const void* dy, const void* y, int64_t rows, int64_t cols,
                           DType dt, bool log) = 0;
  // y = (x - mean) * rstd * w + b (w, b optional: null). mean, rstd: float32 [rows].
  virtual void layer_norm_fwd(void* y, float* mean, float* rstd, const void* x, const void* w,
                              const void* b, int64_t rows, int64_t cols, double eps, DType dt) = 0;
  // dx, and (accumulated over rows into float32 buffers, overwritten) dw, db when non-null.
  virtual void layer_norm_bwd(void* dx, float* dw, float* db, const void* dy, const void* x,
                              const float* mean, const float* rstd, const void* w, int64_t rows,
                              int64_t cols, DType dt) = 0;
  // y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).
  virtual void rms_norm_fwd(void* y, float* rstd, const void* x, const void* w, int64_t rows,
                            int64_t cols, double eps, DType dt) = 0;
  virtual void rms_norm_bwd(void* dx, float* dw, const void* dy, const void* x, const float* rstd,
                            const void* w, int64_t rows, int64_t cols, DType dt) = 0;
  // Per-row loss = logsumexp(x) - x[target] (0 where target == ignore_index); lse saved (f32).
  // targets are int64.
  virtual void cross_entropy_fwd(float* loss, float* lse, const void* logits, const int64_t* targets,
                                 int64_t rows, int64_t cols, int64_t ignore_index, DType dt) = 0;
  // dlogits = dloss[row] * (softmax(x) - onehot(target)), 0 for ignored rows. dloss f32 [rows].
  // dlogits has dtype dx_dt: the logits' dt, or bf16 for float32 logits (a GEMM operand: the
  // float32 value rounded once to bf16, as a cast of it would be).
  // Backends check the pair with check_dlogits_dtype (below).
  virtual void cross_entropy_bwd(void* dlogits, const float* dloss, const void* logits,
                                 const float* lse, const int64_t* targets, int64_t rows,
                                 int64_t cols, int64_t ignore_index, DType dt, DType dx_dt) = 0;

  // --- fused elementwise (any strides, like unary/binary) -----------------------------------------
  // Rotary position embedding of interleaved pairs (x[2i], x[2i+1]) of the last dim of `in`:
  //   y[2i] = x[2i] c − x[2i+1] s,   y[2i+1] = x[2i] s + x[2i+1] c        (inverse: s -> −s)
  // with c = cos[t, i], s = sin[t, i], t = the index along `time_dim` (< ndim − 1). cos and sin
  // are contiguous [T, d/2] tables, float64 when `in` is float64, float32 otherwise (math in the
  // tables' type). out and in have the same shape and any float dtypes (a cast may be fused in).
  virtual void rope(const View& out, const View& in, const View& cos, const View& sin, int time_dim,
                    bool inverse) = 0;
  // SwiGLU's activation y = silu(a) b, and its gradients da = dy b silu'(a), db = dy silu(a).
  // All operands share one shape and dtype.
  virtual void swiglu_fwd(const View& out, const View& a, const View& b) = 0;
  virtual void swiglu_bwd(const View& da, const View& db, const View& dy, const View& a, const View& b) = 0;

  // --- attention (fused, FlashAttention-style; see AttentionShape) --------------------------------
  // Whether attention_fwd/_bwd handle this head_dim and dtype here. When false the caller must use
  // the composite path (matmul + mask + softmax); the CPU reference handles every case.
  virtual bool attention_supported(int64_t head_dim, DType dt) const = 0;
  // out [B,H,Tq,D] = softmax(scale q kᵀ + mask) v, lse float32 [B,H,Tq] = the rows' logsumexp of
  // the masked, scaled scores (natural log).
  virtual void attention_fwd(void* out, float* lse, const void* q, const void* k, const void* v,
                             const AttentionShape& s, DType dt) = 0;
  // Gradients of the forward above given dout, recomputing the probabilities from q, k and the
  // saved lse; out is the forward's output (for D_i = rowsum(dout ∘ out)). dq, dk, dv are
  // overwritten (rows of dk/dv that no query sees become 0).
  virtual void attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                             const void* v, const void* out, const float* lse, const AttentionShape& s,
                             DType dt) = 0;

  // --- random -------------------------------------------------------------------------------
  // Counter-based Philox4x32-10: element i (in row-major order of `out`) depends only on
  // (seed, offset + i), so CPU and CUDA give the same numbers. normal: mean a, std b;
  // uniform: [a, b).
  virtual void random(const View& out, RandomDist dist, uint64_t seed, uint64_t offset, double a,
                      double b) = 0;

  // --- optimizer ------------------------------------------------------------------------------
  virtual void adamw(const AdamWArgs& args) = 0;

  // --- fused op families (kernels/fused_call.h) --------------------------------------------------
  // Runs a fused call (its own header picks the CPU or CUDA implementation). Wrappers (the
  // profiler) override this to time every family without knowing it.
  virtual void run(FusedCall& call) { call.run(*this); }

  // --- graphs: capture and replay of this backend's stream (CUDA graphs, kernels/cuda/graph.cu) ---
  // Between graph_begin_capture() and graph_end_capture() nothing runs: every call is recorded,
  // to run again at each graph_replay(). While capturing:
  //   - alloc() draws from a pool private to the graph, so that memory the recorded kernels write
  //     is never handed to anyone else; the pool lives until the graph is released and every
  //     block of it is freed (tensors made in the capture may outlive the graph);
  //   - copy_from_host() records a copy from a staging buffer the graph keeps (the host values of
  //     the capture are the graph's constants);
  //   - whatever must wait for the device (copy_to_host, synchronize) throws GraphCaptureError,
  //     and so does any call of a backend that cannot record it.
  // Memory made before the capture that the graph reads must stay alive while it is replayed:
  // that is the caller's business (autograd/cuda_graph.h). Defaults: no graphs (the CPU).
  virtual bool graphs_supported() const { return false; }
  virtual int64_t graph_begin_capture();        // a handle > 0
  virtual void graph_end_capture(int64_t graph);  // ends and instantiates; throws on failure
  virtual void graph_abort_capture(int64_t graph);  // ends a capture that failed; nothing is kept
  virtual void graph_replay(int64_t graph);
  virtual void graph_release(int64_t graph);
};

// Thrown while capturing a graph by a call that cannot be recorded (kernels/backend.h, graphs).
struct GraphCaptureError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws unless dlogits' dtype dx_dt suits logits of dtype dt in Backend::cross_entropy_bwd: the same
// dtype, or bf16 for float32 logits.
void check_dlogits_dtype(DType dt, DType dx_dt);

// The backend of a device. The CUDA backend exists only when the project is built with CUDA and
// a GPU is present; otherwise this throws with a message saying which.
Backend& backend(Device d);
bool cuda_built();       // compiled with CUDA support
bool cuda_available();   // compiled with CUDA and at least one GPU is visible
int cuda_device_count();

// Deterministic mode (train.deterministic; --deterministic of eval and bench): where a kernel would
// add in an order that varies from run to run — the CUDA float atomics of index_add (embedding
// gradients) and of attention's dQ — it sums in a fixed order instead, so a run repeats bit for
// bit. The CPU kernels are always deterministic. Process-wide, off by default.
void set_deterministic(bool on);
bool deterministic();

// Thrown by alloc when memory is exhausted; the message names the device and the sizes.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace ttt
