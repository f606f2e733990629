// trainer/metrics.cpp — see metrics.h.
#include "trainer/metrics.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

namespace fs = std::filesystem;

namespace ttt {

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) {
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  // Resume: rewrite the file without the rows the interrupted session wrote after its last
  // checkpoint; they are about to be recomputed (identically) and would appear twice.
  if (keep_through_step >= 0 && fs::exists(path)) {
    std::ifstream in(path);
    std::vector<std::string> kept;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (row.is_discarded()) continue;  // a line cut by a crash
      if (row.contains("step") && row["step"].get<int64_t>() > keep_through_step) continue;
      kept.push_back(line);
      last_row_ = row;
    }
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& l : kept) out << l << "\n";
    }
    fs::rename(tmp, path);
  }
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error("cannot open metrics file '" + path + "' for writing");
}

void MetricsLog::write(const nlohmann::json& row) {
  out_ << row.dump() << "\n";
  out_.flush();  // a crash loses at most the row being written; plots can follow a live run
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(t));
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  else if (t < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600), static_cast<long long>(t % 3600 / 60));
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(t / 86400), static_cast<long long>(t % 86400 / 3600));
  return buf;
}

std::string format_count(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressLine::ProgressLine(int64_t total_steps, bool live) : total_(total_steps), live_(live) {}

void ProgressLine::update(int64_t step, double loss, double tokens_per_s, double eta_seconds) {
  if (!live_) return;
  const int width = 24;
  const double frac = total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_) : 0.0;
  const int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  // \r + erase-line rewrites the line in place; log lines call clear() first.
  std::fprintf(stderr, "\r\033[K[%s] step %lld/%lld  loss %.4f  %s tok/s  ETA %s", bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total_), loss, format_count(tokens_per_s).c_str(),
               format_duration(eta_seconds).c_str());
  std::fflush(stderr);
  shown_ = true;
}

void ProgressLine::clear() {
  if (!live_ || !shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

std::shared_ptr<spdlog::logger> make_run_logger(const std::string& run_dir, bool console) {
  std::vector<spdlog::sink_ptr> sinks;
  if (console) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("[%H:%M:%S] %^%v%$");
    sink->set_color(spdlog::level::info, sink->reset);  // colour only warnings and errors
    sinks.push_back(sink);
  }
  if (!run_dir.empty()) {
    fs::create_directories(run_dir);
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(run_dir) / "train.log").string());
    file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
    sinks.push_back(file);
  }
  auto logger = std::make_shared<spdlog::logger>("ttt", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);  // train.log is complete even if the process is killed
  return logger;
}

}  // namespace ttt
