// data/progress.h — a progress report for long data jobs: a single self-rewriting status line
// when stderr is a terminal, a log line every ~10 s otherwise (so batch-job logs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ttt {

class Progress {
 public:
  // total: the amount that means 100% (bytes of input); enabled=false prints nothing.
  Progress(std::string label, int64_t total, bool enabled);
  // done: progress against total; docs/tokens: counters shown beside it (tokens < 0 hides them).
  void update(int64_t done, int64_t docs, int64_t tokens);
  // Clears the status line (terminal) so the summary that follows starts on a clean line.
  void finish();
  double elapsed_s() const;

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

// "12.3 MB", "1.5 GB"
std::string human_bytes(double bytes);
// "950", "12.3k", "4.56M", "7.89B"
std::string human_count(double n);

}  // namespace ttt
