#include "yocotron/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

#include "yocotron/str.h"

namespace yt {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    const char msg[] = "\nyocotron: second signal, exiting now without a checkpoint\n";
    ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

bool stop_requested() { return g_signal.load() != 0; }
int stop_signal_number() { return g_signal.load(); }

void throw_if_stop_requested(const std::string& doing) {
  if (int sig = g_signal.load()) throw Stopped(cat("stopped by signal ", sig, " while ", doing, "; nothing was written"));
}

}  // namespace yt
