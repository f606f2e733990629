// layers/ttt_scan.cpp — see ttt_scan.h.
#include "layers/ttt_scan.h"

#include <memory>
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

// One segment: tokens [start, start + len) of the input, at in-mini-batch indices index ...
// index + len − 1; `commit` when it ends its mini-batch.
struct Piece {
  int64_t start, len, index;
  bool commit, full;
};

std::vector<Piece> plan(int64_t T, int64_t index, int64_t K) {
  std::vector<Piece> out;
  for (int64_t t = 0; t < T;) {
    const int64_t len = K > 0 ? std::min(K - index, T - t) : T - t;
    const bool commit = K > 0 && index + len == K;
    out.push_back({t, len, index, commit, index == 0 && commit});
    t += len;
    index = commit ? 0 : index + len;
  }
  return out;
}

// Runs pieces [p0, p1) whose tokens start at `offset` of the tensors in `in`. Commits follow the
// official end-of-mini-batch update W ← W − eta[K−1, :]-weighted gradient sum = W − tok[K−1]·acc.
Tensor run_pieces(const InnerModel& m, tensor_list& W, tensor_list& acc, const ScanInputs& in, int64_t offset,
                  const std::vector<Piece>& pieces, size_t p0, size_t p1, const Tensor& tok, int64_t tok_base,
                  const InnerNorm& n, const ScanOptions& o) {
  tensor_list outs;
  for (size_t p = p0; p < p1; ++p) {
    const Piece& pc = pieces[p];
    const int64_t s0 = pc.start - offset;
    Segment seg{narrow(in.XQ, 2, s0, pc.len), narrow(in.XK, 2, s0, pc.len), narrow(in.XV, 2, s0, pc.len),
                narrow(in.lr, 2, s0, pc.len), narrow(tok, 0, pc.index - tok_base, pc.len)};
    SegmentFn fn = pc.full ? o.full : o.partial;
    outs.push_back(fn(m, W, acc, seg, n));
    if (pc.commit) {
      Tensor last = narrow(tok, 0, o.mini_batch - 1 - tok_base, 1);
      for (size_t k = 0; k < W.size(); ++k) {
        if (W[k].defined() && acc[k].defined()) W[k] = sub(W[k], mul(last, acc[k]));
        acc[k] = Tensor();
      }
    }
  }
  return outs.size() == 1 ? outs[0] : cat(outs, 2);
}

}  // namespace

Tensor ttt_scan(const InnerModel& m, ScanState& st, const ScanInputs& in, const Tensor& tok, int64_t tok_base,
                const InnerNorm& n, const ScanOptions& o) {
  const int64_t T = in.XQ.shape()[2];
  if (T == 0) throw std::invalid_argument("TTT scan: empty sequence");
  if (!o.full || !o.partial) throw std::invalid_argument("TTT scan: segment functions not set");
  const size_t nw = st.W.size();
  st.acc.resize(nw);
  const std::vector<Piece> pieces = plan(T, st.index, o.mini_batch);
  st.index = o.mini_batch > 0 ? (st.index + T) % o.mini_batch : st.index + T;

  if (o.checkpoint_group <= 0)
    return run_pieces(m, st.W, st.acc, in, 0, pieces, 0, pieces.size(), tok, tok_base, n, o);

  // Groups of G pieces, each one checkpoint: inputs = state, shared parameters, this group's
  // slices; outputs = state after the group, the group's outputs.
  // The closures outlive this call (backward re-runs them): they hold the plan and options by
  // value; the inner model must outlive the graph, as any module does. They also hold the
  // autocast setting of the forward, so a recomputation run by a backward outside the autocast
  // scope multiplies in the same precision as the forward did (else the gradients would be those
  // of a slightly different function).
  const size_t G = static_cast<size_t>(o.checkpoint_group);
  auto shared = std::make_shared<const std::vector<Piece>>(pieces);
  tensor_list outs;
  for (size_t g0 = 0; g0 < pieces.size(); g0 += G) {
    const size_t g1 = std::min(pieces.size(), g0 + G);
    const int64_t t0 = pieces[g0].start, t1 = pieces[g1 - 1].start + pieces[g1 - 1].len;
    tensor_list inputs = st.W;
    inputs.insert(inputs.end(), st.acc.begin(), st.acc.end());
    for (const Tensor& t : {tok, n.w, n.b, narrow(in.XQ, 2, t0, t1 - t0), narrow(in.XK, 2, t0, t1 - t0),
                            narrow(in.XV, 2, t0, t1 - t0), narrow(in.lr, 2, t0, t1 - t0)})
      inputs.push_back(t);
    auto fn = [&m, shared, o, g0, g1, t0, nw, tok_base, eps = n.eps, ln = n.ln_residual,
               autocast = Autocast::enabled(), autocast_dtype = Autocast::dtype()](const tensor_list& x) {
      AutocastGuard same_precision(autocast_dtype, autocast);
      tensor_list W(x.begin(), x.begin() + nw), acc(x.begin() + nw, x.begin() + 2 * nw);
      const size_t a = 2 * nw;
      InnerNorm norm{x[a + 1], x[a + 2], eps, ln};
      ScanInputs local{x[a + 3], x[a + 4], x[a + 5], x[a + 6]};
      Tensor out = run_pieces(m, W, acc, local, t0, *shared, g0, g1, x[a], tok_base, norm, o);
      tensor_list res = W;
      res.insert(res.end(), acc.begin(), acc.end());
      res.push_back(out);
      return res;
    };
    tensor_list res = checkpoint(fn, inputs);
    st.W.assign(res.begin(), res.begin() + nw);
    st.acc.assign(res.begin() + nw, res.begin() + 2 * nw);
    outs.push_back(res.back());
  }
  return outs.size() == 1 ? outs[0] : cat(outs, 2);
}

}  // namespace ttt
