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

// Returns the process exit code: 0 when the run finished, stopped on a signal or after
// train.exit_after_steps with a checkpoint; non-zero (with a message) otherwise.
int run_training(const RunOptions& opts);

// The run directory a recipe trains into.
std::string resolve_run_dir(const RunOptions& opts, const Config& cfg);

// What may change between the run that wrote a checkpoint and the run resuming it: the model's
// shape and architecture may not (errors naming the keys); everything else may, with a warning.
void compare_for_resume(const Config& saved, const Config& now, std::vector<std::string>& errors,
                        std::vector<std::string>& warnings);

}  // namespace yt
