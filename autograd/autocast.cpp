// autograd/autocast.cpp
#include "autograd/autocast.h"

#include <stdexcept>

namespace ttt {

namespace {
thread_local bool g_enabled = false;
thread_local DType g_dtype = DType::bf16;
}  // namespace

bool Autocast::enabled() { return g_enabled; }
DType Autocast::dtype() { return g_dtype; }

AutocastGuard::AutocastGuard(DType operand_dtype, bool enabled) : prev_enabled_(g_enabled), prev_dtype_(g_dtype) {
  if (enabled && operand_dtype != DType::bf16 && operand_dtype != DType::f32)
    throw std::invalid_argument(std::string("autocast: operand dtype must be bfloat16 or float32, got ") +
                                dtype_name(operand_dtype));
  g_enabled = enabled && operand_dtype != DType::f32;
  g_dtype = operand_dtype;
}

AutocastGuard::~AutocastGuard() {
  g_enabled = prev_enabled_;
  g_dtype = prev_dtype_;
}

}  // namespace ttt
