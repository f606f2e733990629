// tests/attention_layouts.h — Backend::attention_fwd / _bwd with every operand in a strided layout
// (AttentionLayout), for the CPU and CUDA attention tests: each [B, H, T, D] operand is slot s of
// a [B, T, 3, H, D] buffer (rows 3·H·D apart, heads D apart: a fused QKV projection's q, k or v seen
// as heads), the rest of the buffer NaN. Outputs start as NaN too, so an element a kernel forgets
// to write, or one written outside its rows, shows.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "autograd/ops.h"
#include "autograd/tensor.h"
#include "kernels/backend.h"

namespace ttt::testing {

struct StridedOperand {
  Tensor buffer;  // [B, T, 3, H, D]
  Tensor view;    // [B, H, T, D] into slot `slot`
  int slot = 0;
  AttentionLayout layout() const { return {view.strides()[0], view.strides()[1], view.strides()[2]}; }
};

// A NaN buffer with x's values (when defined) in slot `slot`.
inline StridedOperand strided_operand(const Shape& bhtd, int slot, DType dt, Device dev, const Tensor& x = Tensor()) {
  const int64_t B = bhtd[0], H = bhtd[1], T = bhtd[2], D = bhtd[3];
  StridedOperand o;
  o.slot = slot;
  o.buffer = full({B, T, 3, H, D}, NAN, opts(dt, dev));
  o.view = make_view(o.buffer, bhtd, {T * 3 * H * D, D, 3 * H * D, 1}, slot * H * D);
  if (x.defined()) o.view.copy_(x.to(dev).to(dt));
  return o;
}

// Every element of the buffer outside the view is still NaN.
inline void check_untouched(const StridedOperand& o, const std::string& what) {
  const Tensor b = o.buffer.to(cpu()).to(DType::f64);
  const int64_t B = b.shape()[0], T = b.shape()[1], H = b.shape()[3], D = b.shape()[4];
  const std::vector<double> v = b.tolist<double>();
  int64_t touched = 0;
  for (int64_t e = 0; e < static_cast<int64_t>(v.size()); ++e) {
    const int64_t slot = (e / (H * D)) % 3;
    if (slot != o.slot && !std::isnan(v[e])) ++touched;
  }
  INFO(what, ": elements written outside the operand's rows (B ", B, ", T ", T, ")");
  CHECK(touched == 0);
}

struct LayoutResult {
  Tensor out, lse, dq, dk, dv;  // contiguous copies of the strided outputs
};

// Forward and backward through `be` with q, k, v, dout and out, dq, dk, dv all strided.
inline LayoutResult run_strided(Backend& be, Device dev, const Tensor& q0, const Tensor& k0, const Tensor& v0,
                                const Tensor& dout0, AttentionShape s, DType dt) {
  StridedOperand q = strided_operand(q0.shape(), 0, dt, dev, q0), k = strided_operand(k0.shape(), 1, dt, dev, k0);
  StridedOperand v = strided_operand(v0.shape(), 2, dt, dev, v0), dout = strided_operand(dout0.shape(), 1, dt, dev, dout0);
  StridedOperand out = strided_operand(q0.shape(), 2, dt, dev), dq = strided_operand(q0.shape(), 1, dt, dev);
  StridedOperand dk = strided_operand(k0.shape(), 0, dt, dev), dv = strided_operand(v0.shape(), 1, dt, dev);
  s.q = q.layout(), s.k = k.layout(), s.v = v.layout(), s.dout = dout.layout(), s.out = out.layout();
  s.dq = dq.layout(), s.dk = dk.layout(), s.dv = dv.layout();
  LayoutResult r;
  r.lse = full({s.batch, s.heads, s.q_len}, NAN, opts(DType::f32, dev));
  be.attention_fwd(out.view.data_ptr(), r.lse.data<float>(), q.view.data_ptr(), k.view.data_ptr(), v.view.data_ptr(),
                   s, dt);
  be.attention_bwd(dq.view.data_ptr(), dk.view.data_ptr(), dv.view.data_ptr(), dout.view.data_ptr(),
                   q.view.data_ptr(), k.view.data_ptr(), v.view.data_ptr(), out.view.data_ptr(), r.lse.data<float>(),
                   s, dt);
  be.synchronize();
  check_untouched(out, "out");
  check_untouched(dq, "dq");
  check_untouched(dk, "dk");
  check_untouched(dv, "dv");
  r.out = out.view.contiguous(), r.dq = dq.view.contiguous(), r.dk = dk.view.contiguous(), r.dv = dv.view.contiguous();
  return r;
}

}  // namespace ttt::testing
