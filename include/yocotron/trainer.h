// `yocotron train`: one training run from a recipe, into a run directory, resumable.
#pragma once
#include <string>
#include <vector>

#include "yocotron/config.h"

namespace yt {

struct RunOptions {
  std::string recipe;
  std::vector<std::string> overrides;
  std::string run_dir;          // "" = log.run_dir, else runs/<recipe stem>
  std::string resume = "auto";  // auto | none | PATH of a checkpoint directory or a run directory
};

// Returns the process exit code: 0 when the run finished or stopped after train.exit_after_steps,
// kExitStopped (75) when a stop signal ended it (both with a checkpoint); 1 on a runtime error, 2 on
// bad input (a recipe, ranks that disagree, a run directory in use, data too small), with a message.
int run_training(const RunOptions& opts);

// The run directory a recipe trains into.
std::string resolve_run_dir(const RunOptions& opts, const Config& cfg);

// What may change between the run that wrote a checkpoint and the run resuming it: the model's
// shape and architecture may not (errors naming the keys); everything else may, with a warning.
void compare_for_resume(const Config& saved, const Config& now, std::vector<std::string>& errors,
                        std::vector<std::string>& warnings);

}  // namespace yt
