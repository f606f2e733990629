// trainer/checkpoint.h — one HDF5 file per save: everything needed to resume exactly.
//
// Layout of `step_N.h5` (N = optimizer steps completed):
//   /params/<dotted name>   float32, the parameter's shape      (h5py: f["params"]["embed.weight"])
//   /optim/m/<name>, /optim/v/<name>   float32 AdamW moments
//   /extra/<name>           uint8 blobs (e.g. the tokenizer model, so a checkpoint is self-contained)
//   root attributes: format = "ttt-checkpoint", format_version, step, tokens, rng_seed, rng_offset,
//                    optimizer_step, config (the resolved YAML)
// Datasets are chunked with HDF5's Fletcher-32 checksum filter, so a corrupted byte is detected
// when the data is read back. A 0-d tensor is stored with shape [1] and attribute scalar = 1.
//
// Crash safety: the file is written as `step_N.h5.tmp`, flushed, fsync'ed, closed and renamed, and
// the directory is fsync'ed; a crash leaves at most a `.tmp` file, never a damaged `step_N.h5`.
// Resume takes the newest file that passes checkpoint_problem(); broken ones are reported and
// skipped, never loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"
#include "trainer/optimizer.h"

namespace ttt {

constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointMeta {
  int64_t step = 0;            // optimizer steps completed
  int64_t tokens = 0;          // training tokens consumed
  uint64_t rng_seed = 0;       // the trainer's Generator state
  uint64_t rng_offset = 0;
  int64_t optimizer_step = 0;  // AdamW's t (bias correction); equals step for a plain run
  std::string config_yaml;     // resolved config of the run
  std::map<std::string, std::string> extras;  // named blobs (tokenizer model, ...)
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// AdamW's state as a checkpoint stores it: the step count and the full-shape moments of every
// parameter by name. An AdamW's slots give it directly; ZeRO-1 gathers it from the ranks' shards
// (trainer/zero.h), so a checkpoint does not depend on the world size or on dist.zero.
struct OptimizerState {
  struct Moments {
    std::string name;
    Tensor m, v;
  };
  int64_t step_count = 0;
  std::vector<Moments> moments;
};
// Handles to `opt`'s own tensors (no copy): saving reads them, loading writes into them.
OptimizerState optimizer_state_of(const AdamW& opt);

// Writes a checkpoint of `params` (and the optimizer's moments if `opt`) to `path` atomically.
void save_checkpoint(const std::string& path, const NamedTensors& params, const AdamW* opt,
                     const CheckpointMeta& meta);
void save_checkpoint(const std::string& path, const NamedTensors& params, const OptimizerState* opt,
                     const CheckpointMeta& meta);
// Parameters only (`nullptr` picks this one, not one of the two above).
inline void save_checkpoint(const std::string& path, const NamedTensors& params, std::nullptr_t,
                            const CheckpointMeta& meta) {
  save_checkpoint(path, params, static_cast<const OptimizerState*>(nullptr), meta);
}

// Reads the attributes and extras only (cheap; for eval/generate to rebuild the model first).
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Loads parameter values into `params` (same names and shapes, both ways) and, if `opt`, the
// moments and step count. Errors name the file and the tensor. Returns the metadata.
CheckpointMeta load_checkpoint(const std::string& path, const NamedTensors& params, AdamW* opt);
// The same into `opt`'s moments (their names and shapes say what to read; the values are copied
// into the tensors given) and step_count.
CheckpointMeta load_checkpoint(const std::string& path, const NamedTensors& params, OptimizerState* opt);
inline CheckpointMeta load_checkpoint(const std::string& path, const NamedTensors& params, std::nullptr_t) {
  return load_checkpoint(path, params, static_cast<OptimizerState*>(nullptr));
}

// "" if the file opens, has the format attributes, and every dataset reads back with a valid
// checksum and consistent shapes; otherwise what is wrong with it.
std::string checkpoint_problem(const std::string& path);

// <dir>/step_<step>.h5
std::string checkpoint_path(const std::string& dir, int64_t step);
// Checkpoint files (step_N.h5, not .tmp) of `dir`, ascending by step. Missing dir: empty.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
struct SkippedCheckpoint {
  std::string path;
  std::string problem;  // what checkpoint_problem() found
};
// The newest checkpoint of `dir` that passes checkpoint_problem(); the newer files that did not
// pass go to `skipped`, newest first.
std::optional<std::string> newest_valid_checkpoint(const std::string& dir, std::vector<SkippedCheckpoint>* skipped);
// Renames a broken checkpoint to <path>.broken (.broken.2, ... if taken), so that it is neither
// loaded, nor counted by prune_checkpoints, nor deleted. Returns the new path.
std::string set_aside_checkpoint(const std::string& path);
// Deletes all but the newest `keep_last` checkpoint files (0 = keep all) among those of step <=
// `through_step` (files of later steps are left alone: they are not this run's). Returns the
// removed paths.
std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep_last,
                                           int64_t through_step = INT64_MAX);

}  // namespace ttt
