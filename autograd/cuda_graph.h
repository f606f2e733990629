// autograd/cuda_graph.h — recording tensor code into a CUDA graph and replaying it (the backend's
// graph calls, kernels/backend.h). capture_graph(fn) runs fn's host side once — shapes, dispatch,
// allocation — while the device work it enqueues is recorded; replay() runs that device work again
// on whatever the recorded memory then holds. So a caller replays only what would compute the same
// way: the same shapes and control flow, inputs copied into the buffers the capture read, outputs
// read from the tensors it made (those are rewritten by every replay).
//
// Memory. What fn allocates comes from a pool private to the graph (nothing else is ever handed
// those blocks, so replays write no one else's memory). What fn reads that was made before the
// capture must stay alive as long as the graph: the caller holds its inputs; caches that hand fn a
// tensor they made earlier (autocast's weight casts, RoPE tables) call keep_alive_while_captured(),
// and the graph holds what they handed out. Host values fn uploads are constants of the graph.
//
// While capturing, anything that waits for the device (tolist, item, copy to the host) throws
// GraphCaptureError; capture_graph then ends the capture, keeps nothing, and rethrows — the caller
// falls back to running fn for real (its host-side effects must be undone first: it has made
// tensors whose values were never computed).
#pragma once

#include <functional>
#include <memory>

#include "autograd/tensor.h"
#include "kernels/backend.h"

namespace ttt {

class CapturedGraph {
 public:
  CapturedGraph(Device device, int64_t id, tensor_list keep);
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  void replay() const;  // enqueues the recorded work on the device's stream

 private:
  Device device_;
  int64_t id_;
  tensor_list keep_;  // made before the capture, read by it (see keep_alive_while_captured)
};

// Whether device d's backend can record graphs (CUDA, profiler off).
bool graphs_supported(Device d);
// Records fn's device work on d into a graph (see the file comment).
std::unique_ptr<CapturedGraph> capture_graph(Device d, const std::function<void()>& fn);
// Called by caches that hand out a tensor made earlier: while a capture is under way on this
// thread, the graph keeps t alive. A no-op otherwise.
void keep_alive_while_captured(const Tensor& t);

}  // namespace ttt
