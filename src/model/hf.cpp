#include "yocotron/hf.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "yocotron/checkpoint.h"
#include "yocotron/fileio.h"
#include "yocotron/hf_modeling.h"
#include "yocotron/kv_plan.h"
#include "yocotron/kv_plan_json.h"
#include "yocotron/log.h"
#include "yocotron/reader_checks.h"
#include "yocotron/safetensors.h"
#include "yocotron/stop_signal.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string hf_name(const std::string& ours) { return ours == "lm_head.weight" ? ours : "model." + ours; }

std::string our_name(const std::string& hf) { return starts_with(hf, "model.") ? hf.substr(6) : hf; }

json llama_fields(const ModelConfig& m) {
  return {{"hidden_size", m.d_model},
          {"intermediate_size", m.d_ffn},
          {"num_attention_heads", m.n_heads},
          {"num_hidden_layers", m.n_layers},
          {"num_key_value_heads", m.n_kv_heads},
          {"head_dim", m.head_dim()},
          {"vocab_size", m.vocab_size},
          {"max_position_embeddings", m.max_seq_len},
          {"rms_norm_eps", m.norm_eps},
          {"rope_theta", m.rope_theta},
          {"rope_scaling", nullptr},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"mlp_bias", false},
          {"initializer_range", m.init_std},
          {"pretraining_tp", 1},
          {"use_cache", true}};
}

// A plan setting as config.json holds it: a number, a boolean or a string.
json setting_json(const PlanSetting& s) {
  if (s.value == "true" || s.value == "false") return s.value == "true";
  if (s.key == "model.fusedkv.init") return s.value;
  return std::stod(s.value);
}

std::string setting_text(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return format_double(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    throw std::runtime_error(cat(path, ": not valid JSON: ", e.what()));
  }
}

template <class T>
T field(const json& j, const char* key, const std::string& file, const T* fallback = nullptr) {
  if (!j.contains(key) || j.at(key).is_null()) {
    if (fallback) return *fallback;
    throw std::runtime_error(cat(file, ": missing \"", key, "\""));
  }
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw std::runtime_error(cat(file, ": \"", key, "\" has the wrong type: ", j.at(key).dump()));
  }
}

}  // namespace

void export_hf(Decoder& model, const std::string& dir, const HfExportOptions& opts) {
  fs::create_directories(dir);
  const ModelConfig& m = model->config();
  auto state = model->global_state();
  NamedTensors tensors;
  for (auto& [name, t] : model->state_tensors()) {
    (void)t;
    at::Tensor g = state.at(name);
    bool keep_fp32 = model->shard_specs().count(name) ? model->shard_specs().at(name).keep_fp32 : true;
    tensors.emplace_back(hf_name(name), keep_fp32 ? g.to(at::kFloat) : g.to(opts.dtype));
  }
  // A stop signal between tensors abandons model.safetensors (it appears whole or not at all) and
  // config.json is not written. Test hook: YOCOTRON_TEST_EXPORT_TENSOR_SECS=S makes each tensor's
  // write S seconds longer (a large model).
  const char* pause = std::getenv("YOCOTRON_TEST_EXPORT_TENSOR_SECS");
  save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}}, [&] {
    if (pause) std::this_thread::sleep_for(std::chrono::duration<double>(std::stod(pause)));
    throw_if_stop_requested(cat("exporting to ", opts.shown_as.empty() ? dir : opts.shown_as));
  });

  json cfg = llama_fields(m);
  cfg["torch_dtype"] = opts.dtype == at::kBFloat16 ? "bfloat16" : "float32";
  if (m.arch == "transformer") {
    cfg["architectures"] = {"LlamaForCausalLM"};
    cfg["model_type"] = "llama";
  } else if (model->plan().has_global_kv()) {
    // The original YOCO family (window / retention self-decoder, global K^/V^) has no transformers
    // modeling code yet: yocotron itself reads the export (generate, eval, init_from hf:).
    cfg["architectures"] = {"YocotronForCausalLM"};
    cfg["model_type"] = "yocotron";
    cfg["yocotron_arch"] = m.arch;
    for (const auto& s : plan_settings(m)) cfg[s.hf_key] = setting_json(s);
    log::warn("export-hf: ", m.arch, " has no transformers modeling code (yet): this export is for yocotron's own "
              "hf: sources (generate, eval, init_from); transformers cannot load it");
  } else {
    // transformers loads these with trust_remote_code: our modeling file rebuilds the KV plan from
    // yocotron_arch and the plan settings below (hf_modeling.h).
    cfg["architectures"] = {"YocotronForCausalLM"};
    cfg["model_type"] = "yocotron";
    cfg["auto_map"] = {{"AutoConfig", "configuration_yocotron.YocotronConfig"},
                       {"AutoModelForCausalLM", "modeling_yocotron.YocotronForCausalLM"}};
    cfg["yocotron_arch"] = m.arch;
    for (const auto& s : plan_settings(m)) cfg[s.hf_key] = setting_json(s);
    cfg["use_cache"] = false;  // the modeling file runs every position each call (no KV cache)
    for (const auto& f : hf_modeling_files()) write_text_file_atomic((fs::path(dir) / f.name).string(), f.text);
  }
  Config whole;  // a complete, valid recipe around the model section
  whole.model = m;
  whole.data.seq_len = std::min(whole.data.seq_len, m.max_seq_len);
  cfg["yocotron"] = {{"arch", m.arch}, {"config_yaml", to_yaml(whole)}, {"kv_plan", plan_to_json(model->plan())}};
  write_text_file_atomic((fs::path(dir) / "config.json").string(), cfg.dump(2) + "\n");

  if (opts.sample_tokens > 0) {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(opts.sample_seed);
    auto ids = at::randint(0, m.vocab_size, {2, opts.sample_tokens}, gen, at::kLong);
    auto device = model->parameters().front().device();
    auto logits = model->forward(ids.to(device)).to(at::kFloat).narrow(-1, 0, m.vocab_size);
    save_safetensors((fs::path(dir) / "yocotron_sample.safetensors").string(),
                     {{"input_ids", ids}, {"logits", logits}}, {{"format", "pt"}});
  }
}

ModelConfig model_config_from_hf(const std::string& dir) {
  std::string file = (fs::path(dir) / "config.json").string();
  json j = read_json(file);
  if (j.contains("yocotron") && j["yocotron"].contains("config_yaml")) {
    ModelConfig m = config_from_yaml(j["yocotron"]["config_yaml"].get<std::string>(), {}, file).model;
    // transformers reads the top-level fields, we read the embedded recipe: both must say the same.
    std::vector<std::string> problems;
    auto check = [&](const std::string& key, const std::string& recipe_key, const std::string& ours) {
      if (!j.contains(key)) return;  // older exports: the recipe alone
      std::string theirs = setting_text(j[key]);
      if (theirs != ours)
        problems.push_back(cat(file, ": \"", key, "\" is ", theirs, " but the embedded recipe has ", recipe_key, "=", ours,
                               " (edit both or re-export)"));
    };
    check("yocotron_arch", "model.arch", m.arch);
    check("num_hidden_layers", "model.n_layers", std::to_string(m.n_layers));
    check("hidden_size", "model.d_model", std::to_string(m.d_model));
    check("num_attention_heads", "model.n_heads", std::to_string(m.n_heads));
    check("num_key_value_heads", "model.n_kv_heads", std::to_string(m.n_kv_heads));
    check("intermediate_size", "model.d_ffn", std::to_string(m.d_ffn));
    check("vocab_size", "model.vocab_size", std::to_string(m.vocab_size));
    check("rope_theta", "model.rope_theta", format_double(m.rope_theta));
    check("rms_norm_eps", "model.norm_eps", format_double(m.norm_eps));
    for (const auto& s : plan_settings(m)) check(s.hf_key, s.key, s.value);
    if (!problems.empty()) throw ConfigError(problems);
    return m;
  }
  if (!j.is_object()) throw std::runtime_error(cat(file, ": not a JSON object"));
  const std::string type = j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  if (type == "yocotron")
    throw std::runtime_error(cat(file, ": model_type \"yocotron\" but no \"yocotron\" section with the recipe "
                                       "(config_yaml) it needs; export it again with yocotron export-hf"));
  if (type != "llama") throw std::runtime_error(cat(file, ": model_type \"", type, "\" is neither llama nor yocotron"));
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    throw std::runtime_error(cat(file, ": rope_scaling ", j["rope_scaling"].dump(), " is not supported (plain RoPE only)"));
  if (j.value("hidden_act", std::string("silu")) != "silu")
    throw std::runtime_error(cat(file, ": hidden_act must be silu (SwiGLU)"));
  if (j.value("attention_bias", false) || j.value("mlp_bias", false))
    throw std::runtime_error(cat(file, ": attention_bias/mlp_bias are not supported"));
  ModelConfig m;
  m.arch = "transformer";
  m.d_model = field<int64_t>(j, "hidden_size", file);
  m.d_ffn = field<int64_t>(j, "intermediate_size", file);
  m.n_heads = field<int64_t>(j, "num_attention_heads", file);
  m.n_layers = field<int64_t>(j, "num_hidden_layers", file);
  m.n_kv_heads = field<int64_t>(j, "num_key_value_heads", file, &m.n_heads);
  m.vocab_size = field<int64_t>(j, "vocab_size", file);
  const int64_t default_ctx = 2048;
  const double default_eps = 1e-6, default_theta = 10000.0;
  m.max_seq_len = field<int64_t>(j, "max_position_embeddings", file, &default_ctx);
  m.norm_eps = field<double>(j, "rms_norm_eps", file, &default_eps);
  m.rope_theta = field<double>(j, "rope_theta", file, &default_theta);
  Config whole;  // the model's checks, before any division by a head count (the rest stays valid)
  whole.model = m;
  whole.data.seq_len = std::max<int64_t>(1, std::min(whole.data.seq_len, m.max_seq_len));
  std::vector<std::string> problems = validate(whole);
  if (!problems.empty())
    throw ConfigError({cat(file, ": its Llama fields make an invalid model: ", problems.front(),
                           " (model.* named as the recipe key the field maps to)")});
  if (j.contains("head_dim") && !j["head_dim"].is_null() &&
      (!j["head_dim"].is_number_integer() || j["head_dim"].get<int64_t>() != m.head_dim()))
    throw std::runtime_error(cat(file, ": head_dim ", j["head_dim"].dump(), " differs from hidden_size/num_attention_heads"));
  return m;
}

void load_hf_weights(Decoder& model, const std::string& dir) {
  const ModelConfig& ours = model->config();
  ModelConfig theirs = model_config_from_hf(dir);
  std::string file = (fs::path(dir) / "config.json").string();
  std::vector<std::string> problems;
  auto same = [&](const char* key, auto a, auto b, const char* hf_key) {
    if (a != b) problems.push_back(cat("model.init_from: ", key, "=", a, " but ", file, " has ", hf_key, "=", b));
  };
  same("model.arch", ours.arch, theirs.arch, "architecture");
  same("model.n_layers", ours.n_layers, theirs.n_layers, "num_hidden_layers");
  same("model.d_model", ours.d_model, theirs.d_model, "hidden_size");
  same("model.n_heads", ours.n_heads, theirs.n_heads, "num_attention_heads");
  same("model.n_kv_heads", ours.n_kv_heads, theirs.n_kv_heads, "num_key_value_heads");
  same("model.d_ffn", ours.d_ffn, theirs.d_ffn, "intermediate_size");
  same("model.vocab_size", ours.vocab_size, theirs.vocab_size, "vocab_size");
  same("model.rope_theta", ours.rope_theta, theirs.rope_theta, "rope_theta");
  same("model.norm_eps", ours.norm_eps, theirs.norm_eps, "rms_norm_eps");
  if (problems.empty()) {  // same architecture: the settings the weights do not store must agree too
    auto mine = plan_settings(ours), saved = plan_settings(theirs);
    for (size_t i = 0; i < mine.size() && i < saved.size(); ++i)
      if (mine[i].value != saved[i].value)
        problems.push_back(cat("model.init_from: ", mine[i].key, "=", mine[i].value, " but ", file, " has ",
                               saved[i].hf_key, "=", saved[i].value, " (the weights were trained with it; set ",
                               mine[i].key, ": ", saved[i].value, ")"));
  }
  if (!problems.empty()) throw ConfigError(problems);

  std::vector<std::string> files;
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    json idx = read_json(index.string());
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object() || idx["weight_map"].empty())
      throw std::runtime_error(cat(index.string(), ": \"weight_map\" must be a non-empty object of tensor name -> file name"));
    std::set<std::string> unique;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      // Shards sit beside the index: a plain file name, never a path out of the directory.
      if (!it.value().is_string() || !is_plain_file_name(it.value().get<std::string>()))
        throw std::runtime_error(cat(index.string(), ": weight_map[\"", printable(it.key(), 60), "\"] = ",
                                     json_excerpt(it.value()), " is not a file name in ", dir));
      unique.insert(it.value().get<std::string>());
    }
    for (const auto& f : unique) files.push_back((fs::path(dir) / f).string());
  } else {
    files.push_back((fs::path(dir) / "model.safetensors").string());
  }
  std::map<std::string, at::Tensor> tensors;
  for (const auto& f : files) {
    for (auto& [name, t] : load_safetensors(f).tensors) {
      if (ends_with(name, "rotary_emb.inv_freq")) continue;  // older Llama exports carry RoPE tables
      tensors[our_name(name)] = t;
    }
  }
  if (!tensors.count("lm_head.weight") && tensors.count("embed_tokens.weight"))
    tensors["lm_head.weight"] = tensors["embed_tokens.weight"];  // tie_word_embeddings: true
  // Exports made before fixed mixing weights left the state carry them: the recipe's λ (checked
  // above) decides, the stored copy is dropped.
  for (const auto& b : model->named_buffers())
    if (ends_with(b.key(), "_mix")) tensors.erase(b.key());
  model->load_global_state(tensors, dir);
}

std::string resolve_checkpoint_path(const std::string& path) {
  if (fs::exists(fs::path(path) / "manifest.json")) return path;
  std::vector<std::string> skipped;
  auto newest = newest_valid_checkpoint((fs::path(path) / "checkpoints").string(), &skipped);
  if (newest) return *newest;
  throw std::runtime_error(cat(path, ": neither a checkpoint directory nor a run directory with a valid checkpoint",
                               skipped.empty() ? "" : " (" + join(skipped, "; ") + ")"));
}

void apply_init_from(Decoder& model, const std::string& init_from) {
  if (init_from.empty()) return;
  if (starts_with(init_from, "hf:")) return load_hf_weights(model, init_from.substr(3));
  if (starts_with(init_from, "checkpoint:")) {
    LoadedCheckpoint ck = load_checkpoint(resolve_checkpoint_path(init_from.substr(11)));
    ModelConfig theirs = config_from_yaml(ck.state.config_yaml, {}, ck.dir + "/config.yaml").model;
    std::vector<std::string> problems;
    for (const auto& d : model_differences(theirs, model->config()))
      problems.push_back(cat("model.init_from=", init_from, ": ", d.key, "=", d.is, " but the checkpoint's model (",
                             ck.dir, "/config.yaml) has ", d.key, "=", d.was));
    if (!problems.empty()) throw ConfigError(problems);
    return model->load_global_state(ck.tensors.model, ck.dir);
  }
  throw std::runtime_error(cat("model.init_from: expected hf:DIR or checkpoint:DIR, found '", init_from, "'"));
}

}  // namespace yt
