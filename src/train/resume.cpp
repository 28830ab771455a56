#include <filesystem>

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
  for (const auto& d : model_differences(saved.model, now.model))
    errors.push_back(cat(d.key, "=", d.is, " but the checkpoint was trained with ", d.key, "=", d.was,
                         " (the model's shape and architecture cannot change on resume)"));
  auto a = flatten(saved), b = flatten(now);
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& [key, was] = a[i];
    const std::string& is = b[i].second;
    if (was == is || starts_with(key, "model.") || starts_with(key, "parallel.") || starts_with(key, "log.")) continue;
    warnings.push_back(cat(key, " changed since the checkpoint: ", was, " -> ", is));
  }
}

}  // namespace yt
