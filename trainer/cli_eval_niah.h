// trainer/cli_eval_niah.h — `ttt eval --task niah`: S-NIAH (trainer/niah.h) over a context x depth
// grid; registered on the eval command by trainer/cli_eval.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace ttt {

struct NiahArgs {
  std::string tasks = "single_1,single_2,single_3";
  std::vector<int64_t> depths = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
  int64_t samples = 4, gen = 128, prefill_chunk = 2048;
  uint64_t seed = 0;
  std::string split = "val";
};

// The options of the niah task on `cmd` (the eval command).
void add_niah_options(CLI::App* cmd, NiahArgs& a);

// The options both tasks share, as `ttt eval` parsed them (empty / <= 0 = not given).
struct EvalCommon {
  std::string checkpoint, data_dir, out, device = "cpu", dtype = "fp32";
  std::vector<int64_t> contexts;
  int64_t batch = -1;
};

void run_niah_eval(const EvalCommon& c, const NiahArgs& a);

struct LoadedModel;
struct RunConfig;
class Tokenizer;
// The sentencepiece model of an evaluation: the checkpoint's copy (parsed from memory), else
// <data_dir>/tokenizer.model. Throws when there is neither.
Tokenizer eval_tokenizer(const LoadedModel& m, const std::string& checkpoint, const std::string& data_dir);

// The data directory of an evaluation: --data, else the checkpoint's data.dir, which must exist
// (a relative one is relative to where the run was started). Throws naming the option.
std::string eval_data_dir(const RunConfig& cfg, const std::string& data_option);

// <run_dir>/eval/step_N<suffix>.json for a checkpoint in <run_dir>/checkpoints/, else eval/ beside it.
std::string eval_default_out(const std::string& checkpoint, int64_t step, const std::string& suffix);

}  // namespace ttt
