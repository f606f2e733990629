// layers/e2e_decode.cpp — incremental decoding of TTT-E2E (E2EModel::init_decode / decode).
//
// Every block keeps the rotated keys and values of the last w − 1 tokens (all of them for full
// attention). The tokens of the current chunk are decoded with the fast weights W_{i−1}, as the
// inner loop of training predicts them; the chunk's prefix outputs and ids are kept. When the
// first token of the next chunk arrives — the last target of the chunk is now known — the chunk is
// run once more through the suffix from the keys/values that preceded it and one inner step gives
// W_i (e2e_chunk, values only), then the new token is decoded with W_i. This is the paper's
// "one TTT step each time b tokens have been generated", and equals forward() on the whole
// sequence up to rounding (tests/test_ttt_e2e_model.cpp). Inference only: no gradient flows
// through decode().
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "autograd/ops.h"
#include "layers/e2e_config.h"
#include "layers/e2e_model.h"

namespace ttt {

namespace {

struct E2EDecodeState : DecodeState {
  int64_t batch = 0;
  std::vector<KV> cache;          // per block: keys/values of the last w − 1 tokens
  std::vector<FastWeights> W;     // per suffix block: W0 (shared) until the first step, then [B, h, ...]
  int64_t chunk_start = 0;        // absolute position of the current chunk's first token
  tensor_list chunk_h, chunk_ids; // its prefix outputs [B, n, D] and ids [B, n], piece by piece
  std::vector<KV> chunk_past;     // per suffix block: the keys/values before the chunk
};

KV append(const KV& cache, const KV& own, int64_t window) {
  KV kv = cache.k.defined() && cache.k.shape()[2] > 0 ? KV{cat({cache.k, own.k}, 2), cat({cache.v, own.v}, 2)} : own;
  return e2e_window_of({kv}, window);
}

}  // namespace

std::unique_ptr<DecodeState> E2EModel::init_decode(int64_t batch) {
  if (batch <= 0) throw std::invalid_argument("E2EModel::init_decode: batch must be > 0");
  auto st = std::make_unique<E2EDecodeState>();
  st->batch = batch;
  st->cache.resize(blocks_.size());
  st->W = initial_fast();
  st->chunk_past.resize(static_cast<size_t>(n_suffix_));
  return st;
}

Tensor E2EModel::decode(const Tensor& ids, DecodeState& state) {
  auto* st = dynamic_cast<E2EDecodeState*>(&state);
  if (!st) throw std::invalid_argument("E2EModel::decode: the state must come from init_decode()");
  check_defined("E2EModel::decode", ids);
  if (ids.dim() != 2 || ids.dtype() != DType::i64 || ids.shape()[0] != st->batch)
    throw std::invalid_argument("E2EModel::decode: ids must be int64 [" + std::to_string(st->batch) + ", T], got " +
                                ids.str());
  NoGradGuard ng;  // caches are written as we go: inference only
  const int64_t T = ids.shape()[1];
  const int64_t b = n_suffix_ > 0 && cfg_.e2e.chunk > 0 ? cfg_.e2e.chunk : std::numeric_limits<int64_t>::max();
  const SuffixWeights P = suffix_weights();
  tensor_list out;
  for (int64_t t = 0; t < T;) {
    const int64_t p = st->position + t;
    if (p - st->chunk_start == b) {
      // The chunk is complete and ids[:, t] is its last target: one inner step.
      tensor_list tg = {narrow(cat(st->chunk_ids, 1), 1, 1, b - 1), narrow(ids, 1, t, 1)};
      ChunkSpec spec(shape_);
      spec.inner_lr = inner_lr_;
      spec.inner_clip = cfg_.e2e.inner_clip;
      spec.start = st->chunk_start;
      Tensor h = cat(st->chunk_h, 1);
      ChunkCarry carry;
      carry.W = st->W;
      for (const KV& kv : st->chunk_past) carry.past.push_back(kv.k.defined() ? std::vector<KV>{kv} : std::vector<KV>{});
      Tensor weights = full({st->batch, b}, 1.0 / static_cast<double>(b), opts(h.dtype(), h.device()));
      st->W = e2e_chunk(spec, P, carry, h, contiguous(cat(tg, 1)), weights).W;
      st->chunk_start = p;
      st->chunk_h.clear();
      st->chunk_ids.clear();
      for (int64_t j = 0; j < n_suffix_; ++j) st->chunk_past[j] = st->cache[n_prefix_ + j];
    }
    const int64_t n = std::min(T - t, b - (p - st->chunk_start));
    const Tensor piece = contiguous(narrow(ids, 1, t, n));
    Tensor h = embed_->forward(piece);
    if (n_prefix_ == 0) st->chunk_h.push_back(h);
    for (int64_t i = 0; i < static_cast<int64_t>(blocks_.size()); ++i) {
      const bool suffix = i >= n_prefix_;
      KV own;
      h = e2e_block_apply(shape_, blocks_[i]->weights(), suffix ? &st->W[i - n_prefix_] : nullptr, h, p, st->cache[i],
                          &own);
      st->cache[i] = append(st->cache[i], own, cfg_.window);
      if (i == n_prefix_ - 1) st->chunk_h.push_back(h);
    }
    st->chunk_ids.push_back(piece);
    out.push_back(e2e_linear(final_norm_->forward(h), head_weight()));
    t += n;
  }
  if (n_suffix_ == 0 || b == std::numeric_limits<int64_t>::max()) {  // nothing to step: keep no chunk
    st->chunk_h.clear();
    st->chunk_ids.clear();
  }
  st->position += T;
  return out.size() == 1 ? out[0] : cat(out, 1);
}

}  // namespace ttt
