// trainer/signals.cpp — see signals.h. The handler only touches lock-free atomics and sigaction
// (async-signal-safe).
#include "trainer/signals.h"

#include <atomic>
#include <csignal>

namespace ttt {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
struct sigaction g_old_int, g_old_term;

void on_signal(int sig) {
  if (g_stop.load() && sig == SIGINT) {
    // Second Ctrl-C: give up on the graceful stop.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, nullptr);
    std::raise(SIGINT);
    return;
  }
  g_signal.store(sig);
  g_stop.store(true);
}

}  // namespace

StopSignals::StopSignals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool stop_requested() { return g_stop.load(); }
int stop_signal() { return g_signal.load(); }
void request_stop() { g_stop.store(true); }
void clear_stop_request() {
  g_stop.store(false);
  g_signal.store(0);
}

}  // namespace ttt
