#include "yocotron/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "yocotron/log.h"
#include "yocotron/str.h"

namespace yt {

using Clock = std::chrono::steady_clock;

struct Watchdog::Impl {
  std::mutex mu;
  double timeout_s = 300;
  int rank = 0;
  bool started = false;
  bool stopping = false;
  uint64_t next_id = 1;
  struct Entry {
    std::string what;
    Clock::time_point start;
    std::function<bool()> done;
  };
  std::map<uint64_t, Entry> in_flight;
  std::vector<std::function<void()>> abort_hooks;
  std::vector<std::function<std::string()>> error_checks;
  std::thread thread;
};

Watchdog& Watchdog::get() {
  static Watchdog w;
  return w;
}

Watchdog::Impl* Watchdog::impl() {
  static Impl* i = new Impl;  // never destroyed: the thread may outlive static destruction
  return i;
}

void Watchdog::start(double timeout_s, int world_rank) {
  Impl* s = impl();
  std::lock_guard<std::mutex> g(s->mu);
  s->timeout_s = timeout_s;
  s->rank = world_rank;
  if (s->started) return;
  s->started = true;
  s->stopping = false;
  s->thread = std::thread([this] { loop(); });
}

void Watchdog::stop() {
  Impl* s = impl();
  {
    std::lock_guard<std::mutex> g(s->mu);
    if (!s->started) return;
    s->stopping = true;
  }
  if (s->thread.joinable()) s->thread.join();
  std::lock_guard<std::mutex> g(s->mu);
  s->started = false;
  s->in_flight.clear();
  s->error_checks.clear();
  s->abort_hooks.clear();
}

void Watchdog::set_timeout(double timeout_s) {
  std::lock_guard<std::mutex> g(impl()->mu);
  impl()->timeout_s = timeout_s;
}

uint64_t Watchdog::begin(const std::string& what, std::function<bool()> done) {
  Impl* s = impl();
  std::lock_guard<std::mutex> g(s->mu);
  uint64_t id = s->next_id++;
  if (s->started) s->in_flight[id] = {what, Clock::now(), std::move(done)};
  return id;
}

void Watchdog::end(uint64_t id) {
  std::lock_guard<std::mutex> g(impl()->mu);
  impl()->in_flight.erase(id);
}

void Watchdog::on_abort(std::function<void()> hook) {
  std::lock_guard<std::mutex> g(impl()->mu);
  impl()->abort_hooks.push_back(std::move(hook));
}

void Watchdog::add_error_check(std::function<std::string()> check) {
  std::lock_guard<std::mutex> g(impl()->mu);
  impl()->error_checks.push_back(std::move(check));
}

void Watchdog::fail(const std::string& why) {
  Impl* s = impl();
  log::error(why);
  log::flush();
  for (auto& h : s->abort_hooks) h();
  // Exit without MPI_Finalize: mpirun sees a rank gone and ends the job on every node.
  std::_Exit(3);
}

void Watchdog::loop() {
  Impl* s = impl();
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::string failure;
    {
      std::lock_guard<std::mutex> g(s->mu);
      if (s->stopping) return;
      for (auto& check : s->error_checks) {
        std::string e = check();
        if (!e.empty()) {
          failure = cat("rank ", s->rank, ": ", e);
          break;
        }
      }
      for (auto it = s->in_flight.begin(); failure.empty() && it != s->in_flight.end();) {
        if (it->second.done && it->second.done()) {
          it = s->in_flight.erase(it);
          continue;
        }
        double waited = std::chrono::duration<double>(Clock::now() - it->second.start).count();
        if (waited > s->timeout_s)
          failure = cat("rank ", s->rank, ": collective ", it->second.what, " has not finished after ", waited,
                        " s (parallel.timeout_s=", s->timeout_s, "): a peer rank died or is stuck; ending this rank");
        ++it;
      }
    }
    if (!failure.empty()) fail(failure);
  }
}

}  // namespace yt
