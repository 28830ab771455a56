// Graceful stop on SIGTERM/SIGINT (preemption under SLURM, Ctrl-C): the first signal asks the
// trainer to finish the current step, checkpoint and exit 0; a second one exits at once.
#pragma once

namespace yt {

void install_stop_handlers();
bool stop_requested();
int stop_signal_number();  // the first signal received, 0 if none

}  // namespace yt
