// trainer/config_schema.cpp — every configuration key: where it lives in RunConfig, what it means.
// Defaults are the member initializers of the structs (layers/model_config.h, trainer/config.h),
// so the schema never repeats a value. The order here is the order of the resolved dump and of
// configs/defaults.yaml.
#include <algorithm>

#include "trainer/config.h"

namespace ttt {

namespace {

// F(x) builds the accessor of member x of RunConfig.
#define F(member) [](RunConfig& c) -> ConfigField { return &c.member; }

std::vector<ConfigKey> build_schema() {
  std::vector<ConfigKey> k = {
      {"name", F(name), "Free-form name of the preset (shown in logs)."},
      {"description", F(description), "Free-form description."},

      // --- model (layers/model_config.h) ---
      {"model.arch", F(model.arch),
       "standard: embedding -> blocks of model.mixer/model.backbone -> head; e2e: TTT-E2E (model.e2e.*, layers/e2e_model.h).",
       {"standard", "e2e"}},
      {"model.vocab_size", F(model.vocab_size), "Vocabulary size; must equal the tokenizer's."},
      {"model.d_model", F(model.d_model), "Hidden width."},
      {"model.n_layers", F(model.n_layers), "Number of blocks."},
      {"model.n_heads", F(model.n_heads), "Heads of the sequence mixer (head_dim = d_model / n_heads)."},
      {"model.d_ff", F(model.d_ff), "SwiGLU intermediate size."},
      {"model.mixer", F(model.mixer), "Sequence mixer.",
       {"attention", "ttt_linear", "ttt_mlp", "linear_attention", "mamba", "mamba2", "gated_deltanet", "ttt_kvb"}},
      {"model.pattern", F(model.pattern),
       "Per-block mixers, comma-separated and repeated over the blocks (e.g. swa,swa,swa,swa,swa,attention); "
       "swa = attention with model.window, attention = full; empty = model.mixer everywhere."},
      {"model.backbone", F(model.backbone),
       "transformer: norm -> mixer -> residual; mamba: adds the causal conv before the mixer and the gate (paper §2.7).",
       {"transformer", "mamba"}},
      {"model.window", F(model.window), "Attention: sliding-window size; 0 = full causal attention."},
      {"model.rope_theta", F(model.rope_theta), "RoPE base."},
      {"model.conv_width", F(model.conv_width), "Mamba backbone: width of the causal depthwise convolutions."},
      {"model.tie_embeddings", F(model.tie_embeddings), "LM head shares the embedding matrix (official: true)."},
      {"model.norm_eps", F(model.norm_eps), "RMSNorm epsilon."},
      {"model.init_std", F(model.init_std), "Std of the normal initializer."},
      {"model.max_seq_len", F(model.max_seq_len),
       "Longest context the model is meant for (train.seq_len defaults to it); eval may go longer."},
      {"model.seed", F(model.seed), "Seed of the parameter initialization."},
      {"model.remat_io", F(model.remat_io),
       "Training stores less for the backward: a TTT layer's input side (the Mamba backbone's pre-conv, the norm, the "
       "projections, convs, RoPE, lr gate) and output side (gated post-norm, o_proj) are recomputed in the backward "
       "instead (same values; with other mixers only the pre-conv). The TTT configs set it. 125M TTT-Linear, 8 x 2048 "
       "on an H200: 7.9 instead of 10.4 GB peak memory, 10% fewer tokens/s."},
      {"model.bf16_activations", F(model.bf16_activations),
       "Under bf16 autocast, activations that only products read stay bf16, written so by their producers: the "
       "SwiGLU MLP's hidden layer (w1 x, w3 x, their gated product) and attention's q, k, v (projections and RoPE) "
       "and output. Half the bytes they store and move, no casts; products are bf16 either way, norms, residual "
       "stream and loss stay fp32. TTT layers: model.ttt.bf16_io. false: float32 activations."},
      {"model.ttt.mini_batch", F(model.ttt.mini_batch), "TTT mini-batch size b; -1 = whole sequence (batch GD)."},
      {"model.ttt.base_lr", F(model.ttt.base_lr), "Inner learning rate eta_base; -1 = 1.0 (linear) / 0.1 (mlp)."},
      {"model.ttt.base_lr_init", F(model.ttt.base_lr_init),
       "eta_base warms up from this value over the outer warmup; -1 = 0.01 for ttt_mlp (paper), none for ttt_linear."},
      {"model.ttt.ln_residual", F(model.ttt.ln_residual), "Inner model f(x) = x + LN(f_res(x)); false: f_res(x)."},
      {"model.ttt.learnable_w0", F(model.ttt.learnable_w0), "Initial hidden state W0 is trained; false: W0 = 0."},
      {"model.ttt.learnable_lr", F(model.ttt.learnable_lr), "eta(x) = base * sigmoid(theta_lr . x); false: eta = base."},
      {"model.ttt.learnable_token_idx", F(model.ttt.learnable_token_idx),
       "Learnable offset on the 1/(i+1) token weights inside a mini-batch (official)."},
      {"model.ttt.token_idx_mean", F(model.ttt.token_idx_mean),
       "Token i of a mini-batch averages its gradients (scale 1/(i+1), official); false: plain sum (Theorem 1)."},
      {"model.ttt.rope", F(model.ttt.rope), "RoPE on the TTT views with positions t mod b (official)."},
      {"model.ttt.inner_bias", F(model.ttt.inner_bias),
       "The inner model has biases (official b1, b2); false: f_res(x) = xW (Theorem 1)."},
      {"model.ttt.mlp_expansion", F(model.ttt.mlp_expansion), "TTT-MLP hidden size = expansion x head_dim."},
      {"model.ttt.impl", F(model.ttt.impl),
       "TTT implementation (identical outputs; see tests). auto: the fused scan kernel where it covers the "
       "layer (TTT-Linear or TTT-MLP, mini_batch > 0, a kernel for the device, head dim and dtype), "
       "else dual; fused: the kernel or an error.",
       {"auto", "fused", "dual", "primal", "generic"}},
      {"model.ttt.bf16_io", F(model.ttt.bf16_io),
       "Under bf16 autocast (TTT-Linear and TTT-MLP through the fused scan): the q/k, v and gate projections, the "
       "convs and RoPE write bf16, the scan reads XQ, XK, XV and writes its output as bf16, and the gated post-norm "
       "reads and writes bf16 up to o_proj. Its products are bf16 anyway and the inner state and every sum stay fp32; "
       "what is stored between the ops takes half the bytes (TTT-MLP's scan still computes on float32 copies made "
       "on the way in). Decoding stays fp32. false: float32 activations."},
      {"model.ttt.checkpoint_group", F(model.ttt.checkpoint_group),
       "Gradient checkpointing through time: keep W every G mini-batches; 0 = off."},
      {"model.ttt.mlp_cluster", F(model.ttt.mlp_cluster),
       "The fused TTT-MLP scan on a GPU with bf16 products (autocast; sm_90): 1 runs one thread block per "
       "(sequence, head); 2 or 4 split each head's hidden units over a cluster of that many blocks, on as many "
       "SMs, that exchange their partial products through distributed shared memory (forward, the backward's "
       "state replay and its reverse walk). For runs where sequences x heads x this still fit the GPU's SMs at once "
       "(e.g. 2 x 8192 at 12 heads: 48 blocks with 2); beyond that the walks queue in waves. 0 = auto: 2 where "
       "that fits at once, else 1 (on an H100 the 125M at 2 x 8192 trained 1.24x faster with 2, slower with 4 "
       "than with 2). Float32 products and the CPU ignore it. 0, 1, 2 or 4."},
      {"model.ttt.mlp_split_walk", F(model.ttt.mlp_split_walk),
       "The fused TTT-MLP scan's backward on a GPU split in two: every chunk's test path at once (a thread block "
       "per sequence, head and chunk), and a reverse walk carrying only the state's gradient (a block per "
       "sequence and head), in one grid with the state replay, instead of one reverse walk doing both. It keeps "
       "a record per chunk (74 KB per head and chunk at head_dim 64). On an H100 the 125M at 2 x 8192 trained "
       "3.6% faster (79.3k -> 82.2k tok/s) with a 0.93 GB higher peak (9.39 GB); at 8 x 2048 (96 heads: the "
       "walks leave too few SMs for the test paths) it is 1.5x slower. The CPU ignores it."},
      {"model.ttt.ln_eps", F(model.ttt.ln_eps), "Epsilon of the inner LayerNorm."},
      {"model.ttt.post_norm", F(model.ttt.post_norm),
       "LayerNorm(d_model) on the inner loop's output (official); false: none (with the Theorem-1 switches the "
       "mixer is then exactly linear attention)."},
      {"model.linear_attention.feature_map", F(model.linear_attention.feature_map),
       "Feature map phi on q and k: identity (Theorem 1's form) or elu_plus_one (Katharopoulos et al. 2020).",
       {"identity", "elu_plus_one"}},
      {"model.linear_attention.normalize", F(model.linear_attention.normalize),
       "Divide by sum_s phi(k_s).phi(q_t) + eps (Katharopoulos et al. 2020); false: no normalizer (Theorem 1)."},
      {"model.linear_attention.eps", F(model.linear_attention.eps), "Added to the normalizer's denominator."},
      {"model.e2e.suffix_blocks", F(model.e2e.suffix_blocks),
       "TTT-E2E: blocks (the last ones) with the fast MLP' updated at test time; -1 = n_layers / 4; 0 = none "
       "(the SWA / full-attention baseline)."},
      {"model.e2e.chunk", F(model.e2e.chunk), "TTT-E2E: tokens per inner step b; -1 = the whole sequence (no step: SWA)."},
      {"model.e2e.inner_lr", F(model.e2e.inner_lr), "TTT-E2E: inner SGD learning rate eta (paper: 1)."},
      {"model.e2e.inner_lr_init", F(model.e2e.inner_lr_init),
       "TTT-E2E: eta ramps linearly from this to inner_lr over the outer warmup (paper: 0.1; = inner_lr for no ramp)."},
      {"model.e2e.inner_clip", F(model.e2e.inner_clip),
       "TTT-E2E: clip the inner gradient to this global norm over all fast tensors; 0 = off."},
      {"model.e2e.train_mode", F(model.e2e.train_mode),
       "TTT-E2E: meta = outer loss after the inner steps, exact second-order gradient; naive = train at W0 "
       "(dynamic evaluation: the inner loop runs only at test time).",
       {"meta", "naive"}},
      {"model.e2e.second_order", F(model.e2e.second_order),
       "TTT-E2E under bf16 autocast: the products of the inner gradient's differentiable backward (the second-order "
       "path). float32 = exact float32 products of the float32 operands, which the chunk's forward keeps for them; "
       "autocast = bf16 operands with float32 accumulation, as JAX differentiates a bf16 product (tensor-core GEMMs, "
       "no float32 operands kept). No effect without autocast.",
       {"float32", "autocast"}},
      {"model.e2e.fast_heads", F(model.e2e.fast_heads),
       "TTT-E2E: MLP' as this many independent heads of d_model/h features (block-diagonal); 1 = full MLP."},
      {"model.e2e.remat", F(model.e2e.remat),
       "TTT-E2E: recompute each chunk in the outer backward (keeps only W and K/V per chunk)."},
      {"model.e2e.remat_prefix", F(model.e2e.remat_prefix), "TTT-E2E: recompute the prefix blocks in the outer backward."},
      {"model.e2e.qk_norm", F(model.e2e.qk_norm), "TTT-E2E: per-head RMSNorm on queries and keys."},
      {"model.e2e.post_norm", F(model.e2e.post_norm), "TTT-E2E: RMSNorm on each sublayer's output as well as its input."},

      // --- baseline mixers (layers/baseline_config.h) ---
      {"model.mamba.d_state", F(model.mamba.d_state), "Mamba: SSM state size N."},
      {"model.mamba.expand", F(model.mamba.expand), "Mamba: d_inner = expand x d_model."},
      {"model.mamba.d_conv", F(model.mamba.d_conv), "Mamba: causal conv width."},
      {"model.mamba.dt_rank", F(model.mamba.dt_rank), "Mamba: rank of the dt projection; -1 = ceil(d_model / 16)."},
      {"model.mamba.scan_chunk", F(model.mamba.scan_chunk),
       "Mamba: keep the scan state every N steps and recompute the rest in backward; 0 = keep all."},
      {"model.mamba.kernel", F(model.mamba.kernel),
       "Mamba selective scan: fused kernels (the CPU reference; CUDA float32 with d_state 16; an error elsewhere), the "
       "composite form, or auto (fused where the kernels cover the shape, else composite).",
       {"auto", "fused", "composite"}},
      {"model.mamba2.d_state", F(model.mamba2.d_state), "Mamba 2: SSM state size N."},
      {"model.mamba2.head_dim", F(model.mamba2.head_dim), "Mamba 2: head dim P (heads = expand x d_model / P)."},
      {"model.mamba2.expand", F(model.mamba2.expand), "Mamba 2: d_inner = expand x d_model."},
      {"model.mamba2.n_groups", F(model.mamba2.n_groups), "Mamba 2: groups sharing B and C."},
      {"model.mamba2.d_conv", F(model.mamba2.d_conv), "Mamba 2: causal conv width."},
      {"model.mamba2.chunk", F(model.mamba2.chunk), "Mamba 2: SSD chunk length."},
      {"model.mamba2.norm_eps", F(model.mamba2.norm_eps), "Mamba 2: epsilon of the gated RMSNorm."},
      {"model.mamba2.kernel", F(model.mamba2.kernel),
       "Mamba 2 SSD scan: fused chunked SSD kernels (CUDA float32; the CPU reference), the composite form, recurrent "
       "(the token-by-token kernels of the gated delta rule without its erase term), delta_chunked (the gated delta "
       "rule's chunked WY kernels without the erase term; CUDA, d_state <= 128; the CPU reference elsewhere), "
       "delta_chunked_tc (the same with their products on the tensor cores in 3xTF32), or auto (recurrent).",
       {"auto", "fused", "composite", "recurrent", "delta_chunked", "delta_chunked_tc"}},
      {"model.gdn.n_heads", F(model.gdn.n_heads), "Gated DeltaNet: heads; -1 = model.n_heads / 2."},
      {"model.gdn.head_dim", F(model.gdn.head_dim), "Gated DeltaNet: key head dim; -1 = 0.75 x d_model / heads."},
      {"model.gdn.expand_v", F(model.gdn.expand_v), "Gated DeltaNet: value head dim = expand_v x head_dim."},
      {"model.gdn.d_conv", F(model.gdn.d_conv), "Gated DeltaNet: short conv width."},
      {"model.gdn.chunk", F(model.gdn.chunk), "Gated DeltaNet: WY/UT chunk length (a power of two); the CPU fused kernels keep the state every chunk tokens."},
      {"model.gdn.norm_eps", F(model.gdn.norm_eps), "Gated DeltaNet: epsilon of the gated output RMSNorm."},
      {"model.gdn.kernel", F(model.gdn.kernel),
       "Gated DeltaNet scan: fused kernels (the CPU reference; CUDA float32 walking the tokens; an error where they "
       "cannot run), chunked (the same with CUDA's chunked WY kernels; key head dim <= 128), chunked_tc (those with "
       "their products on the tensor cores in 3xTF32), the composite chunked WY form, or auto (fused where the "
       "kernels cover the shape, else composite).",
       {"auto", "fused", "chunked", "chunked_tc", "composite"}},
      {"model.kvb.n_heads", F(model.kvb.n_heads), "TTT-KVB: fast-weight heads; -1 = model.n_heads."},
      {"model.kvb.hidden_mult", F(model.kvb.hidden_mult), "TTT-KVB: fast-weight MLP hidden = hidden_mult x head dim."},
      {"model.kvb.mini_batch", F(model.kvb.mini_batch), "TTT-KVB: tokens per fast-weight update (E2E: 1024)."},
      {"model.kvb.base_lr", F(model.kvb.base_lr), "TTT-KVB: initial per-token inner learning rate (softplus bias)."},
      {"model.kvb.weight_norm", F(model.kvb.weight_norm),
       "TTT-KVB: after each update rescale every fast-weight row to its initial norm (LaCT)."},

      // --- train (trainer/config.h TrainConfig) ---
      {"train.tokens", F(train.tokens), "Training tokens; 0 = 20 x parameters (Chinchilla)."},
      {"train.steps", F(train.steps), "Optimizer steps; 0 = tokens / batch_tokens. Overrides train.tokens."},
      {"train.batch_tokens", F(train.batch_tokens),
       "Global batch in tokens = micro_batch x seq_len x accumulation x world size (paper: 0.5M)."},
      {"train.micro_batch", F(train.micro_batch), "Sequences per forward/backward on one rank."},
      {"train.seq_len", F(train.seq_len), "Training context (tokens per sequence); 0 = model.max_seq_len."},
      {"train.lr", F(train.lr), "Peak learning rate (paper Table 2: 3e-3 125M, 1.5e-3 350M, 1.25e-3 760M, 1e-3 1.3B).",
       {}, true},
      {"train.min_lr", F(train.min_lr), "End value of the cosine decay."},
      {"train.warmup_frac", F(train.warmup_frac), "Linear warmup over this fraction of the steps."},
      {"train.warmup_steps", F(train.warmup_steps), "Warmup steps; -1 = warmup_frac x steps."},
      {"train.beta1", F(train.beta1), "AdamW beta1."},
      {"train.beta2", F(train.beta2), "AdamW beta2."},
      {"train.eps", F(train.eps), "AdamW epsilon."},
      {"train.weight_decay", F(train.weight_decay), "AdamW decoupled weight decay (multiplied by the lr)."},
      {"train.decay_all", F(train.decay_all),
       "true: decay every parameter (official code); false: no decay on norms, biases, embeddings."},
      {"train.grad_clip", F(train.grad_clip), "Clip the global gradient norm to this; 0 = off."},
      {"train.seed", F(train.seed), "Seed of the data order (batch = f(seed, step, rank, world))."},
      {"train.dtype", F(train.dtype), "fp32, or bf16: matmuls and attention on bf16 operands with fp32 accumulation (autocast); weights, optimizer, norms, losses and TTT states stay fp32.",
       {"fp32", "bf16"}},
      {"train.device", F(train.device), "cpu, cuda or cuda:N (--device overrides)."},
      {"train.log_every", F(train.log_every), "Log line every N steps (metrics.jsonl gets every step)."},
      {"train.eval_every", F(train.eval_every), "Validation loss every N steps; 0 = off."},
      {"train.eval_windows", F(train.eval_windows), "Validation windows per periodic evaluation."},
      {"train.max_minutes", F(train.max_minutes), "Stop with a checkpoint after this many minutes; 0 = no limit."},
      {"train.peak_tflops", F(train.peak_tflops),
       "Device peak TFLOP/s for MFU (H100 SXM bf16 dense: 989); 0 = unknown, MFU is logged as null."},
      {"train.init_from", F(train.init_from),
       "Checkpoint whose parameters start this run (fine-tuning, context extension; `ttt import` output works too): "
       "fresh optimizer and schedule; the model keys must give the same parameter shapes. Empty = random init. "
       "A run resumed with --resume continues from its own checkpoints instead."},
      {"train.deterministic", F(train.deterministic),
       "GPU kernels sum in a fixed order instead of with float atomics (embedding gradient, attention dQ), so a run "
       "(and a resumed run) repeats bit for bit, at some speed cost. The CPU is always deterministic."},

      // --- data ---
      {"data.dir", F(data.dir), "Directory of prepared shards (`ttt data prepare`).", {}, true},
      {"data.tokenizer", F(data.tokenizer), "Sentencepiece model; empty = the one recorded with the shards."},

      // --- checkpoint ---
      {"checkpoint.every", F(checkpoint.every), "Save every N steps; 0 = only at the end and on interrupt."},
      {"checkpoint.keep_last", F(checkpoint.keep_last), "Keep the newest N checkpoints; 0 = keep all."},

      // --- eval ---
      {"eval.contexts", F(eval.contexts), "Context lengths for `ttt eval`; empty = the training context."},
      {"eval.max_windows", F(eval.max_windows), "Windows per context length; 0 = all the validation data allows."},
      {"eval.batch", F(eval.batch), "Windows per forward pass."},
      {"eval.position_buckets", F(eval.position_buckets), "Loss-by-position buckets per context length."},

      // --- dist ---
      {"dist.backend", F(dist.backend),
       "Communicator: auto (nccl on CUDA, mpi on CPU, local without a launcher), local, mpi or nccl.",
       {"auto", "local", "mpi", "nccl"}},
      {"dist.timeout_s", F(dist.timeout_s),
       "Seconds a collective may wait for the other ranks before the job is aborted (a rank failed or hangs)."},
      {"dist.bucket_mb", F(dist.bucket_mb), "Gradient all-reduce bucket size in MB."},
      {"dist.overlap", F(dist.overlap), "All-reduce gradient buckets during backward, as they become ready."},
      {"dist.timeline", F(dist.timeline),
       "Record, per step and gradient bucket, when it was ready and when its all-reduce started and ended, "
       "against the end of backward (GPU times on NCCL), in <run-dir>/ddp_timeline.jsonl (rank 0). Costs a sync per step."},
      {"dist.zero", F(dist.zero),
       "0: every rank keeps all of AdamW's state; 1: ZeRO-1, each rank keeps AdamW's moments for 1/world-size of the "
       "parameters (gradients reduce-scattered, updated weights all-gathered). Same results up to float rounding; "
       "checkpoints resume with either value at any world size."},
  };
  return k;
}

#undef F

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = build_schema();
  return schema;
}

const ConfigKey* find_config_key(const std::string& name) {
  for (const auto& k : config_schema())
    if (k.name == name) return &k;
  return nullptr;
}

std::string config_type_name(const ConfigField& f) {
  struct Name {
    std::string operator()(int64_t*) const { return "int"; }
    std::string operator()(uint64_t*) const { return "non-negative int"; }
    std::string operator()(double*) const { return "float"; }
    std::string operator()(bool*) const { return "bool"; }
    std::string operator()(std::string*) const { return "string"; }
    std::string operator()(std::vector<int64_t>*) const { return "list of ints"; }
  };
  return std::visit(Name{}, f);
}

}  // namespace ttt
