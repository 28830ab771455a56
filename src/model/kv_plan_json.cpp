#include "yocotron/kv_plan_json.h"

namespace yt {
namespace {

const char* kind_name(KvCombine k) {
  switch (k) {
    case KvCombine::Own: return "own";
    case KvCombine::Reuse: return "reuse";
    case KvCombine::ScalarMix: return "scalar_mix";
    case KvCombine::VectorMix: return "vector_mix";
    case KvCombine::HeadSplice: return "head_splice";
    case KvCombine::Global: return "global";
  }
  return "?";
}

nlohmann::json source_json(const KvSource& s) {
  nlohmann::json j = {{"kind", kind_name(s.kind)}, {"describe", describe(s)}};
  if (s.from >= 0 && s.kind != KvCombine::Global) j["from_layer"] = s.from + 1;  // 1-based, as in the papers
  if (s.from2 >= 0) j["from_layer2"] = s.from2 + 1;
  if (s.has_weights()) {
    j["scale"] = s.scale;
    j["learnable"] = s.learnable;
    j["weight_decay"] = s.weight_decay;
    if (s.random_init) j["init"] = "normal(0,1)";
    else j["init"] = {s.w0_init, s.w1_init};
  }
  return j;
}

}  // namespace

nlohmann::json plan_to_json(const KvPlan& plan) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : plan.layers) {
    nlohmann::json mixer = l.mixer == Mixer::Retention ? "retention" : l.window > 0 ? "window" : "attention";
    layers.push_back({{"layer", l.layer + 1},
                      {"mixer", mixer},
                      {"window", l.window},
                      {"rope", l.rope},
                      {"loop_group", l.loop_group},
                      {"own_k_heads", l.own_k_heads},
                      {"own_v_heads", l.own_v_heads},
                      {"cached_k_heads", l.cached_k_heads},
                      {"cached_v_heads", l.cached_v_heads},
                      {"k", source_json(l.k)},
                      {"v", source_json(l.v)}});
  }
  return layers;
}

}  // namespace yt
