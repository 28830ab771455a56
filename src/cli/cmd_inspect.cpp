// `yocotron inspect --config RECIPE`: the KV plan, parameter counts and KV-cache bytes of a recipe;
// `inspect SHARD_OR_DATASET`: token shard headers, verified; `inspect RUN --kv-weights`: learned KV weights.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/kv_plan.h"
#include "yocotron/dataset.h"
#include "yocotron/fileio.h"
#include "yocotron/flops.h"
#include "yocotron/kv_plan_json.h"
#include "yocotron/kv_weights.h"
#include "yocotron/kv_weights_report.h"
#include "yocotron/str.h"

namespace yt::cli {
namespace {
namespace fs = std::filesystem;

template <class T>
std::string thousands(T v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) s.insert(static_cast<size_t>(i), ",");
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
  // Windows and retention states: per sequence, whatever its length.
  const int64_t kv_constant = plan.kv_cache_constant_bytes(m.head_dim(), m.n_heads, 2);
  const double flops = flops_per_token(m, cfg.data.seq_len);
  if (as_json) {
    nlohmann::json j = {{"recipe", path},
                        {"arch", m.arch},
                        {"params", pc.total},
                        {"params_non_embedding", pc.non_embedding},
                        {"params_kv_weights", pc.kv_weights},
                        {"kv_cache_bytes_per_token", kv},
                        {"kv_cache_dtype", "bf16"},
                        {"kv_cache_vs_transformer", ratio},
                        {"kv_cache_constant_bytes", kv_constant},
                        {"loops", plan.loops},
                        {"train_flops_per_token", flops},
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
  std::cout << "\nKV cache     " << thousands(kv) << " bytes/token in bf16 (" << r.str() << " x transformer)";
  if (plan.has_global_kv()) {
    const bool retention = plan.layers.front().mixer == Mixer::Retention;
    std::cout << " + " << thousands(kv_constant) << " bytes/sequence constant ("
              << (retention ? "retention states in fp32" : "window caches in bf16") << ")";
  }
  std::cout << "\nFLOPs        " << std::setprecision(4) << flops / 1e9 << " GFLOP/token to train at seq_len "
            << cfg.data.seq_len;
  if (plan.loops > 1) std::cout << " (self-decoder counted " << plan.loops << " times)";
  std::cout << "\n\n";
  std::cout << "layer  mixer          W_K heads  W_V heads  K from                   V from                   cached K/V heads\n";
  for (const auto& l : plan.layers) {
    std::string mixer = l.mixer == Mixer::Retention ? "retention" : l.window > 0 ? cat("window ", l.window) : "attention";
    if (l.loop_group >= 0 && plan.loops > 1) mixer += cat(" x", plan.loops);
    if (!l.rope) mixer += " noPE";
    std::cout << std::setw(5) << l.layer + 1 << "  " << std::left << std::setw(13) << mixer << std::right << "  "
              << std::setw(9) << l.own_k_heads << "  " << std::setw(9)
              << l.own_v_heads << "  " << std::left << std::setw(23) << describe(l.k) << "  " << std::setw(23)
              << describe(l.v) << std::right << "  " << l.cached_k_heads << "/" << l.cached_v_heads << "\n";
  }
  return 0;
}

nlohmann::json shard_json(const Shard& s) {
  const ShardHeader& h = s.header();
  return {{"file", s.path()},        {"version", h.version},   {"token_dtype", h.token_bytes == 2 ? "uint16" : "uint32"},
          {"tokens", h.n_tokens},    {"docs", h.n_docs},       {"vocab_size", h.vocab_size},
          {"tokenizer_fingerprint", hex64(h.tokenizer_fingerprint)},
          {"payload_crc32c", h.payload_crc32c}, {"verified", true}};
}

// A shard file, or a dataset directory (manifest.json + split directories): every shard is opened
// and verified (sizes, checksums, token ids); the first problem is an error naming the file.
int inspect_data(const std::string& path, bool as_json) {
  nlohmann::json out;
  if (fs::is_directory(path)) {
    fs::path manifest = fs::path(path) / "manifest.json";
    if (!fs::exists(manifest)) throw std::runtime_error(cat(path, ": not a dataset directory (no manifest.json)"));
    DatasetManifest m = read_dataset_manifest(manifest.string());  // validated; errors name the field
    out = {{"dataset", path}, {"tokenizer", nlohmann::json::parse(m.tokenizer_json)}, {"splits", nlohmann::json::object()}};
    for (const auto& [split, entries] : m.splits) {
      auto ds = TokenDataset::open((fs::path(path) / split).string(), /*verify=*/true);
      nlohmann::json shards = nlohmann::json::array();
      for (const auto& s : ds->shards()) shards.push_back(shard_json(s));
      out["splits"][split] = {{"tokens", ds->n_tokens()}, {"docs", ds->n_docs()}, {"shards", shards}};
    }
  } else {
    Shard s(path, /*verify_payload=*/true);
    out = shard_json(s);
  }
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  auto print_shard = [](const nlohmann::json& s) {
    std::cout << "  " << s["file"].get<std::string>() << ": " << thousands(s["tokens"].get<uint64_t>()) << " tokens ("
              << s["token_dtype"].get<std::string>() << "), " << thousands(s["docs"].get<uint64_t>()) << " docs, vocab "
              << s["vocab_size"] << ", tokenizer " << s["tokenizer_fingerprint"].get<std::string>() << ", crc32c ok\n";
  };
  if (out.contains("dataset")) {
    std::cout << "dataset " << path << ": tokenizer " << out["tokenizer"]["file"].get<std::string>() << " (vocab "
              << out["tokenizer"]["vocab_size"] << ", fingerprint " << out["tokenizer"]["fingerprint"].get<std::string>()
              << ")\n";
    for (auto it = out["splits"].begin(); it != out["splits"].end(); ++it) {
      std::cout << it.key() << ": " << thousands(it.value()["tokens"].get<uint64_t>()) << " tokens, "
                << thousands(it.value()["docs"].get<uint64_t>()) << " docs, " << it.value()["shards"].size()
                << " shards, all verified\n";
      for (const auto& s : it.value()["shards"]) print_shard(s);
    }
  } else {
    print_shard(out);
  }
  return 0;
}

// A run's (or checkpoint's) learned KV mixing weights per layer; a bad path is one line, exit 2.
int inspect_kv_weights(const std::string& path, bool as_json, const std::string& svg) {
  const fs::path svg_dir = fs::path(svg).parent_path();
  if (!svg.empty() && !svg_dir.empty() && !fs::is_directory(svg_dir))
    throw ConfigError({cat("--svg ", svg, ": directory ", svg_dir.string(), " does not exist")});
  const KvWeights w = read_kv_weights(path);
  if (!svg.empty() && !w.mixes.empty()) write_text_file_atomic(svg, kv_weights_chart_svg(w));
  if (as_json) std::cout << kv_weights_json(w).dump(2) << "\n";
  else std::cout << kv_weights_text(w);
  if (!svg.empty()) std::cerr << (w.mixes.empty() ? "--svg: no chart written (no mixing weights to draw)" : "wrote " + svg) << "\n";
  return 0;
}

}  // namespace

int run_inspect(const Args& args) {
  ArgParser p("inspect", "Describe a recipe's model: the per-layer KV plan (which layers own K/V projections,\n"
                         "which reuse, mix or fuse whose), parameter counts and KV-cache bytes per token.\n"
                         "Or, given a token shard or a dataset directory, print its header(s) and verify sizes,\n"
                         "checksums and token ids (exit 1 naming the first bad file).\n"
                         "Or, with --kv-weights and a run or checkpoint directory, print the learned KV mixing\n"
                         "weights per layer at its newest valid checkpoint (YOCO++, FusedKV, ResFormer).");
  p.positional("SHARD_OR_DATASET", "a .bin shard or a dataset directory made by `yocotron tokenize` "
                                   "(with --kv-weights: a run or checkpoint directory)", false)
      .option("--config", "RECIPE", "the recipe to describe")
      .option("--set", "SECTION.KEY=VALUE", "override one key (repeatable)", true)
      .flag("--json", "print JSON (params, params_non_embedding, kv_cache_bytes_per_token, layers, ...)")
      .flag("--kv-weights", "the learned KV mixing weights per layer of RUN_DIR|CHECKPOINT_DIR (effective values)")
      .option("--svg", "FILE", "with --kv-weights: also draw them (x = layer, a line per weight)");
  if (!p.parse(args)) return 0;
  if (p.has("--svg") && !p.has("--kv-weights")) throw UsageError("--svg FILE draws the weights of --kv-weights; add --kv-weights");
  if (p.has("--kv-weights")) {
    if (p.has("--config") || p.has("--set")) throw UsageError("--kv-weights reads a run or checkpoint directory, not --config/--set");
    if (p.positionals().empty()) throw UsageError("--kv-weights needs a RUN_DIR or CHECKPOINT_DIR");
    return inspect_kv_weights(p.positionals()[0], p.has("--json"), p.get("--svg"));
  }
  if (!p.positionals().empty()) {
    if (p.has("--config")) throw UsageError("give either --config RECIPE or SHARD_OR_DATASET, not both");
    return inspect_data(p.positionals()[0], p.has("--json"));
  }
  if (!p.has("--config")) throw UsageError("missing --config RECIPE (or a SHARD_OR_DATASET)");
  return inspect_recipe(p.get("--config"), p.all("--set"), p.has("--json"));
}

}  // namespace yt::cli
