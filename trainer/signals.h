// trainer/signals.h — graceful stop: SIGINT/SIGTERM set a flag that the train loop checks after
// each optimizer step (it then saves a checkpoint and exits 0). A second SIGINT while stopping
// restores the default action, so Ctrl-C twice kills the process at once.
#pragma once

namespace ttt {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

bool stop_requested();
int stop_signal();         // the signal that asked to stop (0 if none or requested in code)
void request_stop();       // as if a signal had arrived (tests, time limits)
void clear_stop_request();

}  // namespace ttt
