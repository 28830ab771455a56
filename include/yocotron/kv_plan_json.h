// The KV plan as JSON (for `yocotron inspect --json` and exported config.json files).
#pragma once
#include <nlohmann/json.hpp>

#include "yocotron/kv_plan.h"

namespace yt {

nlohmann::json plan_to_json(const KvPlan& plan);

}  // namespace yt
