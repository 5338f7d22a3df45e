// Orderly shutdown on SIGTERM / SIGINT without async-signal-unsafe handlers:
// the main thread blocks the signals before starting any thread (so every
// thread inherits the mask) and later waits for one synchronously.
#ifndef PASSERELLE_COMMON_SIGNALS_H_
#define PASSERELLE_COMMON_SIGNALS_H_

#include <csignal>

namespace passerelle {

// Call first thing in main(), before any thread exists.
inline void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
inline int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_SIGNALS_H_
