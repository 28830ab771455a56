// Stopping on a signal (preemption, Ctrl-C): SIGTERM, SIGINT and SIGUSR1 set a flag that long loops
// read between their steps. The trainer reads it between optimizer steps and between evaluation
// batches, then writes its checkpoint; tokenize and export-hf read it between records and tensors,
// then leave nothing behind. Either way the command ends with exit status 75 (kExitStopped,
// EX_TEMPFAIL: "stopped by a signal, run me again"), which launch/slurm.sbatch requeues on.
// SIGUSR1 is there for mpirun: Debian's Open MPI forwards SIGUSR1 to every rank as it is, while a
// SIGTERM sent to mpirun kills the ranks a few seconds later. Not every mpirun forwards it (one
// started with plm=isolated does not), so a trainer also watches a stop file, RUN/STOP, that a
// wrapper can create on any file system the ranks share. A second signal exits at once.
#pragma once
#include <stdexcept>
#include <string>

namespace yt {

constexpr int kExitStopped = 75;  // EX_TEMPFAIL (sysexits.h)

void install_stop_handlers();
// True once a signal has arrived or the watched stop file exists (looked for at most once a second:
// callers ask after every step).
bool stop_requested();
// "signal 10" or "the stop file RUN/STOP": what stop_requested() saw first, for messages.
std::string stop_reason();

// Makes stop_requested() also look for `path` (one rank does; the trainer agrees across ranks).
// A file left there by an earlier run is removed first, with a warning, so it cannot stop this one.
void watch_stop_file(const std::string& path);
// Removes the watched stop file once a stop has been served (the checkpoint is written), so that a
// requeued job runs.
void consume_stop_file();

// What a loop that cannot keep its partial work throws when it sees the flag; run_cli prints its
// message and exits with kExitStopped.
class Stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Stopped("stopped by signal N while DOING; nothing was written") once a signal has arrived.
void throw_if_stop_requested(const std::string& doing);

}  // namespace yt
