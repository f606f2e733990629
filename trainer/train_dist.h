// trainer/train_dist.h — the decisions of the train loop that every rank of a data-parallel job
// must take identically, or the ranks would issue different collectives and hang:
//   - which checkpoint to resume from (rank 0 picks it; everyone loads that file);
//   - the step's loss (the mean over ranks, added in rank order: every rank gets the same bits,
//     so a non-finite loss stops all ranks at the same step);
//   - whether to stop now (a signal reaches the ranks at different times, and each rank has its own
//     clock for train.max_minutes: the ranks stop together when any of them wants to).
// One small all-gather per step carries the loss and the stop wishes together.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "trainer/checkpoint.h"
#include "trainer/comm.h"

namespace ttt {

struct StepAgreement {
  double loss = 0;          // mean over ranks
  std::string stop_reason;  // "" = go on; "SIGTERM", "SIGINT", "stop request" or "time limit"
};

// `signal`: the stop signal this rank received (0: none, -1: a stop request without a signal).
StepAgreement agree_on_step(Communicator& comm, double loss, int signal, bool time_up);

// The newest valid checkpoint of `dir` as rank 0 sees it (the newer broken files go to `skipped`
// on rank 0), the same path on every rank.
std::optional<std::string> agree_on_resume_checkpoint(Communicator& comm, const std::string& dir,
                                                      std::vector<SkippedCheckpoint>* skipped);

}  // namespace ttt
