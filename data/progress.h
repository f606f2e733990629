// data/progress.h — progress output and the number formats of every command: a status line
// rewritten in place on a terminal, a progress report for long data jobs (the status line on a
// terminal, a log line every ~10 s otherwise, so batch-job logs stay readable), and the formatting
// of byte counts, counts and durations shared by data/ and trainer/.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ttt {

// "12.3 MB", "1.5 GB"
std::string human_bytes(double bytes);
// "950", "12.3k", "4.56M", "7.89B"
std::string human_count(double n);
// "45s", "3m05s", "2h07m", "3d04h"; "?" for a negative or non-finite value
std::string format_duration(double seconds);
// "[######..................]": `frac` of `width` cells filled
std::string progress_bar(double frac, int width = 24);

bool stderr_is_terminal();

// One line on stderr rewritten in place (\r + erase-line) when `live`; nothing otherwise.
class StatusLine {
 public:
  explicit StatusLine(bool live) : live_(live) {}
  void show(const std::string& text);
  // Erases the line so that other output starts on a clean line.
  void clear();
  bool live() const { return live_; }

 private:
  bool live_;
  bool shown_ = false;
};

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
  bool enabled_;
  StatusLine line_;
  std::chrono::steady_clock::time_point t0_, last_;
};

}  // namespace ttt
