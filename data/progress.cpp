// data/progress.cpp — see progress.h.
#include "data/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

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

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1),
      t0_(std::chrono::steady_clock::now()), last_(t0_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, int64_t docs, int64_t tokens) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  // A terminal is redrawn ten times a second; a log gets a line every ten seconds.
  auto period = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000);
  if (now - last_ < period) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - t0_).count();
  double frac = total_ > 0 ? std::min(1.0, double(done) / double(total_)) : 0.0;
  std::string stats = human_bytes(double(done)) + "/" + human_bytes(double(total_)) + ", " +
                      human_count(double(docs)) + " docs";
  if (tokens >= 0)
    stats += ", " + human_count(double(tokens)) + " tokens, " + human_count(tokens / std::max(secs, 1e-9)) + " tok/s";
  if (frac > 0.001) {
    int eta = static_cast<int>(secs * (1 - frac) / frac);
    char buf[32];
    std::snprintf(buf, sizeof buf, ", ETA %d:%02d", eta / 60, eta % 60);
    stats += buf;
  }
  if (tty_) {
    // \r returns to the line start and ESC[K clears the old text, so the line is redrawn in place.
    constexpr int kWidth = 24;
    int fill = static_cast<int>(frac * kWidth);
    std::string bar = std::string(fill, '#') + std::string(kWidth - fill, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %5.1f%%  %s", label_.c_str(), bar.c_str(), 100 * frac, stats.c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else {
    spdlog::info("{}: {:.1f}% ({})", label_, 100 * frac, stats);
  }
}

void Progress::finish() {
  if (enabled_ && tty_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace ttt
