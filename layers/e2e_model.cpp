// layers/e2e_model.cpp — see e2e_model.h.
#include "layers/e2e_model.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "layers/e2e_config.h"

namespace ttt {

namespace {

void check_ids(const char* who, const Tensor& ids, const char* what = "ids") {
  check_defined(who, ids, what);
  if (ids.dim() != 2 || ids.dtype() != DType::i64)
    throw std::invalid_argument(std::string(who) + ": " + what + " must be int64 [B, T], got " + ids.str());
}

// Per-token weights [B, T] of the chunk losses: 1 / (scored tokens of the token's chunk in its
// sequence), 0 for ignored targets. Built on the host from the targets.
Tensor chunk_token_weights(const Tensor& targets, int64_t b, int64_t ignore_index, DType dt, Device dev) {
  const int64_t B = targets.shape()[0], T = targets.shape()[1];
  const std::vector<int64_t> t = targets.to(cpu()).contiguous().tolist<int64_t>();
  std::vector<double> w(static_cast<size_t>(B * T), 0.0);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t s = 0; s < T; s += b) {
      const int64_t n = std::min(b, T - s);
      int64_t scored = 0;
      for (int64_t j = 0; j < n; ++j) scored += t[r * T + s + j] != ignore_index;
      for (int64_t j = 0; j < n; ++j)
        if (t[r * T + s + j] != ignore_index) w[r * T + s + j] = 1.0 / static_cast<double>(scored);
    }
  return from_vector(w, {B, T}, opts(dt)).to(dev);
}

}  // namespace

E2EModel::E2EModel(const ModelConfig& cfg, Module& owner) : cfg_(cfg), shape_(cfg), owner_(&owner) {
  validate(cfg);
  if (cfg.arch != "e2e") throw std::invalid_argument("E2EModel: model.arch must be e2e");
  n_suffix_ = e2e_suffix_blocks(cfg);
  n_prefix_ = cfg.n_layers - n_suffix_;
  inner_lr_ = cfg.e2e.inner_lr;
  Generator g(cfg.seed);
  embed_ = owner.register_module("embed", std::make_shared<Embedding>(cfg.vocab_size, cfg.d_model, g, cfg.init_std));
  auto list = owner.register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    blocks_.push_back(list->append(std::make_shared<E2EBlock>(cfg, i >= n_prefix_, g)));
  final_norm_ = owner.register_module("final_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    lm_head_ = owner.register_module("lm_head", std::make_shared<Linear>(cfg.d_model, cfg.vocab_size, g, cfg.init_std));
}

Tensor E2EModel::head_weight() const { return lm_head_ ? lm_head_->weight : embed_->weight; }

SuffixWeights E2EModel::suffix_weights() const {
  SuffixWeights P;
  for (int64_t i = n_prefix_; i < cfg_.n_layers; ++i) P.blocks.push_back(blocks_[i]->weights());
  P.final_norm = final_norm_->weight;
  P.head = head_weight();
  return P;
}

std::vector<FastWeights> E2EModel::initial_fast() const {
  std::vector<FastWeights> W;
  for (int64_t i = n_prefix_; i < cfg_.n_layers; ++i) W.push_back(blocks_[i]->prime->weights());
  return W;
}

Tensor E2EModel::prefix_hidden(const Tensor& ids) const {
  // fn reads the weights it is handed (not the members), so autograd/checkpoint can recompute it.
  std::vector<E2EBlockWeights> layout;
  tensor_list inputs = {embed_->weight};
  for (int64_t i = 0; i < n_prefix_; ++i) {
    layout.push_back(blocks_[i]->weights());
    for (const Tensor& t : layout.back().list()) inputs.push_back(t);
  }
  auto fn = [layout, shape = shape_, ids](const tensor_list& x) {
    Tensor h = embedding(x[0], ids);
    size_t at = 1;
    for (const E2EBlockWeights& w : layout) h = e2e_block_apply(shape, w.with(x, at), nullptr, h, 0, {}, nullptr);
    return tensor_list{h};
  };
  return cfg_.e2e.remat_prefix && n_suffix_ > 0 ? checkpoint(fn, inputs)[0] : fn(inputs)[0];
}

Tensor E2EModel::static_logits(const Tensor& ids) {
  check_ids("E2EModel", ids);
  Tensor h = embed_->forward(ids);
  for (const auto& b : blocks_) {
    FastWeights W0 = b->is_suffix() ? b->prime->weights() : FastWeights{};
    h = e2e_block_apply(shape_, b->weights(), &W0, h, 0, {}, nullptr);
  }
  return e2e_linear(final_norm_->forward(h), head_weight());
}

E2EModel::Run E2EModel::run(const Tensor& ids, const Tensor& targets, int64_t ignore_index, bool want_logits) {
  const int64_t T = ids.shape()[1];
  if (T == 0) throw std::invalid_argument("E2EModel: empty sequence");
  Run out;
  if (n_suffix_ == 0) {  // no fast weights: nothing to chunk
    Tensor logits = static_logits(ids);
    out.losses = cross_entropy(logits, targets, ignore_index, "none");
    if (want_logits) out.logits = logits;
    return out;
  }
  const int64_t b = e2e_chunk(cfg_, T);
  const Tensor H = prefix_hidden(ids);
  const Tensor weights = chunk_token_weights(targets, b, ignore_index, H.dtype(), H.device());
  const SuffixWeights P = suffix_weights();
  ChunkCarry carry;
  carry.W = initial_fast();
  carry.past.resize(static_cast<size_t>(n_suffix_));
  // Whole chunks of keys a query can reach: ceil((w − 1) / b); all of them for full attention.
  const size_t keep = cfg_.window > 0 ? static_cast<size_t>((cfg_.window - 1 + b - 1) / b) : SIZE_MAX;
  tensor_list losses, logits;
  for (int64_t s = 0; s < T; s += b) {
    const int64_t n = std::min(b, T - s);
    ChunkSpec spec(shape_);
    spec.inner_lr = inner_lr_;
    spec.inner_clip = cfg_.e2e.inner_clip;
    spec.start = s;
    spec.ignore_index = ignore_index;
    spec.update = s + n < T;
    spec.want_logits = want_logits;
    spec.second_order_at_autocast = cfg_.e2e.second_order == "autocast";
    const Tensor h = narrow(H, 1, s, n), tg = contiguous(narrow(targets, 1, s, n)),
                 wt = contiguous(narrow(weights, 1, s, n));
    ChunkResult r = cfg_.e2e.remat ? e2e_chunk_remat(spec, P, carry, h, tg, wt) : e2e_chunk(spec, P, carry, h, tg, wt);
    losses.push_back(r.losses);
    if (want_logits) logits.push_back(r.logits);
    carry.W = r.W;
    for (size_t i = 0; i < carry.past.size(); ++i) {
      auto& ps = carry.past[i];
      ps.push_back(r.own[i]);
      while (ps.size() > keep) ps.erase(ps.begin());
    }
  }
  out.losses = losses.size() == 1 ? losses[0] : cat(losses, 1);
  if (want_logits) out.logits = logits.size() == 1 ? logits[0] : cat(logits, 1);
  return out;
}

Tensor E2EModel::forward(const Tensor& ids) {
  check_ids("E2EModel::forward", ids);
  const int64_t T = ids.shape()[1];
  // Targets of the inner steps: the next token. The last position has none; it belongs to the
  // last chunk, which takes no step, so any valid id does.
  Tensor targets = T > 1 ? cat({narrow(ids, 1, 1, T - 1), narrow(ids, 1, T - 1, 1)}, 1) : ids;
  return run(ids, contiguous(targets), -100, true).logits;
}

Tensor E2EModel::token_losses(const Tensor& ids, const Tensor& targets, int64_t ignore_index) {
  check_ids("E2EModel::token_losses", ids);
  check_ids("E2EModel::token_losses", targets, "targets");
  if (targets.shape() != ids.shape())
    throw std::invalid_argument("E2EModel::token_losses: targets " + targets.shape().str() + " must match ids " +
                                ids.shape().str());
  return run(ids, targets, ignore_index, false).losses;
}

Tensor E2EModel::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index, bool training) {
  if (n_suffix_ == 0 || (training && cfg_.e2e.train_mode == "naive")) {
    check_ids("E2EModel::loss", ids);
    return cross_entropy(static_logits(ids), targets, ignore_index, "mean");
  }
  Tensor L = token_losses(ids, targets, ignore_index);
  const std::vector<int64_t> t = targets.to(cpu()).contiguous().tolist<int64_t>();
  const int64_t scored = static_cast<int64_t>(std::count_if(t.begin(), t.end(), [&](int64_t v) { return v != ignore_index; }));
  return div_scalar(sum(L), static_cast<double>(scored));  // 0/0 = NaN when nothing is scored, as cross_entropy
}

int64_t E2EModel::n_matmul_params() const {
  int64_t n = owner_->num_parameters();
  if (!cfg_.tie_embeddings) n -= cfg_.vocab_size * cfg_.d_model;  // the input lookup is free
  return n;
}

double E2EModel::flops_per_token(int64_t seq_len) const {
  double keys = 0;
  for (int64_t t = 0; t < seq_len; ++t) keys += cfg_.window > 0 ? std::min<int64_t>(t + 1, cfg_.window) : t + 1;
  keys /= static_cast<double>(std::max<int64_t>(seq_len, 1));
  return 2.0 * static_cast<double>(n_matmul_params()) +
         static_cast<double>(cfg_.n_layers) * 2.0 * 2.0 * static_cast<double>(cfg_.d_model) * keys;
}

}  // namespace ttt
