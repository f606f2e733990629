// autograd/cuda_graph.cpp — see cuda_graph.h.
#include "autograd/cuda_graph.h"

#include <utility>

namespace ttt {

namespace {
// The tensors the capture under way on this thread must keep alive (null when none is).
thread_local tensor_list* g_keep = nullptr;
}  // namespace

CapturedGraph::CapturedGraph(Device device, int64_t id, tensor_list keep)
    : device_(device), id_(id), keep_(std::move(keep)) {}

CapturedGraph::~CapturedGraph() { backend(device_).graph_release(id_); }

void CapturedGraph::replay() const { backend(device_).graph_replay(id_); }

bool graphs_supported(Device d) { return !d.is_cpu() && backend(d).graphs_supported(); }

void keep_alive_while_captured(const Tensor& t) {
  if (g_keep && t.defined()) g_keep->push_back(t);
}

std::unique_ptr<CapturedGraph> capture_graph(Device d, const std::function<void()>& fn) {
  if (g_keep) throw GraphCaptureError("capture_graph: a capture is already under way on this thread");
  Backend& be = backend(d);
  tensor_list keep;
  const int64_t id = be.graph_begin_capture();
  g_keep = &keep;
  try {
    fn();
  } catch (...) {
    g_keep = nullptr;
    be.graph_abort_capture(id);
    throw;
  }
  g_keep = nullptr;
  be.graph_end_capture(id);  // on failure it has released the graph
  return std::make_unique<CapturedGraph>(d, id, std::move(keep));
}

}  // namespace ttt
