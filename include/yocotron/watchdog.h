// The hang watchdog: a thread that watches every collective in flight. One that has not finished
// within parallel.timeout_s, or an asynchronous NCCL error, ends this process with a message naming
// the rank and the collective (after aborting NCCL communicators); mpirun then ends the other ranks.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace yt {

class Watchdog {
 public:
  static Watchdog& get();
  // Starts the thread (idempotent). Until started, collectives are not timed.
  void start(double timeout_s, int world_rank);
  // `done` (optional) is polled by the watchdog thread (e.g. a CUDA event query); without it the
  // collective ends at end(id).
  uint64_t begin(const std::string& what, std::function<bool()> done = nullptr);
  void end(uint64_t id);
  // Called before the process exits on a timeout or error (abort NCCL communicators).
  void on_abort(std::function<void()> hook);
  // Polled with the in-flight checks; a non-empty result is a fatal asynchronous error.
  void add_error_check(std::function<std::string()> check);
  void set_timeout(double timeout_s);
  // Stops watching and joins the thread (before CUDA, NCCL and MPI are torn down at exit).
  void stop();

 private:
  Watchdog() = default;
  void loop();
  [[noreturn]] void fail(const std::string& why);
  struct Impl;
  Impl* impl();
};

}  // namespace yt
