// trainer/config.h — the run configuration: YAML file + `--set section.key=value` overrides,
// checked against one schema (trainer/config_schema.cpp), resolved into plain structs.
//
// A config file has the sections `model:` (maps 1:1 onto layers/model_config.h, `model.ttt:` onto
// TTTConfig), `train:`, `data:`, `checkpoint:`, `eval:`, `dist:` and the optional top-level strings `name`
// and `description`. Every key, its type, default and meaning is listed by the schema;
// `configs/defaults.yaml` is that list written out (`ttt config defaults`; a test keeps them equal).
//
// Errors (std::invalid_argument) name the file (or the --set argument), the key and what was
// expected: an unknown key comes with a did-you-mean, a wrong type with the expected type and the
// value found (and the line for files), a missing required key with its type.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "kernels/dtype.h"
#include "layers/model_config.h"

namespace ttt {

// Optimization recipe (paper Table 2 / §3; official JAX infra/optimizers.py and scripts).
struct TrainConfig {
  int64_t tokens = 0;            // training tokens; 0 = 20 x parameter count (Chinchilla)
  int64_t steps = 0;             // optimizer steps; 0 = tokens / batch_tokens
  int64_t batch_tokens = 524288; // global batch (0.5M, paper footnote 12) = micro x seq x accum x world
  int64_t micro_batch = 8;       // sequences per forward/backward on one rank
  int64_t seq_len = 0;           // training context (tokens per sequence); 0 = model.max_seq_len
  double lr = 0;                 // peak learning rate (required: Table 2 gives it per size)
  double min_lr = 1e-5;          // cosine end value
  double warmup_frac = 0.1;      // linear warmup over this fraction of the steps
  int64_t warmup_steps = -1;     // >= 0 overrides warmup_frac
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_all = true;         // official: decay every parameter; false excludes norms/biases/embeddings
  double grad_clip = 1.0;        // global-norm clipping; 0 = off
  uint64_t seed = 0;             // data order (the sampler's seed)
  std::string dtype = "fp32";    // fp32 | bf16 (autocast: bf16 matmul/attention operands, fp32 accumulation; CPU and CUDA)
  std::string device = "cpu";    // cpu | cuda | cuda:N (the CLI's --device overrides)
  int64_t log_every = 10;        // console/log line every N steps (metrics.jsonl gets every step)
  int64_t eval_every = 0;        // validation loss every N steps; 0 = off
  int64_t eval_windows = 16;     // validation windows (of the training context) per periodic eval
  double max_minutes = 0;        // stop (with a checkpoint) after this wall time; 0 = no limit
  double peak_tflops = 0;        // device peak for MFU; 0 = unknown (MFU null)
  std::string init_from;         // checkpoint whose parameters start a new run (trainer/init_from.h); "" = random init
  bool deterministic = false;    // fixed-order GPU reductions instead of float atomics (kernels/backend.h)
};

struct DataConfig {
  std::string dir;               // prepared shards (`ttt data prepare`); required for train/eval
  std::string tokenizer;         // sentencepiece model; empty = the one recorded in `dir`
};

struct CheckpointConfig {
  int64_t every = 0;             // save every N steps; 0 = only at the end / on interrupt
  int64_t keep_last = 3;         // keep the newest N checkpoint files; 0 = keep all
};

struct EvalConfig {
  std::vector<int64_t> contexts; // context lengths for `ttt eval` (empty = the training context)
  int64_t max_windows = 0;       // windows per context length; 0 = all the validation data allows
  int64_t batch = 1;             // windows per forward pass
  int64_t position_buckets = 64; // loss-by-position resolution (positions averaged per bucket)
};

// Data parallelism (trainer/comm.h, trainer/ddp.h): the launcher decides the world size.
struct DistConfig {
  std::string backend = "auto";  // auto | local | mpi | nccl (auto: nccl on CUDA, mpi on CPU, local alone)
  double timeout_s = 600;        // longest wait for a collective before the job is aborted
  double bucket_mb = 25;         // gradient all-reduce bucket size (PyTorch DDP's default)
  bool overlap = true;           // all-reduce buckets during backward (false: all after it)
  bool timeline = false;         // write each step's per-bucket all-reduce timeline (ddp_timeline.jsonl)
  int64_t zero = 0;              // 1: ZeRO-1, AdamW's moments sharded over the ranks (trainer/zero.h)
};

struct RunConfig {
  std::string name;
  std::string description;
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  CheckpointConfig checkpoint;
  EvalConfig eval;
  DistConfig dist;

  std::string source;            // the file it was loaded from ("" if none)
  std::set<std::string> set_keys;// keys given explicitly (file or --set)
  std::map<std::string, std::string> origins;  // where each set key got its value ("file:12", "--set k=v")
  bool was_set(const std::string& key) const { return set_keys.count(key) != 0; }
  // Where `key` was set, for messages: its origin, else the file, else "config".
  std::string origin_of(const std::string& key) const;
  // The training context: train.seq_len, or model.max_seq_len when that is 0.
  int64_t seq_len() const { return train.seq_len > 0 ? train.seq_len : model.max_seq_len; }
};

// --- the schema --------------------------------------------------------------------------------
using ConfigField = std::variant<int64_t*, uint64_t*, double*, bool*, std::string*, std::vector<int64_t>*>;

struct ConfigKey {
  ConfigKey(std::string n, std::function<ConfigField(RunConfig&)> f, std::string d,
            std::vector<std::string> c = {}, bool required = false)
      : name(std::move(n)), field(std::move(f)), doc(std::move(d)), choices(std::move(c)),
        required_for_train(required) {}
  std::string name;                            // dotted: "train.lr", "model.ttt.mini_batch"
  std::function<ConfigField(RunConfig&)> field;
  std::string doc;
  std::vector<std::string> choices;            // allowed values of a string key (empty = any)
  bool required_for_train = false;             // `ttt train` refuses to start without it
};
const std::vector<ConfigKey>& config_schema();
const ConfigKey* find_config_key(const std::string& name);
std::string config_type_name(const ConfigField& f);  // "int", "float", "bool", "string", "list of ints"

// --- loading -----------------------------------------------------------------------------------
// Loads `path` (may be empty: defaults only), then applies overrides "a.b=value" in order.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses a YAML document held in a string (a checkpoint's stored config); `origin` names it in errors.
RunConfig load_config_string(const std::string& yaml, const std::string& origin);
void apply_override(RunConfig& cfg, const std::string& assignment);
// Throws naming the first key marked required_for_train that was not set (when check_required),
// or a value out of range.
void validate_for_training(const RunConfig& cfg, bool check_required = true);
// "train.lr: 0.001 -> 0.002" for every key whose value differs between a and b.
std::vector<std::string> config_differences(const RunConfig& a, const RunConfig& b);

// --- writing -----------------------------------------------------------------------------------
// The resolved configuration (every key) as YAML; load_config_string(dump_config(c)) == c.
std::string dump_config(const RunConfig& cfg);
// Every key with its documentation as comments: the content of configs/defaults.yaml.
std::string defaults_yaml_with_docs();

// Formats a double so YAML 1.1 and 1.2 readers (PyYAML too) see a float that round-trips exactly.
std::string format_yaml_float(double v);

}  // namespace ttt
