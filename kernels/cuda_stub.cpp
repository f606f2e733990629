// kernels/cuda_stub.cpp — linked instead of kernels/cuda/ when the project is built without CUDA.
#include "kernels/backend.h"

namespace ttt {
Backend* cuda_backend_instance(int) { return nullptr; }
int cuda_device_count_impl() { return 0; }
bool cuda_built_impl() { return false; }
}  // namespace ttt
