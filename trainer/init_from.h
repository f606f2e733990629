// trainer/init_from.h — `train.init_from` / `ttt train --init-from C`: a new run that starts from
// the parameters of a checkpoint (fine-tuning, context extension), with a fresh optimizer (zero
// moments, step count 0) and its own schedule, in its own run directory. The checkpoint may come
// from any run, or from `ttt import`.
//
// The model config of the new run must give every parameter the checkpoint's name and shape;
// keys that change no shape may differ (model.max_seq_len and model.rope_theta for a longer
// context, model.ttt.impl, ...): the new config wins, and the differences are reported.
#pragma once

#include <string>
#include <vector>

#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace ttt {

struct InitFromResult {
  CheckpointMeta meta;                   // the checkpoint's (step, tokens of its own run)
  std::vector<std::string> differences;  // "model.max_seq_len: 2048 -> 8192": the checkpoint's -> this run's
};

// Loads the parameters of `path` into `params` (the new run's model, built from `cfg`).
// std::invalid_argument, starting "train.init_from: ", when the checkpoint is unusable, was made
// with another tokenizer than the data's (`data_tokenizer_sha256`, "" = unknown), or cannot
// initialize this model: then the message names the first parameter that is missing on one side
// or has another shape, and the model config keys that differ.
InitFromResult init_from_checkpoint(const std::string& path, const RunConfig& cfg, const NamedTensors& params,
                                    const std::string& data_tokenizer_sha256);

}  // namespace ttt
