#include "yocotron/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <system_error>

#include "yocotron/config.h"
#include "yocotron/log.h"

#include "yocotron/str.h"

namespace yt {
namespace {

std::atomic<int> g_signal{0};

std::string g_stop_file;  // empty: none watched
bool g_stop_file_seen = false;
std::chrono::steady_clock::time_point g_next_look{};

bool stop_file_present() {
  if (g_stop_file.empty()) return false;
  if (g_stop_file_seen) return true;
  auto now = std::chrono::steady_clock::now();
  if (now < g_next_look) return false;
  g_next_look = now + std::chrono::seconds(1);
  std::error_code ec;  // any entry named STOP counts, a dangling symlink included (`ln -s x STOP`)
  g_stop_file_seen = std::filesystem::exists(std::filesystem::symlink_status(g_stop_file, ec));
  return g_stop_file_seen;
}

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    const char msg[] = "\nyocotron: second signal, exiting at once (what the first stop had not yet written is lost)\n";
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

bool stop_requested() { return g_signal.load() != 0 || stop_file_present(); }

std::string stop_reason() {
  if (int sig = g_signal.load()) return cat("signal ", sig);
  if (g_stop_file_seen) return cat("the stop file ", g_stop_file);
  return "another rank";
}

void watch_stop_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::remove(path, ec))
    log::warn(path, " was left by an earlier stop; removed it so that it does not stop this run");
  else if (std::filesystem::exists(std::filesystem::symlink_status(path, ec)))  // a non-empty directory
    throw ConfigError({cat(path, " was left by an earlier stop and cannot be removed (",
                           std::filesystem::is_directory(std::filesystem::symlink_status(path, ec)) ? "a non-empty directory" : "permission",
                           "); remove it, or it would stop every run at once")});
  g_stop_file = path;
  g_stop_file_seen = false;
  g_next_look = {};
}

void consume_stop_file() {
  if (g_stop_file.empty()) return;
  std::error_code ec;  // whichever came first, signal or file, the request is served
  std::filesystem::remove(g_stop_file, ec);
}

void throw_if_stop_requested(const std::string& doing) {
  if (stop_requested()) throw Stopped(cat("stopped by ", stop_reason(), " while ", doing, "; nothing was written"));
}

}  // namespace yt
