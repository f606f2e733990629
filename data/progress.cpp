// data/progress.cpp — see progress.h.
#include "data/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ttt {

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) { b /= 1000; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string human_count(double n) {
  const char* units[] = {"", "k", "M", "B", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) { n /= 1000; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : (n < 10 ? "%.2f%s" : "%.1f%s"), n, units[u]);
  return buf;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const long long t = std::llround(s);
  if (t < 60) std::snprintf(buf, sizeof buf, "%llds", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else if (t < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, t % 3600 / 60);
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
  return buf;
}

std::string progress_bar(double frac, int width) {
  const int filled = std::clamp(static_cast<int>(frac * width), 0, width);
  std::string bar(static_cast<size_t>(width) + 2, '.');
  bar.front() = '[';
  bar.back() = ']';
  std::fill_n(bar.begin() + 1, filled, '#');
  return bar;
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void StatusLine::show(const std::string& text) {
  if (!live_) return;
  // \r returns to the line start and ESC[K clears the old text, so the line is redrawn in place.
  std::fprintf(stderr, "\r\033[K%s", text.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void StatusLine::clear() {
  if (!live_ || !shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), line_(enabled && stderr_is_terminal()),
      t0_(std::chrono::steady_clock::now()), last_(t0_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, int64_t docs, int64_t tokens) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  // A terminal is redrawn ten times a second; a log gets a line every ten seconds.
  auto period = line_.live() ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000);
  if (now - last_ < period) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - t0_).count();
  double frac = total_ > 0 ? std::min(1.0, double(done) / double(total_)) : 0.0;
  std::string stats = human_bytes(double(done)) + "/" + human_bytes(double(total_)) + ", " +
                      human_count(double(docs)) + " docs";
  if (tokens >= 0)
    stats += ", " + human_count(double(tokens)) + " tokens, " + human_count(tokens / std::max(secs, 1e-9)) + " tok/s";
  if (frac > 0.001) stats += ", ETA " + format_duration(secs * (1 - frac) / frac);
  if (line_.live()) {
    char pct[16];
    std::snprintf(pct, sizeof pct, "%5.1f%%", 100 * frac);
    line_.show(label_ + " " + progress_bar(frac) + " " + pct + "  " + stats);
  } else {
    spdlog::info("{}: {:.1f}% ({})", label_, 100 * frac, stats);
  }
}

void Progress::finish() { line_.clear(); }

}  // namespace ttt
