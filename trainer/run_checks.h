// trainer/run_checks.h — what `ttt train` checks before it writes anything to a run directory:
// the tokenizer that will be stored in the checkpoints, and, when resuming, that the run's plan
// is the one the checkpoint was trained with.
#pragma once

#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/token_source.h"

namespace ttt {

// The bytes of the sentencepiece model this run stores in its checkpoints: the file named by
// data.tokenizer when set (it must exist), else <data.dir>/tokenizer.model when present ("" when
// neither: nothing to store). Its SHA-256 must be the one recorded in the shards; a swapped model
// is an error naming both checksums, so a checkpoint never carries another tokenizer than its data.
std::string training_tokenizer(const RunConfig& cfg, const TokenSource& data);

// The differences between a checkpoint's config and the resuming run's that change what is
// trained (model, data, optimizer, schedule, batch, length, seed, dtype), as "key: old -> new".
// Not counted: how the run executes and reports (device, micro_batch, TTT impl, logging,
// evaluation, checkpoints, dist, name, description, max_minutes, peak_tflops, the tokenizer's
// path) and data.dir naming the same directory differently.
std::vector<std::string> training_plan_changes(const RunConfig& stored, const RunConfig& now);

// The command that continues the run in `run_dir`: its own resolved config.yaml holds every
// setting (data directory and --set overrides included).
std::string resume_command(const std::string& run_dir);

}  // namespace ttt
