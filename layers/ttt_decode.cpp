// layers/ttt_decode.cpp — the TTT layer's decoding (layers/ttt_layer.h): its state (TTTState), step()
// over a prompt or a chunk through the fused scan or the composite forms, a generated token as one
// decode kernel, and step_begin(), the step split around its scan for a wavefront prefill
// (layers/language_model.cpp). The forward and the pieces both share are in ttt_layer.cpp.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/linear.h"
#include "layers/ttt_layer.h"
#include "layers/ttt_layer_internal.h"

namespace ttt {

using ttt_layer_detail::cast;
using ttt_layer_detail::require;

// Prefill (TTT-Linear): the fused scan over tokens that start a mini-batch — from W0 (a fresh state: the
// forward's call) or from the state's own W, b per sequence (a later chunk) — leaving the state
// step() continues from: W, b after the last complete mini-batch ([B, nh, f, f], [B, nh, 1, f] as
// initial_state() lays them out) and, when the tokens end inside a mini-batch, its accumulators
// Σ lr_j ∇ℓ_j (Note [Accumulators]), which the primal form resumes from; none (undefined = zero)
// at a boundary. No backward will replay the scan, so it stores one state per layer instead of
// one every checkpoint_group mini-batches (at batch 16 × 32k tokens: 1.6 GB per layer, for nothing).
// TTT-MLP (whose scan takes no per-sequence state) prefills this way from W0 only, leaving W1, b1,
// W2, b2 and their accumulators for the composite primal steps that follow (no pending inputs).
Tensor TTTMixer::prefill_fused(const ScanInputs& in, ScanState& st, bool from_w0) {
  const int64_t T = in.XQ.shape()[2];
  return prefill_commit(in, st, fused_scan(prefill_inputs(in, st, from_w0), (T + c_.mini_batch - 1) / c_.mini_batch));
}

// prefill_fused's scan inputs (fused_inputs' order): the initial state W0 or the state's W, b.
tensor_list TTTMixer::prefill_inputs(const ScanInputs& in, const ScanState& st, bool from_w0) const {
  if (inner_->kind() == "mlp" && !from_w0) throw std::logic_error("TTT-MLP prefill: the fused scan starts from W0 only");
  tensor_list x = fused_inputs(in);
  if (!from_w0) {
    x[5] = st.W[0];
    x[6] = st.W[1].defined() ? reshape(st.W[1], {in.XQ.shape()[0], nh_, f_}) : Tensor();
  }
  return x;
}

// After prefill_fused's scan (its outputs r): the state it leaves; returns the heads' outputs.
Tensor TTTMixer::prefill_commit(const ScanInputs& in, ScanState& st, const tensor_list& r) {
  const int64_t B = in.XQ.shape()[0], T = in.XQ.shape()[2];
  const bool mlp = inner_->kind() == "mlp";
  const size_t nw = mlp ? 4 : 2;
  // The scan's [B, H, c] biases as the state's [B, H, 1, c] rows (undefined without inner biases).
  const tensor_list W0 = inner_->initial();
  const auto state_of = [&](size_t first) {
    tensor_list w(nw);
    for (size_t k = 0; k < nw; ++k) {
      const Tensor& t = r[first + k];
      const bool bias = k % 2 == 1;
      w[k] = !bias ? t : W0[k].defined() ? reshape(t, {B, nh_, 1, t.shape().back()}) : Tensor();
    }
    return w;
  };
  st.index = T % c_.mini_batch;
  st.W = state_of(1);
  st.acc = st.index > 0 ? state_of(1 + nw) : tensor_list(nw);
  // The partial mini-batch's inputs (TTT-Linear's next chunk scans them again), copied when they are
  // part of a longer call's (a view would keep the whole prompt's tensors alive).
  const int64_t n = mlp ? 0 : st.index;
  const auto tail = [&](const Tensor& t) { return n == T ? t : narrow(t, 2, T - n, n).clone(); };
  st.pending = n > 0 ? ScanInputs{tail(in.XQ), tail(in.XK), tail(in.XV), tail(in.lr)} : ScanInputs{};
  return r[0];
}

void TTTState::graph_key(std::vector<int64_t>& key) const {
  key.insert(key.end(), {scan.index, position < mini_batch ? position : -1, static_cast<int64_t>(scan.W.size()),
                         static_cast<int64_t>(scan.acc.size())});
}

void TTTState::for_each_tensor(const std::function<void(Tensor&)>& f) {
  for (Tensor& t : scan.W) f(t);
  for (Tensor& t : scan.acc) f(t);
  for (Tensor* t : {&scan.pending.XQ, &scan.pending.XK, &scan.pending.XV, &scan.pending.lr, &q_tail, &k_tail}) f(*t);
}

std::unique_ptr<MixerState> TTTMixer::init_state(int64_t batch) {
  auto st = std::make_unique<TTTState>();
  st->mini_batch = std::max<int64_t>(c_.mini_batch, 0);
  const Tensor& w = q_proj_->weight;
  st->scan.W = initial_state(batch, inner_dtype(w.dtype()));
  if (mamba_) {
    st->q_tail = conv_q_->init_tail(batch, w.dtype(), w.device());
    st->k_tail = conv_k_->init_tail(batch, w.dtype(), w.device());
  }
  return st;
}

Tensor TTTMixer::step(const Tensor& x, MixerState& state) {
  TTTState& st = state_of(state);
  const int64_t pos0 = st.position;
  const ScanInputs in = step_inputs(x, st);
  Tensor out = decode_scan(st.scan, in, pos0);
  st.position += x.shape()[1];
  return finish(x, out, in.gate);
}

// A prompt segment at a mini-batch boundary that the fused scan runs (decode_scan's prefill_fused)
// splits around that scan; anything else is stepped whole.
SplitStep TTTMixer::step_begin(const Tensor& x, MixerState& state) {
  TTTState& st = state_of(state);
  const int64_t pos0 = st.position, T = x.shape()[1];
  const ScanInputs in = step_inputs(x, st);
  SplitStep split;
  if (T < 2 || st.scan.index != 0 || st.scan.pending.XQ.defined() || !fused_chunk(in)) {
    split.output = finish(x, decode_scan(st.scan, in, pos0), in.gate);
    st.position += T;
    return split;
  }
  split.scan_inputs = prefill_inputs(in, st.scan, /*from_w0=*/pos0 == 0);
  split.scan_options = TTTScanOptions{(T + c_.mini_batch - 1) / c_.mini_batch, c_.ln_eps};
  split.finish = [this, x, in, &st](const tensor_list& r) {
    Tensor out = prefill_commit(in, st.scan, r);
    st.position += x.shape()[1];
    return finish(x, out, in.gate);
  };
  return split;
}

TTTState& TTTMixer::state_of(MixerState& state) const {
  auto* st = dynamic_cast<TTTState*>(&state);
  require(st != nullptr, "TTT layer step: the state was not made by this layer's init_state()");
  return *st;
}

// The scan inputs of x continuing after st (its conv tails updated), the state cast to their dtype.
// A prompt (several tokens) runs as the forward does; a single token in float32 throughout
// (Note [bf16 activations]).
ScanInputs TTTMixer::step_inputs(const Tensor& x, TTTState& st) {
  const bool low = x.shape()[1] > 1 && low_precision_io(x);
  ScanInputs in = prepare(x, st.position, mamba_ ? &st.q_tail : nullptr, mamba_ ? &st.k_tail : nullptr, input_params(), low);
  const DType dt = in.lr.dtype();
  for (Tensor& w : st.scan.W) w = cast(w, dt);
  for (Tensor& a : st.scan.acc) a = cast(a, dt);
  return in;
}

// Buffers of K tokens along the time axis holding p's tokens first (the rest unset).
ScanInputs TTTMixer::pending_buffers(const ScanInputs& p, int64_t K) {
  const auto grown = [&](const Tensor& t) {
    Shape s = t.shape();
    s[2] = K;
    Tensor b = empty(s, opts(t.dtype(), t.device()));
    narrow(b, 2, 0, t.shape()[2]).copy_(t);
    return b;
  };
  return {grown(p.XQ), grown(p.XK), grown(p.XV), grown(p.lr)};
}

// One generated token of TTT-Linear or TTT-MLP (grad mode off) is one kernel: the primal form
// continuing from the accumulators of the open mini-batch (which prefill_fused() and the composite
// steps leave), so nothing of the mini-batch's earlier tokens is kept or scanned again.
bool TTTMixer::decode_step_applies(const ScanInputs& in) const {
  if (GradMode::is_enabled() || c_.mini_batch <= 0 || (impl_ != "auto" && impl_ != "fused") ||
      in.XQ.dtype() != in.lr.dtype())
    return false;
  const std::string kind = inner_->kind();
  if (kind == "linear") return ttt_linear_decode_step_unsupported(in.XQ, f_).empty();
  return kind == "mlp" && ttt_mlp_decode_step_unsupported(in.XQ, f_, inner_->initial()[0].shape().back()).empty();
}

Tensor TTTMixer::decode_step(ScanState& st, const ScanInputs& in) {
  const int64_t K = c_.mini_batch, i = st.index;
  const DType dt = in.lr.dtype();
  const InnerNorm n = norm(dt);
  const Tensor tok = narrow(token_scale(0, K, dt), 0, i, 1);
  const bool commit = i + 1 == K;
  const size_t nw = st.W.size();
  tensor_list acc = i > 0 && st.acc.size() == nw ? st.acc : tensor_list(nw);
  const Tensor ln_w = c_.ln_residual ? n.w : Tensor(), ln_b = c_.ln_residual ? n.b : Tensor();
  tensor_list r;
  if (inner_->kind() == "linear")
    r = ttt_linear_decode_step(in.XQ, in.XK, in.XV, in.lr, tok, st.W[0], st.W[1], acc[0], acc[1], ln_w, ln_b,
                               c_.ln_eps, commit);
  else
    r = ttt_mlp_decode_step(in.XQ, in.XK, in.XV, in.lr, tok, st.W, acc, ln_w, ln_b, c_.ln_eps, commit);
  const tensor_list next(r.begin() + 1, r.end());
  if (commit) {
    st.W = next;
    st.acc = tensor_list(nw);
  } else {
    st.acc = next;
  }
  st.index = commit ? 0 : i + 1;
  st.pending = ScanInputs{};  // the accumulators carry the mini-batch
  return r[0];
}

// A chunk of several tokens of TTT-Linear (grad mode off) runs the fused scan: every call scans the
// current mini-batch's earlier tokens (the state's `pending` inputs) again from W together with its
// own, so a prompt or a chunk of one (ttt eval --niah prefills in chunks) is one kernel call per
// layer instead of a few ops per token; a single token is decode_step()'s. After a composite step the
// mini-batch is carried by accumulators instead, and a chunk that completes it runs its first
// tokens in the composite forms, the rest fused. The scan's final state is not differentiable, so a
// step that autograd must see through (grad mode on) keeps the composite forms; so does TTT-MLP
// (its fused scan has no per-sequence initial state, and prefill_fused() lays out TTT-Linear's W, b
// only).
// Whether a chunk of several tokens of TTT-Linear runs the fused scan (decode_scan).
bool TTTMixer::fused_chunk(const ScanInputs& in) const {
  return !GradMode::is_enabled() && c_.mini_batch > 0 && (impl_ == "auto" || impl_ == "fused") &&
         inner_->kind() == "linear" && fused_unsupported(in).empty();
}

Tensor TTTMixer::decode_scan(ScanState& st, const ScanInputs& in, int64_t pos0) {
  const int64_t T = in.XQ.shape()[2], K = c_.mini_batch;
  if (T == 1 && decode_step_applies(in)) return decode_step(st, in);
  // TTT-MLP: a prompt from the start runs the fused scan (then single tokens the decode kernel, chunks
  // the composite forms).
  const bool fresh = pos0 == 0 && st.index == 0 && !st.pending.XQ.defined();
  if (fresh && !GradMode::is_enabled() && K > 0 && (impl_ == "auto" || impl_ == "fused") && inner_->kind() == "mlp" &&
      fused_unsupported(in).empty())
    return prefill_fused(in, st, /*from_w0=*/true);
  const bool fused = fused_chunk(in);
  if (fused && (st.index == 0 || st.pending.XQ.defined())) {
    const int64_t n = st.index;  // the mini-batch's tokens already seen (their outputs are not returned again)
    if (n == 0) return prefill_fused(in, st, /*from_w0=*/pos0 == 0);
    const auto first = [](const ScanInputs& a, int64_t len) {
      return ScanInputs{narrow(a.XQ, 2, 0, len), narrow(a.XK, 2, 0, len), narrow(a.XV, 2, 0, len), narrow(a.lr, 2, 0, len)};
    };
    const ScanInputs p = first(st.pending, n);
    if (n + T < K) {
      // The mini-batch stays open: its inputs live in buffers of K tokens (the scan reads strided
      // views), so a decoded token adds one copy per input instead of a concatenation of all.
      const ScanInputs buf = st.pending.XQ.shape()[2] == K ? st.pending : pending_buffers(p, K);
      const ScanInputs slot{narrow(buf.XQ, 2, n, T), narrow(buf.XK, 2, n, T), narrow(buf.XV, 2, n, T), narrow(buf.lr, 2, n, T)};
      for (auto [dst, src] : {std::pair{slot.XQ, in.XQ}, {slot.XK, in.XK}, {slot.XV, in.XV}, {slot.lr, in.lr}}) dst.copy_(src);
      Tensor y = narrow(prefill_fused(first(buf, n + T), st, /*from_w0=*/pos0 == n), 2, n, T);
      st.pending = buf;  // its first st.index tokens
      return y;
    }
    const ScanInputs chunk{cat({p.XQ, in.XQ}, 2), cat({p.XK, in.XK}, 2), cat({p.XV, in.XV}, 2), cat({p.lr, in.lr}, 2)};
    return narrow(prefill_fused(chunk, st, /*from_w0=*/pos0 == n), 2, n, T);
  }
  const int64_t head = st.index == 0 ? 0 : K - st.index;  // tokens left in the current mini-batch
  const auto composite = [&](const ScanInputs& part, int64_t p0) {
    Tensor y = run(st, part, p0, true);
    st.pending = ScanInputs{};  // the accumulators carry the mini-batch now
    return y;
  };
  if (!fused || T - head < K) return composite(in, pos0);
  const auto part = [&](int64_t t0, int64_t n) {
    return ScanInputs{narrow(in.XQ, 2, t0, n), narrow(in.XK, 2, t0, n), narrow(in.XV, 2, t0, n), narrow(in.lr, 2, t0, n)};
  };
  tensor_list outs;
  if (head > 0) outs.push_back(composite(part(0, head), pos0));  // ends the mini-batch: commits
  outs.push_back(prefill_fused(part(head, T - head), st, /*from_w0=*/false));
  return outs.size() == 1 ? outs[0] : cat(outs, 2);
}

}  // namespace ttt
