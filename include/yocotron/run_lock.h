// The run-directory lock: RUN/.lock held with flock(2) for the life of the process, so that two
// trainers never write into one run directory (they would delete each other's checkpoint temporaries
// and replace each other's metrics). The kernel releases the lock when the process ends, however it
// ends, so a run killed with SIGKILL leaves no stale lock. After locking, the holder writes one line
// describing itself into the file ("yocotron train on host H, pid P, since TIME"); the file stays
// when the run ends (its content then describes the last holder; only the kernel's lock counts).
#pragma once
#include <memory>
#include <string>

namespace yt {

class RunDirLock {
 public:
  // Creates `run_dir` if needed and takes the lock without waiting. When another process holds it,
  // returns null and sets *holder to its description ("host H, pid P, since TIME"). On a filesystem
  // without flock (Lustre mounted without -o flock) returns an object that holds nothing and sets
  // *warning to say so. `what` names the holder in the file, e.g. "yocotron train".
  static std::unique_ptr<RunDirLock> try_acquire(const std::string& run_dir, const std::string& what,
                                                 std::string* holder, std::string* warning);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  explicit RunDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace yt
