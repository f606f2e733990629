// autograd/autocast.h — mixed precision for matrix products (the bf16 recipe of the trainer).
//
// Inside an AutocastGuard(DType::bf16) scope, matmul of float32 operands casts them to bfloat16,
// multiplies on bf16 inputs with float32 accumulation, and returns float32. Everything else
// (norms, softmax, losses, the TTT inner-loop state and its updates) stays float32, and so do the
// master weights and optimizer moments. The matmul's backward uses the same bf16-operand GEMMs
// (the choice is recorded at forward time, so backward() may run outside the scope); with
// create_graph it falls back to exact float32 products so higher derivatives stay consistent.
#pragma once

#include "kernels/dtype.h"

namespace ttt {

struct Autocast {
  static bool enabled();
  static DType dtype();  // the GEMM operand dtype while enabled (bf16)
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
