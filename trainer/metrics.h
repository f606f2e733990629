// trainer/metrics.h — what a run reports while it trains.
//
// - MetricsLog: metrics.jsonl, one JSON object per line, flushed per line (readable while the run
//   goes; scripts/plot_run.py plots it). On resume, rows after the resumed step are dropped first,
//   so the file reads as one uninterrupted run.
// - ProgressLine: on a terminal, a live status line rewritten in place every step
//   (step/total, loss, tok/s, peak memory, ETA); elsewhere (logs, CI) nothing live — the periodic log line is
//   the record, as tqdm_loggable does in levanter.
// - make_run_logger: spdlog to the console and to <run_dir>/train.log.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "data/progress.h"

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
  std::string path_;
  nlohmann::json last_row_;
};

// The live line of `ttt train` (numbers formatted by data/progress.h).
class ProgressLine {
 public:
  ProgressLine(int64_t total_steps, bool live);
  // Called after each optimizer step (step = steps completed); memory_bytes: the device's peak.
  void update(int64_t step, double loss, double tokens_per_s, double memory_bytes, double eta_seconds);
  // Erases the live line so that a log line can be printed cleanly.
  void clear() { line_.clear(); }
  bool live() const { return line_.live(); }

 private:
  int64_t total_;
  StatusLine line_;
};

// Logger named "ttt" writing to stderr (if `console`) and, if run_dir is not empty, to
// <run_dir>/train.log (appended).
std::shared_ptr<spdlog::logger> make_run_logger(const std::string& run_dir, bool console = true);
// Adds <run_dir>/train.log (appended) to a logger made without a run directory.
void attach_run_log_file(spdlog::logger& log, const std::string& run_dir);
// Logs `message` as an error to the logger's file sinks only: for an error that is about to reach
// the console anyway (main prints it), so that train.log has it too.
void log_error_to_file(spdlog::logger& log, const std::string& message);

}  // namespace ttt
