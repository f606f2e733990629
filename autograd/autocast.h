// autograd/autocast.h — mixed precision for matrix products (the bf16 recipe of the trainer).
//
// Inside an AutocastGuard(DType::bf16) scope, matmul of float32 operands casts them to bfloat16,
// multiplies on bf16 inputs with float32 accumulation, and returns float32. Everything else
// (norms, softmax, losses, the TTT inner-loop state and its updates) stays float32, and so do the
// master weights and optimizer moments. The matmul's backward uses the same bf16-operand GEMMs
// (the choice is recorded at forward time, so backward() may run outside the scope); with
// create_graph it uses float32 products of the values the forward multiplied (the bf16 casts,
// upcast; float32 parameters as they are), so higher derivatives stay consistent without keeping
// float32 copies of activations alive (autograd/ops/matmul.cpp).
//
// Cast reuse: the operand casts of an autocast product are made by cached_cast(), which hands
// back the cast made for the same data (same storage, offset, shape, strides and version) by one
// of the last few calls, e.g. the normalized input that the q, k and v projections (or SwiGLU's
// w1 and w3) all multiply, so it is cast once and stored once for backward. The cache holds a
// few entries, lives in the thread's autocast state and is dropped when the outermost autocast
// scope ends. Casts of parameters (leaves that require grad) are also kept across scopes until the
// parameter changes (its version: the optimizer bumps it) or is freed, so a decoder casts each
// weight once rather than once per token, and a training step once rather than once per use
// (micro-batches, recomputed checkpoints, TTT-E2E's chunks).
#pragma once

#include "autograd/tensor.h"
#include "kernels/dtype.h"

namespace ttt {

struct Autocast {
  static bool enabled();
  static DType dtype();  // the GEMM operand dtype while enabled (bf16)
  // x (not taped) as dtype d: x itself when it has that dtype, else a fresh copy (with x's strides
  // when x is a dense permuted layout such as a transposed weight, contiguous otherwise), or,
  // inside an enabled scope, the copy a recent call made of the same data.
  static Tensor cached_cast(const Tensor& x, DType d);
  // Inside an enabled scope: records `cast` (x's values in cast's dtype, made by the kernel that
  // made x) as the cast of x, which the next cached_cast(x, cast.dtype()) then hands back instead
  // of casting (add_rms_norm writes its output's bf16 copy when a prompt's products will read it).
  static void remember_cast(const Tensor& x, const Tensor& cast);
  // Whether a cast of (a view of) parameter p to dtype d is kept: a product cast p at its current
  // version. The optimizer then has its update write p's next cast (trainer/optimizer.cpp).
  static bool weight_cast_kept(const Tensor& p, DType d);
  // After the update of parameter p (contiguous) bumped its version: `cast` holds p's new values
  // in cast's dtype, contiguous, p's shape (written by the optimizer's kernel). Every kept cast
  // of a view of p becomes the same view of `cast` at p's new version, so the next products read
  // it instead of casting p again.
  static void refresh_weight_casts(const Tensor& p, const Tensor& cast);
  // Whether a bf16 autocast scope is on and x is float32: an activation made from x that only
  // products read may then be written as bf16 (model.bf16_activations, model.ttt.bf16_io).
  static bool bf16_for(const Tensor& x);
  // Whether products recorded now also keep their float32 operands (KeepFloat32Operands).
  static bool keep_float32_operands();
  // Whether products recorded now differentiate as autocast products under create_graph
  // (AutocastCreateGraph), rather than as exact float32 products.
  static bool create_graph_at_autocast();
};

// While alive, autocast products (matmul, attention) recorded on this thread save their float32
// operands beside the bf16 casts, as a forward whose backward certainly runs with create_graph
// wants (TTT-E2E's inner step): the taped backward then multiplies those, exactly and without
// upcasting the casts (fewer copies). Elsewhere products save only the casts (memory).
class KeepFloat32Operands {
 public:
  KeepFloat32Operands();
  ~KeepFloat32Operands();
  KeepFloat32Operands(const KeepFloat32Operands&) = delete;
  KeepFloat32Operands& operator=(const KeepFloat32Operands&) = delete;

 private:
  bool prev_;
};

// While alive, autocast products (matmul, attention) recorded on this thread differentiate, when
// their backward runs with create_graph, as autocast products too: bf16 operands, float32
// accumulation and output (the forward's precision, as JAX and PyTorch differentiate a bf16
// product), instead of exact float32 products. For second-order training under bf16 (TTT-E2E's
// inner step, model.e2e.second_order = autocast): the taped backward's GEMMs run on the tensor
// cores, and no float32 operand needs keeping for it. The choice is recorded per product at
// forward time; the taped backward's own products are recorded in the same mode.
class AutocastCreateGraph {
 public:
  AutocastCreateGraph();
  ~AutocastCreateGraph();
  AutocastCreateGraph(const AutocastCreateGraph&) = delete;
  AutocastCreateGraph& operator=(const AutocastCreateGraph&) = delete;

 private:
  bool prev_;
};

class AutocastGuard {
 public:
  explicit AutocastGuard(DType operand_dtype = DType::bf16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

}  // namespace ttt
