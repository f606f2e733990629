// autograd/ops/selective_scan.cpp — Mamba-1's selective scan as one tape node over the fused kernels
// of kernels/selective_scan.h, with the layer's composite scan as its twin.
//
//   Δ_t = softplus(δ_t + bias),  h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t u_t B_tᵀ,  y_t = h_t C_t + D ⊙ u_t
//   u, δ [B, T, D], A [D, N], Bm, Cm [B, T, N], D, bias [D] -> y [B, T, D]     (h_{−1} = 0)
//   Forward only (decoding, prefill): from h0 [B, D, N] and/or returning h_T.
//
// Paths
// - forward: SelectiveScanForward when `fused` and selective_scan_unsupported(device, shape) is empty
//   (the CPU reference for float32/float64; CUDA for float32, state 16); otherwise the composite
//   twin (written with differentiable ops by the caller, layers/mamba.cpp), taped op by op.
// - backward, ordinary (grad mode off): SelectiveScanBackward, from the saved contiguous inputs and
//   the forward's chunk states (CUDA; nothing on the CPU).
// - backward with create_graph: the composite twin is re-run from the saved inputs and
//   differentiated (recompute_gradients), so gradients of gradients are exact.
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/selective_scan.h"

namespace ttt {

namespace {

constexpr const char* kOp = "mamba_selective_scan";

SelectiveScanShape shape_of(const Tensor& u, const Tensor& A) {
  SelectiveScanShape s;
  s.batch = u.shape()[0];
  s.len = u.shape()[1];
  s.channels = u.shape()[2];
  s.state = A.shape()[1];
  s.dtype = u.dtype();
  return s;
}

void check_inputs(const tensor_list& in) {
  static const char* names[] = {"u", "delta", "A", "B", "C", "D", "bias"};
  for (size_t i = 0; i < in.size(); ++i)
    if (!in[i].defined()) throw std::invalid_argument(std::string(kOp) + ": input " + names[i] + " is undefined");
  const Tensor &u = in[0], &A = in[2];
  if (u.dim() != 3 || A.dim() != 2)
    throw std::invalid_argument(std::string(kOp) + ": u must be [B, T, D] and A [D, N], got " + u.shape().str() +
                                ", " + A.shape().str());
  const int64_t Bz = u.shape()[0], T = u.shape()[1], D = u.shape()[2], N = A.shape()[1];
  const bool ok = in[1].shape() == u.shape() && A.shape()[0] == D && in[3].shape() == Shape{Bz, T, N} &&
                  in[4].shape() == Shape{Bz, T, N} && in[5].shape() == Shape{D} && in[6].shape() == Shape{D};
  if (!ok)
    throw std::invalid_argument(std::string(kOp) + ": shapes do not fit: u " + u.shape().str() + ", delta " +
                                in[1].shape().str() + ", A " + A.shape().str() + ", B " + in[3].shape().str() + ", C " +
                                in[4].shape().str() + ", D " + in[5].shape().str() + ", bias " + in[6].shape().str());
  for (const Tensor& t : in)
    if (t.dtype() != u.dtype() || t.device() != u.device())
      throw std::invalid_argument(std::string(kOp) + ": every input must have u's dtype and device (" + u.str() + ")");
  kc::check_floating(u, kOp);
}

// Uninitialized bytes on `d` (a float32 tensor; undefined when 0).
Tensor bytes_on(size_t bytes, Device d) {
  return bytes ? empty({static_cast<int64_t>((bytes + 3) / 4)}, opts(DType::f32, d)) : Tensor();
}
void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The fused backward on the contiguous inputs the forward used (in[0..6]) and its states.
tensor_list fused_backward(const BackwardCtx& c, const tensor_list& in, const Tensor& states, const Tensor& dy0,
                           const SelectiveScanShape& s) {
  NoGradGuard ng;
  const Tensor dy = kc::contiguous(dy0);
  tensor_list out;
  for (const Tensor& t : in) out.push_back(empty(t.shape(), opts(t.dtype(), t.device())));
  SelectiveScanBackward k;
  k.s = s;
  k.u = in[0].data_ptr(), k.delta = in[1].data_ptr(), k.A = in[2].data_ptr(), k.B = in[3].data_ptr();
  k.C = in[4].data_ptr(), k.D = in[5].data_ptr(), k.bias = in[6].data_ptr(), k.dy = dy.data_ptr();
  k.states = ptr(states);
  k.du = out[0].data_ptr(), k.ddelta = out[1].data_ptr(), k.dA = out[2].data_ptr(), k.dB = out[3].data_ptr();
  k.dC = out[4].data_ptr(), k.dD = out[5].data_ptr(), k.dbias = out[6].data_ptr();
  const Tensor ws = bytes_on(k.workspace_bytes(dy.device()), dy.device());
  k.workspace = ptr(ws);
  backend(dy.device()).run(k);
  for (size_t i = 0; i < out.size(); ++i)
    if (!c.needs(i)) out[i] = Tensor();
  return out;
}

// The forward-only state path (decoding, prefill): h0 [B, D, N] of u's dtype and device, nothing
// requiring grad, the fused kernels available.
void check_state(const Tensor& u, const Tensor& A, const Tensor& h0, bool grad, bool kernels) {
  const Shape want{u.shape()[0], u.shape()[2], A.shape()[1]};
  if (h0.defined() && (h0.shape() != want || h0.dtype() != u.dtype() || h0.device() != u.device()))
    throw std::invalid_argument(std::string(kOp) + ": h0 must be [B, D, N] = " + want.str() +
                                " of u's dtype and device, got " + h0.str());
  if (grad)
    throw std::invalid_argument(std::string(kOp) + ": an initial or final state is forward-only (decoding); no input "
                                "may require grad");
  if (!kernels)
    throw std::invalid_argument(std::string(kOp) + ": an initial or final state needs the fused kernels (" +
                                selective_scan_unsupported(u.device(), shape_of(u, A)) + ")");
}

}  // namespace

std::string mamba_selective_scan_unsupported(const Tensor& u, const Tensor& A) {
  if (u.dim() != 3 || A.dim() != 2) return "expected u [B, T, D] and A [D, N]";
  return selective_scan_unsupported(u.device(), shape_of(u, A));
}

Tensor mamba_selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                            const Tensor& D, const Tensor& bias, const SelectiveScanComposite& composite, bool fused,
                            const Tensor& h0, Tensor* h_final) {
  const tensor_list inputs = {u, delta, A, Bm, Cm, D, bias};
  check_inputs(inputs);
  if (!composite) throw std::invalid_argument(std::string(kOp) + ": a composite twin is required");
  const SelectiveScanShape s = shape_of(u, A);
  const bool with_state = h0.defined() || h_final;
  if (with_state)
    check_state(u, A, h0, needs_grad(tensor_list{u, delta, A, Bm, Cm, D, bias, h0}),
                fused && selective_scan_unsupported(u.device(), s).empty());
  else if (!fused || s.len == 0 || !selective_scan_unsupported(u.device(), s).empty()) return composite(inputs);
  tensor_list in;
  for (const Tensor& t : inputs) in.push_back(kc::contiguous(t));
  const bool grad = needs_grad(inputs);
  Tensor y = empty(u.shape(), opts(u.dtype(), u.device()));
  Tensor states, h0c = h0.defined() ? kc::contiguous(h0) : Tensor();
  if (h_final) *h_final = empty({s.batch, s.channels, s.state}, opts(u.dtype(), u.device()));
  {
    SelectiveScanForward k;
    k.s = s;
    k.u = in[0].data_ptr(), k.delta = in[1].data_ptr(), k.A = in[2].data_ptr(), k.B = in[3].data_ptr();
    k.C = in[4].data_ptr(), k.D = in[5].data_ptr(), k.bias = in[6].data_ptr(), k.y = y.data_ptr();
    if (grad) states = bytes_on(k.states_bytes(u.device()), u.device());
    k.states = ptr(states);
    k.h0 = ptr(h0c);
    k.h_final = h_final ? h_final->data_ptr() : nullptr;
    backend(u.device()).run(k);
  }
  if (grad) {
    // The inputs themselves (their history serves create_graph), their contiguous forms (the same
    // tensors when already contiguous) and the states.
    tensor_list saved = inputs;
    saved.insert(saved.end(), in.begin(), in.end());
    saved.push_back(states);
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, inputs, {y}, saved, [s, composite, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled())
        return fused_backward(c, tensor_list(c.saved.begin() + 7, c.saved.begin() + 14), c.saved[14], g[0], s);
      const CheckpointFn fn = [composite](const tensor_list& x) { return tensor_list{composite(x)}; };
      const BackwardCtx originals{tensor_list(c.saved.begin(), c.saved.begin() + 7), c.needs_input_grad};
      return recompute_gradients(fn, originals, g, amp, amp_dtype);
    });
  }
  return y;
}

}  // namespace ttt
