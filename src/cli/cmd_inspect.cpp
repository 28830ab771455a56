// `yocotron inspect --config RECIPE`: the KV plan, parameter counts and KV-cache bytes of a recipe.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/kv_plan.h"
#include "yocotron/kv_plan_json.h"

namespace yt::cli {
namespace {

std::string thousands(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (v < 0 ? 1 : 0); i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

int inspect_recipe(const std::string& path, const std::vector<std::string>& sets, bool as_json) {
  Config cfg = load_config(path, sets);
  const ModelConfig& m = cfg.model;
  KvPlan plan = make_kv_plan(m);
  ModelConfig plain = m;
  plain.arch = "transformer";
  int64_t kv = plan.kv_cache_bytes_per_token(m.head_dim(), 2);
  int64_t kv_plain = make_kv_plan(plain).kv_cache_bytes_per_token(m.head_dim(), 2);
  ParamCounts pc = count_parameters(m, plan);
  double ratio = static_cast<double>(kv) / static_cast<double>(kv_plain);
  if (as_json) {
    nlohmann::json j = {{"recipe", path},
                        {"arch", m.arch},
                        {"params", pc.total},
                        {"params_non_embedding", pc.non_embedding},
                        {"params_kv_weights", pc.kv_weights},
                        {"kv_cache_bytes_per_token", kv},
                        {"kv_cache_dtype", "bf16"},
                        {"kv_cache_vs_transformer", ratio},
                        {"layers", plan_to_json(plan)}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "recipe       " << path << "\n"
            << "arch         " << m.arch << ": " << find_architecture(m.arch)->summary << "\n"
            << "shape        L=" << m.n_layers << " d_model=" << m.d_model << " heads=" << m.n_heads
            << " kv_heads=" << m.n_kv_heads << " head_dim=" << m.head_dim() << " d_ffn=" << m.d_ffn
            << " vocab=" << m.vocab_size << "\n"
            << "parameters   " << thousands(pc.total) << " total, " << thousands(pc.non_embedding)
            << " non-embedding (without the input embedding and the untied head)";
  if (pc.kv_weights) std::cout << ", " << thousands(pc.kv_weights) << " of them KV mixing weights";
  std::ostringstream r;
  r << std::fixed << std::setprecision(3) << ratio;
  std::cout << "\nKV cache     " << thousands(kv) << " bytes/token in bf16 (" << r.str() << " x transformer)\n\n";
  std::cout << "layer  W_K heads  W_V heads  K from                   V from                   cached K/V heads\n";
  for (const auto& l : plan.layers) {
    std::cout << std::setw(5) << l.layer + 1 << "  " << std::setw(9) << l.own_k_heads << "  " << std::setw(9)
              << l.own_v_heads << "  " << std::left << std::setw(23) << describe(l.k) << "  " << std::setw(23)
              << describe(l.v) << std::right << "  " << l.cached_k_heads << "/" << l.cached_v_heads << "\n";
  }
  return 0;
}

}  // namespace

int run_inspect(const Args& args) {
  ArgParser p("inspect", "Describe a recipe's model: the per-layer KV plan (which layers own K/V projections,\n"
                         "which reuse, mix or fuse whose), parameter counts and KV-cache bytes per token.");
  p.option("--config", "RECIPE", "the recipe to describe")
      .option("--set", "SECTION.KEY=VALUE", "override one key (repeatable)", true)
      .flag("--json", "print JSON (params, params_non_embedding, kv_cache_bytes_per_token, layers, ...)");
  if (!p.parse(args)) return 0;
  if (!p.has("--config")) throw UsageError("missing --config RECIPE");
  return inspect_recipe(p.get("--config"), p.all("--set"), p.has("--json"));
}

}  // namespace yt::cli
