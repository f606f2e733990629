// trainer/train_dist.cpp — see train_dist.h.
#include "trainer/train_dist.h"

#include <csignal>

#include "trainer/checkpoint.h"

namespace ttt {

namespace {
struct StepWish {
  double loss;
  int32_t signal;
  int32_t time_up;
};
}  // namespace

StepAgreement agree_on_step(Communicator& comm, double loss, int signal, bool time_up) {
  std::vector<StepWish> all = comm.all_gather(StepWish{loss, signal, time_up ? 1 : 0});
  StepAgreement a;
  int first_signal = 0;
  bool any_time_up = false;
  for (const StepWish& w : all) {
    a.loss += w.loss;
    if (!first_signal) first_signal = w.signal;
    any_time_up = any_time_up || w.time_up;
  }
  a.loss /= static_cast<double>(all.size());
  if (first_signal == SIGTERM) a.stop_reason = "SIGTERM";
  else if (first_signal == SIGINT) a.stop_reason = "SIGINT";
  else if (first_signal) a.stop_reason = "stop request";
  else if (any_time_up) a.stop_reason = "time limit";
  return a;
}

std::optional<std::string> agree_on_resume_checkpoint(Communicator& comm, const std::string& dir,
                                                      std::vector<SkippedCheckpoint>* skipped) {
  std::optional<std::string> mine;
  if (comm.rank() == 0) mine = newest_valid_checkpoint(dir, skipped);
  // "" for none: a real checkpoint path is never empty.
  std::string path = comm.broadcast_string(mine.value_or(""), 0);
  if (path.empty()) return std::nullopt;
  return path;
}

}  // namespace ttt
