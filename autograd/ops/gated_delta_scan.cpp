// autograd/ops/gated_delta_scan.cpp — the gated delta rule of Gated DeltaNet as one tape node over
// the fused kernels of kernels/gated_delta.h, with the layer's chunked WY form as its twin.
//
//   per batch b, head h (state M = Sᵀ ∈ R^{d_k×d_v}, a_t = e^{g_t}):
//   M_t = a_t (I − β_t k_t k_tᵀ) M_{t−1} + β_t k_t v_tᵀ,   o_t = M_tᵀ q_t,   M_{−1} = M0 (or 0)
//   (with erase = false: M_t = a_t M_{t−1} + β_t k_t v_tᵀ, the gated linear recurrence of Mamba 2's SSD)
//   q, k [B, T, G, d_k] (G dividing H: head h reads q/k head h / (H / G)), v [B, T, H, d_v],
//   g, beta [B, T, H], M0 [B, H, d_k, d_v] -> {o [B, T, H, d_v], M_T}
//
// Paths
// - forward: GatedDeltaForward when `fused` and gated_delta_unsupported(device, shape) is empty (the
//   CPU reference for float32/float64; CUDA for float32); otherwise the composite twin (written with
//   differentiable ops by the caller, layers/delta_rule.cpp), taped op by op.
// - backward, ordinary (grad mode off): GatedDeltaBackward from the saved contiguous inputs (it
//   recomputes the states it needs).
// - backward with create_graph: the composite twin is re-run from the saved inputs and
//   differentiated (recompute_gradients), so gradients of gradients are exact.
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/gated_delta.h"

namespace ttt {

namespace {

constexpr const char* kOp = "gated_delta_scan";
constexpr size_t kInputs = 6;  // q, k, v, g, beta, M0

GatedDeltaShape shape_of(const Tensor& q, const Tensor& v, int64_t chunk, bool erase, DeltaForm form) {
  GatedDeltaShape s;
  s.erase = erase;
  s.chunked = form != DeltaForm::walk;
  s.tensor_cores = form == DeltaForm::chunked_tc;
  s.batch = q.shape()[0];
  s.len = q.shape()[1];
  s.heads = v.shape()[2];
  s.qk_heads = q.shape()[2];
  s.dk = q.shape()[3];
  s.dv = v.shape()[3];
  s.chunk = chunk;
  s.dtype = q.dtype();
  return s;
}

void check_inputs(const tensor_list& in, int64_t chunk) {
  static const char* names[] = {"q", "k", "v", "g", "beta"};
  for (size_t i = 0; i < 5; ++i)
    if (!in[i].defined()) throw std::invalid_argument(std::string(kOp) + ": input " + names[i] + " is undefined");
  const Tensor &q = in[0], &v = in[2], &M0 = in[5];
  if (q.dim() != 4 || v.dim() != 4)
    throw std::invalid_argument(std::string(kOp) + ": q, k must be [B, T, G, d_k] and v [B, T, H, d_v], got " +
                                q.shape().str() + ", " + v.shape().str());
  const int64_t B = q.shape()[0], T = q.shape()[1], G = q.shape()[2], dk = q.shape()[3], H = v.shape()[2];
  const int64_t dv = v.shape()[3];
  const bool ok = in[1].shape() == q.shape() && v.shape() == Shape{B, T, H, dv} && G > 0 && H % G == 0 &&
                  in[3].shape() == Shape{B, T, H} && in[4].shape() == Shape{B, T, H} &&
                  (!M0.defined() || M0.shape() == Shape{B, H, dk, dv});
  if (!ok)
    throw std::invalid_argument(std::string(kOp) + ": shapes do not fit: q " + q.shape().str() + ", k " +
                                in[1].shape().str() + ", v " + v.shape().str() + ", g " + in[3].shape().str() +
                                ", beta " + in[4].shape().str() + (M0.defined() ? ", M0 " + M0.shape().str() : ""));
  for (const Tensor& t : in)
    if (t.defined() && (t.dtype() != q.dtype() || t.device() != q.device()))
      throw std::invalid_argument(std::string(kOp) + ": every input must have q's dtype and device (" + q.str() + ")");
  kc::check_floating(q, kOp);
  if (chunk <= 0) throw std::invalid_argument(std::string(kOp) + ": chunk must be > 0, got " + std::to_string(chunk));
}

// Uninitialized bytes on `d` (a float32 tensor; undefined when 0).
Tensor bytes_on(size_t bytes, Device d) {
  return bytes ? empty({static_cast<int64_t>((bytes + 3) / 4)}, opts(DType::f32, d)) : Tensor();
}
void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The fused backward on the contiguous inputs the forward used.
tensor_list fused_backward(const BackwardCtx& c, const tensor_list& in, const tensor_list& g,
                           const GatedDeltaShape& s) {
  NoGradGuard ng;
  const Tensor d_o = g[0].defined() ? kc::contiguous(g[0]) : Tensor();
  const Tensor dM = g[1].defined() ? kc::contiguous(g[1]) : Tensor();
  tensor_list out;
  for (const Tensor& t : in) out.push_back(t.defined() ? empty(t.shape(), opts(t.dtype(), t.device())) : Tensor());
  GatedDeltaBackward k;
  k.s = s;
  k.q = in[0].data_ptr(), k.k = in[1].data_ptr(), k.v = in[2].data_ptr(), k.g = in[3].data_ptr();
  k.beta = in[4].data_ptr(), k.M0 = ptr(in[5]);
  k.d_o = ptr(d_o), k.dM_final = ptr(dM);
  k.dq = out[0].data_ptr(), k.dk = out[1].data_ptr(), k.dv = out[2].data_ptr(), k.dg = out[3].data_ptr();
  k.dbeta = out[4].data_ptr(), k.dM0 = ptr(out[5]);
  const Device dev = in[0].device();
  const Tensor ws = bytes_on(k.workspace_bytes(dev), dev);
  k.workspace = ptr(ws);
  backend(dev).run(k);
  for (size_t i = 0; i < out.size(); ++i)
    if (!c.needs(i)) out[i] = Tensor();
  return out;
}

}  // namespace

std::string gated_delta_scan_unsupported(const Tensor& q, const Tensor& v, int64_t chunk, DeltaForm form) {
  if (q.dim() != 4 || v.dim() != 4) return "expected q [B, T, G, d_k] and v [B, T, H, d_v]";
  return gated_delta_unsupported(q.device(), shape_of(q, v, chunk, true, form));
}

tensor_list gated_delta_scan(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                             const Tensor& M0, int64_t chunk, const GatedDeltaComposite& composite, bool fused,
                             bool erase, DeltaForm form) {
  const tensor_list inputs = {q, k, v, g, beta, M0};
  check_inputs(inputs, chunk);
  if (!composite) throw std::invalid_argument(std::string(kOp) + ": a composite twin is required");
  const GatedDeltaShape s = shape_of(q, v, chunk, erase, form);
  if (!fused || s.len == 0 || !gated_delta_unsupported(q.device(), s).empty()) return composite(inputs);
  tensor_list in;
  for (const Tensor& t : inputs) in.push_back(t.defined() ? kc::contiguous(t) : Tensor());
  Tensor o = empty(v.shape(), opts(v.dtype(), v.device()));
  Tensor MT = empty({s.batch, s.heads, s.dk, s.dv}, opts(q.dtype(), q.device()));
  {
    GatedDeltaForward f;
    f.s = s;
    f.q = in[0].data_ptr(), f.k = in[1].data_ptr(), f.v = in[2].data_ptr(), f.g = in[3].data_ptr();
    f.beta = in[4].data_ptr(), f.M0 = ptr(in[5]), f.o = o.data_ptr(), f.M_final = MT.data_ptr();
    const Tensor ws = bytes_on(f.workspace_bytes(q.device()), q.device());
    f.workspace = ptr(ws);
    backend(q.device()).run(f);
  }
  if (needs_grad(inputs)) {
    // The inputs themselves (their history serves create_graph) and their contiguous forms (the
    // same tensors when already contiguous).
    tensor_list saved = inputs;
    saved.insert(saved.end(), in.begin(), in.end());
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, inputs, {o, MT}, saved, [s, composite, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled())
        return fused_backward(c, tensor_list(c.saved.begin() + kInputs, c.saved.end()), g, s);
      const BackwardCtx originals{tensor_list(c.saved.begin(), c.saved.begin() + kInputs), c.needs_input_grad};
      return recompute_gradients(composite, originals, g, amp, amp_dtype);
    });
  }
  return {o, MT};
}

}  // namespace ttt
