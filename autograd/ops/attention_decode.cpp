// autograd/ops/attention_decode.cpp — one decoded token of attention against a KV cache as one call
// (kernels/attention_decode.h has the math). Not taped: decoding only (the cache is written in place).
//
//   out = attention_decode_step(q, k, v, K, V, counters, window, scale, theta)
//   q, k, v [B, 1, H, D] (q, k before RoPE; cast to the cache's dtype where they differ), K, V the
//   cache [B, H, capacity, D] (contiguous), counters int64 [2] on the same device: the token's position
//   and the cache's length, both advanced by one. Returns out [B, 1, H, D].
#include <stdexcept>
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/attention_decode.h"

namespace ttt {

namespace {

const char* kOp = "attention_decode_step";

TokenHeads token_heads(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[2]}; }

}  // namespace

std::string attention_decode_step_unsupported(Device device, int64_t head_dim, DType dtype) {
  AttentionDecodeShape s;
  s.head_dim = head_dim;
  s.capacity = 1;
  s.dtype = dtype;
  return attention_decode_unsupported(device, s);
}

Tensor attention_decode_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& k_cache,
                             const Tensor& v_cache, const Tensor& counters, int64_t window, double scale, double theta) {
  for (const Tensor* t : {&q, &k, &v, &k_cache, &v_cache, &counters}) check_defined(kOp, *t);
  for (const Tensor* t : {&k, &v, &k_cache, &v_cache, &counters}) check_same_device(kOp, q, *t);
  const auto bad = [&](const std::string& what) {
    throw std::invalid_argument(std::string(kOp) + ": " + what + " (q " + q.shape().str() + ", cache " +
                                k_cache.shape().str() + ", counters " + counters.str() + ")");
  };
  if (q.dim() != 4 || q.shape()[1] != 1 || k.shape() != q.shape() || v.shape() != q.shape())
    bad("expected q, k, v [B, 1, H, D]: one token");
  const int64_t B = q.shape()[0], H = q.shape()[2], D = q.shape()[3];
  if (k_cache.dim() != 4 || k_cache.shape()[0] != B || k_cache.shape()[1] != H || k_cache.shape()[3] != D ||
      v_cache.shape() != k_cache.shape())
    bad("expected caches [B, H, capacity, D]");
  if (!k_cache.is_contiguous() || !v_cache.is_contiguous()) bad("the caches must be contiguous");
  check_same_dtype(kOp, k_cache, v_cache);
  if (counters.dtype() != DType::i64 || counters.numel() != 2 || !counters.is_contiguous())
    bad("expected counters int64 [2] (position, length)");
  if (GradMode::is_enabled() && needs_grad({&q, &k, &v, &k_cache, &v_cache}))
    throw std::invalid_argument(std::string(kOp) + ": decoding only; it is not differentiable");
  NoGradGuard ng;
  AttentionDecodeStep c;
  c.s.batch = B, c.s.heads = H, c.s.head_dim = D, c.s.capacity = k_cache.shape()[2];
  c.s.window = window, c.s.scale = scale, c.s.theta = theta, c.s.dtype = k_cache.dtype();
  const std::string why = attention_decode_unsupported(q.device(), c.s);
  if (!why.empty()) throw std::invalid_argument(std::string(kOp) + ": no kernel on " + q.device().str() + ": " + why);
  const auto operand = [&](const Tensor& t) {
    const Tensor x = t.dtype() == c.s.dtype ? t : to_dtype(t, c.s.dtype);
    return x.strides()[3] == 1 ? x : kc::contiguous(x);
  };
  const Tensor qc = operand(q), kc_ = operand(k), vc = operand(v);
  Tensor out = empty({B, 1, H, D}, opts(c.s.dtype, q.device()));
  Tensor ws = empty({static_cast<int64_t>(c.workspace_bytes() / sizeof(float))}, opts(DType::f32, q.device()));
  c.q = token_heads(qc), c.k = token_heads(kc_), c.v = token_heads(vc), c.out = token_heads(out);
  c.k_cache = k_cache.data_ptr(), c.v_cache = v_cache.data_ptr();
  c.counters = static_cast<int64_t*>(counters.data_ptr());
  c.workspace = ws.data_ptr();
  if (B * H) backend(q.device()).run(c);
  return out;
}

}  // namespace ttt
