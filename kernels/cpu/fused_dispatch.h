// kernels/cpu/fused_dispatch.h — the device dispatch that every fused call's run() shares
// (kernels/fused_call.h): the CPU reference on the CPU, the CUDA implementation on a GPU, and a
// clear error naming the call when the project was built without CUDA. The CUDA side is passed as
// a generic lambda, so a build without CUDA never instantiates it and never needs the cuda_impl
// function it names.
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/backend.h"

namespace ttt::cpu_impl {

template <class Call, class CpuFn, class CudaFn>
void dispatch_fused(Backend& be, Call& call, CpuFn&& on_cpu, CudaFn&& on_cuda) {
  if (be.device().is_cpu()) return on_cpu(call);
#if TTT_WITH_CUDA
  on_cuda(be, call);
#else
  (void)on_cuda;
  throw std::runtime_error(std::string(call.name()) + ": ttt was built without CUDA");
#endif
}

}  // namespace ttt::cpu_impl
