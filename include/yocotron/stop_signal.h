// Stopping on a signal (preemption, Ctrl-C): SIGTERM, SIGINT and SIGUSR1 set a flag that long loops
// read between their steps. The trainer reads it between optimizer steps and between evaluation
// batches, then writes its checkpoint; tokenize and export-hf read it between records and tensors,
// then leave nothing behind. Either way the command ends with exit status 75 (kExitStopped,
// EX_TEMPFAIL: "stopped by a signal, run me again"), which launch/slurm.sbatch requeues on.
// SIGUSR1 is there for mpirun: it forwards SIGUSR1 to every rank as it is, while a SIGTERM sent to
// mpirun kills the ranks a few seconds later. A second signal exits at once.
#pragma once
#include <stdexcept>
#include <string>

namespace yt {

constexpr int kExitStopped = 75;  // EX_TEMPFAIL (sysexits.h)

void install_stop_handlers();
bool stop_requested();
int stop_signal_number();  // the first signal received, 0 if none

// What a loop that cannot keep its partial work throws when it sees the flag; run_cli prints its
// message and exits with kExitStopped.
class Stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Stopped("stopped by signal N while DOING; nothing was written") once a signal has arrived.
void throw_if_stop_requested(const std::string& doing);

}  // namespace yt
