// trainer/metrics.cpp — see metrics.h.
#include "trainer/metrics.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "data/file_io.h"

namespace fs = std::filesystem;

namespace ttt {

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) {
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  // Resume: rewrite the file without the rows the interrupted session wrote after its last
  // checkpoint; they are about to be recomputed (identically) and would appear twice.
  if (keep_through_step >= 0 && fs::exists(path)) {
    std::ifstream in(path);
    std::string kept;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (row.is_discarded()) continue;  // a line cut by a crash
      if (row.contains("step") && row["step"].get<int64_t>() > keep_through_step) continue;
      kept += line + "\n";
      last_row_ = row;
    }
    write_file_atomic(path, kept, "metrics file");  // the old file stays whole if this fails
  }
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error("cannot open metrics file '" + path + "' for writing: " + errno_message(errno));
  path_ = path;
}

void MetricsLog::write(const nlohmann::json& row) {
  out_ << row.dump() << "\n";
  out_.flush();  // a crash loses at most the row being written; plots can follow a live run
  if (!out_) throw std::runtime_error("cannot write metrics file '" + path_ + "': " + errno_message(errno));
}

ProgressLine::ProgressLine(int64_t total_steps, bool live) : total_(total_steps), line_(live) {}

void ProgressLine::update(int64_t step, double loss, double tokens_per_s, double memory_bytes, double eta_seconds) {
  if (!line_.live()) return;
  const double frac = total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_) : 0.0;
  char text[256];
  std::snprintf(text, sizeof text, "%s step %lld/%lld  loss %.4f  %s tok/s  mem %s  ETA %s", progress_bar(frac).c_str(),
                static_cast<long long>(step), static_cast<long long>(total_), loss, human_count(tokens_per_s).c_str(),
                human_bytes(memory_bytes).c_str(), format_duration(eta_seconds).c_str());
  line_.show(text);
}

std::shared_ptr<spdlog::logger> make_run_logger(const std::string& run_dir, bool console) {
  std::vector<spdlog::sink_ptr> sinks;
  if (console) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("[%H:%M:%S] %^%v%$");
    sink->set_color(spdlog::level::info, sink->reset);  // colour only warnings and errors
    sinks.push_back(sink);
  }
  auto logger = std::make_shared<spdlog::logger>("ttt", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);  // train.log is complete even if the process is killed
  if (!run_dir.empty()) attach_run_log_file(*logger, run_dir);
  return logger;
}

void attach_run_log_file(spdlog::logger& log, const std::string& run_dir) {
  fs::create_directories(run_dir);
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(run_dir) / "train.log").string());
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  log.sinks().push_back(file);
}

void log_error_to_file(spdlog::logger& log, const std::string& message) {
  std::vector<std::pair<spdlog::sink_ptr, spdlog::level::level_enum>> muted;
  for (const auto& sink : log.sinks())
    if (!std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(sink)) {
      muted.emplace_back(sink, sink->level());
      sink->set_level(spdlog::level::off);
    }
  log.error("{}", message);
  for (auto& [sink, level] : muted) sink->set_level(level);
}

}  // namespace ttt
