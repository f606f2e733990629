// kernels/fused_call.h — how a fused kernel family plugs into the backends without editing them.
//
// A fused op (a TTT scan, ...) is an argument struct deriving from FusedCall. Its header declares
// the CPU implementation (kernels/cpu/<op>.cpp) and, when built with CUDA, the CUDA one
// (kernels/cuda/<op>.cu), and its run() picks one by the backend's device. Backend::run(call)
// forwards to call.run(backend); the profiling backend wraps every run() with its timer, using
// call.name() and call.bytes(). So a new fused op is one header, one CPU file and one CUDA file:
// backend.h, both backend classes and the profiler stay as they are.
#pragma once

namespace ttt {

class Backend;

struct FusedCall {
  virtual ~FusedCall() = default;
  // The kernel name in profiles, e.g. "ttt_linear_scan_fwd".
  virtual const char* name() const = 0;
  // Bytes the call must move (each input read once, each output written once), for the profile.
  virtual double bytes() const { return 0; }
  // Runs the call on `be` (dispatches on be.device()).
  virtual void run(Backend& be) = 0;
};

}  // namespace ttt
