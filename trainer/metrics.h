// trainer/metrics.h — what a run reports while it trains.
//
// - MetricsLog: metrics.jsonl, one JSON object per line, flushed per line (readable while the run
//   goes; scripts/plot_run.py plots it). On resume, rows after the resumed step are dropped first,
//   so the file reads as one uninterrupted run.
// - ProgressLine: on a terminal, a live status line rewritten in place every step
//   (step/total, loss, tok/s, ETA); elsewhere (logs, CI) nothing live — the periodic log line is
//   the record, as tqdm_loggable does in levanter.
// - make_run_logger: spdlog to the console and to <run_dir>/train.log.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace spdlog { class logger; }

namespace ttt {

class MetricsLog {
 public:
  // Opens (creating) `path` for appending. If keep_through_step >= 0, first rewrites the file
  // keeping only rows whose "step" <= keep_through_step (atomically, via a temporary file).
  explicit MetricsLog(const std::string& path, int64_t keep_through_step = -1);
  void write(const nlohmann::json& row);
  // The last row of the file with step <= keep_through_step, read at construction (null if none).
  const nlohmann::json& last_row() const { return last_row_; }

 private:
  std::ofstream out_;
  nlohmann::json last_row_;
};

// "45s", "3m05s", "2h07m", "3d04h"
std::string format_duration(double seconds);
// "12.3k", "4.56M"
std::string format_count(double v);

class ProgressLine {
 public:
  ProgressLine(int64_t total_steps, bool live);
  // Called after each optimizer step (step = steps completed).
  void update(int64_t step, double loss, double tokens_per_s, double eta_seconds);
  // Erases the live line so that a log line can be printed cleanly.
  void clear();
  bool live() const { return live_; }

 private:
  int64_t total_;
  bool live_;
  bool shown_ = false;
};

bool stderr_is_terminal();

// Logger named "ttt" writing to stderr (if `console`) and, if run_dir is not empty, to
// <run_dir>/train.log (appended).
std::shared_ptr<spdlog::logger> make_run_logger(const std::string& run_dir, bool console = true);

}  // namespace ttt
