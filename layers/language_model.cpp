// layers/language_model.cpp — embedding -> blocks -> final RMSNorm -> LM head (see
// language_model.h). Parameter names: embed.weight, blocks.<i>.<...>, final_norm.weight and, when
// the embeddings are not tied, lm_head.weight. Weights are drawn from Generator(cfg.seed) in
// that order, so the same config and seed give the same model on every device.
#include "layers/language_model.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/block.h"
#include "layers/decode_graphs.h"
#include "layers/e2e_model.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace ttt {

namespace {

struct LMDecodeState : DecodeState {
  std::vector<BlockState> blocks;
  int64_t batch = 0;

  bool graphable() const override {
    for (const BlockState& b : blocks)
      if (!b.mixer->graphable()) return false;
    return true;
  }
  void graph_key(std::vector<int64_t>& key) const override {
    for (const BlockState& b : blocks) b.mixer->graph_key(key);
  }
  void for_each_tensor(const std::function<void(Tensor&)>& f) override {
    for (BlockState& b : blocks) {
      f(b.conv_tail);
      b.mixer->for_each_tensor(f);
    }
  }
  void for_each_in_place_tensor(const std::function<void(Tensor&)>& f) override {
    for (BlockState& b : blocks) b.mixer->for_each_in_place_tensor(f);
  }
  std::unique_ptr<DecodeState> clone() const override {
    auto c = std::make_unique<LMDecodeState>();
    c->position = position;
    c->batch = batch;
    for (const BlockState& b : blocks) {
      std::unique_ptr<MixerState> m = b.mixer->clone();
      if (!m) return nullptr;
      c->blocks.push_back(BlockState{b.conv_tail, std::move(m)});
    }
    return c;
  }
  void advance(const DecodeState& post0, const DecodeState& pre0) override {
    const auto& post = dynamic_cast<const LMDecodeState&>(post0);
    const auto& pre = dynamic_cast<const LMDecodeState&>(pre0);
    position += post.position - pre.position;
    for (size_t i = 0; i < blocks.size(); ++i) {
      std::unique_ptr<MixerState> m = post.blocks[i].mixer->clone();
      m->rebase(*blocks[i].mixer, *pre.blocks[i].mixer);
      blocks[i].conv_tail = post.blocks[i].conv_tail;
      blocks[i].mixer = std::move(m);
    }
  }
  void assign(const DecodeState& s0) override {
    const auto& s = dynamic_cast<const LMDecodeState&>(s0);
    position = s.position;
    batch = s.batch;
    for (size_t i = 0; i < blocks.size(); ++i) {
      blocks[i].conv_tail = s.blocks[i].conv_tail;
      blocks[i].mixer = s.blocks[i].mixer->clone();
    }
  }
};

}  // namespace

struct LanguageModel::Impl {
  std::shared_ptr<Embedding> embed;
  std::shared_ptr<ModuleList> block_list;
  std::vector<std::shared_ptr<Block>> blocks;
  std::shared_ptr<RMSNorm> final_norm;
  std::shared_ptr<Linear> lm_head;  // null when tied to embed
  std::shared_ptr<E2EModel> e2e;    // arch e2e: every call goes there
  DecodeGraphs graphs;              // one-token decode steps as CUDA graphs

  Tensor head(const Tensor& h) const { return lm_head ? lm_head->forward(h) : embed->attend(h); }
  // The head's weight [V, d] (lm_head has no bias): what linear_cross_entropy multiplies.
  const Tensor& head_weight() const { return lm_head ? lm_head->weight : embed->weight; }
  // ids -> the final norm's output [B, T, d], the head's input.
  Tensor features(const Tensor& ids) const {
    Residual r{embed->forward(ids)};
    for (auto& b : blocks) r = b->forward(std::move(r));
    return r.normalized(*final_norm);  // the last block's add fused with the final norm
  }
  int64_t heads = 0;  // cfg.n_heads: a TTT layer's walks per sequence
  static constexpr int64_t kSegmentFromEnvironment = INT64_MIN;
  int64_t prefill_segment = kSegmentFromEnvironment;  // set_prefill_segment()

  // One decode call's work: ids [B, T] after the tokens in st.
  Tensor step(const Tensor& ids, LMDecodeState& st, bool last_only);
  // set_prefill_segment's value, or the environment's until it is called (-1 off, 0 auto, N).
  int64_t segment_setting() const;
  // The segment length a prompt of ids runs in as a wavefront (set_prefill_segment), 0 for none.
  int64_t wavefront_segment(const Tensor& ids) const;
  // The blocks over ids as a wavefront of segments of `seg` tokens; the residual of the last
  // segment only with last_only, else of the whole.
  Residual wavefront(const Tensor& ids, LMDecodeState& st, int64_t seg, bool last_only);
};

namespace {

void check_ids(const char* who, const Tensor& ids, const char* what = "ids") {
  check_defined(who, ids, what);
  if (ids.dim() != 2 || ids.dtype() != DType::i64)
    throw std::invalid_argument(std::string(who) + ": " + what + " must be int64 [B, T], got " + ids.str());
}

}  // namespace

LanguageModel::LanguageModel(const ModelConfig& cfg) : cfg_(cfg), impl_(std::make_shared<Impl>()) {
  validate(cfg);
  if (cfg.arch == "e2e") {
    impl_->e2e = std::make_shared<E2EModel>(cfg, *this);
    return;
  }
  Generator g(cfg.seed);
  impl_->heads = cfg.n_heads;
  impl_->embed = register_module("embed", std::make_shared<Embedding>(cfg.vocab_size, cfg.d_model, g, cfg.init_std));
  impl_->block_list = register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    impl_->blocks.push_back(impl_->block_list->append(std::make_shared<Block>(block_config(cfg, i), g)));
  impl_->final_norm = register_module("final_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    impl_->lm_head = register_module("lm_head", std::make_shared<Linear>(cfg.d_model, cfg.vocab_size, g, cfg.init_std));
}

Tensor LanguageModel::forward(const Tensor& ids) {
  if (impl_->e2e) return impl_->e2e->forward(ids);
  check_ids("LanguageModel::forward", ids);
  return impl_->head(impl_->features(ids));
}

Tensor LanguageModel::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) {
  check_ids("LanguageModel::loss", targets, "targets");
  if (targets.shape() != ids.shape())
    throw std::invalid_argument("LanguageModel::loss: targets " + targets.shape().str() + " must match ids " +
                                ids.shape().str());
  if (impl_->e2e) return impl_->e2e->loss(ids, targets, ignore_index, is_training());
  check_ids("LanguageModel::loss", ids);
  // The head and the loss fused over chunks of rows: the [B·T, V] logits are never stored.
  Tensor h = impl_->features(ids);
  const int64_t d = h.shape().back();
  return linear_cross_entropy(reshape(h, {-1, d}), impl_->head_weight(), reshape(targets, {-1}), ignore_index, "mean");
}

Tensor LanguageModel::token_losses(const Tensor& ids, const Tensor& targets) {
  check_ids("LanguageModel::token_losses", targets, "targets");
  if (targets.shape() != ids.shape())
    throw std::invalid_argument("LanguageModel::token_losses: targets " + targets.shape().str() +
                                " must match ids " + ids.shape().str());
  if (impl_->e2e) return impl_->e2e->token_losses(ids, targets);
  return cross_entropy(forward(ids), targets, -100, "none");
}

std::unique_ptr<DecodeState> LanguageModel::init_decode(int64_t batch) {
  if (impl_->e2e) return impl_->e2e->init_decode(batch);
  if (batch <= 0) throw std::invalid_argument("LanguageModel::init_decode: batch must be > 0");
  auto st = std::make_unique<LMDecodeState>();
  st->batch = batch;
  for (auto& b : impl_->blocks) st->blocks.push_back(b->init_state(batch));
  return st;
}

Tensor LanguageModel::decode(const Tensor& ids, DecodeState& state, bool last_only) {
  if (impl_->e2e) {
    Tensor logits = impl_->e2e->decode(ids, state);
    return last_only ? narrow(logits, 1, logits.shape()[1] - 1, 1) : logits;
  }
  check_ids("LanguageModel::decode", ids);
  auto* st = dynamic_cast<LMDecodeState*>(&state);
  if (!st) throw std::invalid_argument("LanguageModel::decode: the state must come from init_decode()");
  if (ids.shape()[0] != st->batch)
    throw std::invalid_argument("LanguageModel::decode: ids batch " + std::to_string(ids.shape()[0]) +
                                " differs from the state's " + std::to_string(st->batch));
  const Device dev = impl_->embed->weight.device();
  if (impl_->graphs.applies(ids, *st, dev))
    return impl_->graphs.step(ids, *st, dev, weights_stamp(),
                              [this](const Tensor& x, DecodeState& s) { return impl_->step(x, dynamic_cast<LMDecodeState&>(s), false); });
  return impl_->step(ids, *st, last_only);
}

Tensor LanguageModel::Impl::step(const Tensor& ids, LMDecodeState& st, bool last_only) {
  const int64_t seg = wavefront_segment(ids);
  Residual r{Tensor()};
  if (seg > 0) {
    r = wavefront(ids, st, seg, last_only);
  } else {
    r = Residual{embed->forward(ids)};
    for (size_t i = 0; i < blocks.size(); ++i) r = blocks[i]->step(std::move(r), st.blocks[i]);
  }
  st.position += ids.shape()[1];
  Tensor h = r.normalized(*final_norm);
  return head(last_only ? narrow(h, 1, h.shape()[1] - 1, 1) : h);
}

// Note [Wavefront prefill]
// A TTT-Linear layer's step over a long prompt is one serial walk per head (kernels/cuda/README.md,
// the register walk): at batch 1 × 16k tokens, 12 blocks on a GPU of 132 SMs for ~1.6 ms, twelve
// times over. The walks of different layers depend on each other only through the residual: layer
// l's segment s needs layer l − 1's segment s and its own segment s − 1. So the prompt is cut into
// S segments and run in S + L − 1 waves; in wave w, layer l steps segment w − l: every active layer
// runs its step up to its scan (Block::step_begin), then the wave's scans run as one launch
// (ttt_linear_scan_group: the walks of every layer side by side), then every layer the rest of its
// step. All on one stream: running the layers on streams side by side gained as much, but left every
// later CUDA graph replay of the process slower (the 125M's decode step 0.82 -> 0.93 ms on an H200;
// bench/stream_probe: any kernel run eagerly on a second stream slowed the replays of a graph of 300
// small kernels from 225 to 279 µs, for good).
// Each layer's state carries its segments in order, as decode() carries calls: the result is that
// of one pass (the same arithmetic but for the products' row blocking; tests/test_prefill_wavefront).
namespace {

// TTT_PREFILL_SEGMENT: unset or "auto": automatic; "off" or 0: never; N > 0: segments of N tokens.
int64_t segment_from_environment() {
  const char* env = std::getenv("TTT_PREFILL_SEGMENT");
  if (!env || std::string(env) == "auto") return 0;
  if (std::string(env) == "off") return -1;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  if (end == env || *end != '\0' || v < 0)
    throw std::invalid_argument(std::string("TTT_PREFILL_SEGMENT must be a token count, 'auto' or 'off', got '") + env +
                                "'");
  return v == 0 ? -1 : v;
}

}  // namespace

int64_t LanguageModel::Impl::segment_setting() const {
  return prefill_segment == kSegmentFromEnvironment ? segment_from_environment() : prefill_segment;
}

int64_t LanguageModel::Impl::wavefront_segment(const Tensor& ids) const {
  const int64_t T = ids.shape()[1];
  if (T < 2 || GradMode::is_enabled() || blocks.size() < 2) return 0;  // a generated token: no lookup
  int64_t seg = segment_setting();
  if (seg < 0) return 0;
  for (const auto& b : blocks)
    if (!b->mixer->prefill_in_segments()) return 0;
  if (seg == 0) {
    // On a GPU, from 8k tokens, four segments (a multiple of 256 tokens: mini-batch boundaries), while
    // batch × heads walks leave most SMs idle (the scan's chunk-parallel rule, B·H < 64). Measured on
    // an H200 (125M TTT-Linear, batch 1, BENCHMARKS.md, session 15): 8k 16.3 -> 14.9 ms, 16k 29.5 ->
    // 22.0 ms, 32k 55.3 -> 37.9 ms; at 4k two segments gained 3% (9.45 -> 9.15 ms), so not there.
    if (!ids.device().is_cuda() || T < 8192 || ids.shape()[0] * heads >= 64) return 0;
    seg = (T / 4 + 255) / 256 * 256;
  }
  return T > seg ? seg : 0;
}

Residual LanguageModel::Impl::wavefront(const Tensor& ids, LMDecodeState& st, int64_t seg, bool last_only) {
  const int64_t T = ids.shape()[1], S = (T + seg - 1) / seg, L = static_cast<int64_t>(blocks.size());
  std::vector<Residual> carry;  // carry[s]: segment s after the layers it has passed
  for (int64_t s = 0; s < S; ++s) carry.emplace_back(embed->forward(narrow(ids, 1, s * seg, std::min(seg, T - s * seg))));
  for (int64_t w = 0; w < S + L - 1; ++w) {
    const int64_t first = std::max<int64_t>(0, w - S + 1), last = std::min(L - 1, w);
    std::vector<SplitStep> splits;
    std::vector<tensor_list> scans;
    std::vector<TTTScanOptions> options;
    for (int64_t l = first; l <= last; ++l) {
      splits.push_back(blocks[l]->step_begin(carry[w - l], st.blocks[l]));
      if (splits.back().scan_inputs.empty()) continue;
      scans.push_back(splits.back().scan_inputs);
      options.push_back(splits.back().scan_options);
    }
    const std::vector<tensor_list> outputs = ttt_linear_scan_group(scans, options);
    for (int64_t l = first, k = 0; l <= last; ++l) {
      SplitStep& split = splits[l - first];
      carry[w - l] = blocks[l]->step_end(std::move(carry[w - l]), split,
                                         split.scan_inputs.empty() ? tensor_list() : outputs[k++]);
    }
  }
  if (last_only) return std::move(carry.back());
  tensor_list h, pending;
  for (Residual& r : carry) {
    h.push_back(r.h);
    pending.push_back(r.pending);
  }
  Residual r{cat(h, 1)};
  if (pending[0].defined()) r.pending = cat(pending, 1);
  return r;
}

// Changes whenever a parameter's data does (its storage or version): decode graphs read the weights
// as they were when recorded.
uint64_t LanguageModel::weights_stamp() const { return data_stamp(parameters()); }

void LanguageModel::set_decode_graphs(bool on) { impl_->graphs.set_enabled(on); }
void LanguageModel::set_prefill_segment(int64_t tokens) { impl_->prefill_segment = tokens; }
int64_t LanguageModel::prefill_segment() const { return impl_->segment_setting(); }
const DecodeGraphs& LanguageModel::decode_graphs() const { return impl_->graphs; }

double LanguageModel::flops_per_token(int64_t seq_len) const {
  // 2 FLOPs per multiply-add for every parameter used in a matmul per token, i.e. all parameters
  // except the embedding lookup (which is free) — with tied embeddings the table is the LM head
  // and counts once. Norm weights and biases are counted too (< 0.1% at the paper's sizes).
  // Plus each mixer's sequence-length-dependent part (attention's QK^T and PV, ...).
  if (impl_->e2e) return impl_->e2e->flops_per_token(seq_len);
  double n = static_cast<double>(num_parameters());
  if (!cfg_.tie_embeddings) n -= static_cast<double>(cfg_.vocab_size * cfg_.d_model);
  double f = 2.0 * n;
  for (auto& b : impl_->blocks) f += b->extra_flops_per_token(seq_len);
  return f;
}

E2EModel* LanguageModel::e2e() const { return impl_->e2e.get(); }

}  // namespace ttt
