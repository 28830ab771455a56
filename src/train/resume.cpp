#include <filesystem>
#include <set>

#include "yocotron/str.h"
#include "yocotron/trainer.h"

namespace yt {

std::string resolve_run_dir(const RunOptions& opts, const Config& cfg) {
  if (!opts.run_dir.empty()) return opts.run_dir;
  if (!cfg.log.run_dir.empty()) return cfg.log.run_dir;
  return (std::filesystem::path("runs") / std::filesystem::path(opts.recipe).stem()).string();
}

void compare_for_resume(const Config& saved, const Config& now, std::vector<std::string>& errors,
                        std::vector<std::string>& warnings) {
  // Keys that do not change the function the weights compute.
  static const std::set<std::string> free_model_keys = {"model.init_from", "model.attention"};
  auto a = flatten(saved), b = flatten(now);
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& [key, was] = a[i];
    const std::string& is = b[i].second;
    if (was == is || starts_with(key, "parallel.") || starts_with(key, "log.")) continue;
    if (starts_with(key, "model.") && !free_model_keys.count(key)) {
      errors.push_back(cat(key, "=", is, " but the checkpoint was trained with ", key, "=", was,
                           " (the model's shape and architecture cannot change on resume)"));
    } else if (!free_model_keys.count(key)) {
      warnings.push_back(cat(key, " changed since the checkpoint: ", was, " -> ", is));
    }
  }
}

}  // namespace yt
