// Weights of every architecture survive checkpoint -> export-hf -> model.init_from (hf:DIR and
// checkpoint:RUN) with the same logits; the recipe settings the weights do not store must agree
// when loading (an error naming the key); which parameters AdamW decays per recipe key; and the
// files export-hf writes for transformers (modeling files + auto_map, tokenizer_config.json).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/hf.h"
#include "yocotron/model_factory.h"
#include "yocotron/optimizer.h"
#include "yocotron/safetensors.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kArchs = {"transformer", "yoco", "yocopp", "fusedkv", "fusedkv_lite", "cla2", "skipv1", "resformer"};

// A tiny recipe over a synthetic dataset; `extra` goes under model: (indented two spaces).
fs::path write_recipe(const fs::path& dir, const std::string& arch, const std::string& extra = "") {
  std::vector<uint32_t> toks;
  for (int i = 0; i < 2000; ++i) toks.push_back(static_cast<uint32_t>((i * 7 + i / 11) % 40));
  std::string data = fs::exists(dir / "data" / "train") ? (dir / "data" / "train").string()
                                                        : test::make_dataset(dir / "data", "train", {toks}, 40);
  fs::path r = dir / (arch + ".yaml");
  test::write_file(r, "model:\n  arch: " + arch + "\n  n_layers: 4\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                      "  d_ffn: 48\n  vocab_size: 40\n  max_seq_len: 16\n" + extra + "data:\n  train: " + data +
                      "\n  seq_len: 8\ntrain:\n  steps: 3\n  micro_batch: 4\n  global_batch: 4\n  warmup_steps: 1\n"
                      "  lr: 0.02\n");
  return r;
}

std::string arch_extra(const std::string& arch) {
  if (arch == "yocopp") return "  yocopp:\n    scaling_factor: 10.0\n";
  if (arch == "resformer") return "  resformer:\n    lambda1: 0.3\n    lambda2: 0.8\n";  // fixed: the bug's case
  return "";
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST_CASE("every architecture: checkpoint -> export-hf -> init_from hf: and checkpoint: keep the logits", "[hf]") {
  auto dir = test::temp_dir("hf-roundtrip");
  for (const auto& arch : kArchs) {
    INFO(arch);
    fs::path recipe = write_recipe(dir, arch, arch_extra(arch));
    fs::path run = dir / ("run-" + arch), hf = dir / ("hf-" + arch);
    auto t = test::run_yocotron("train --config " + recipe.string() + " --run-dir " + run.string());
    INFO(t.err);
    REQUIRE(t.exit_code == 0);
    auto e = test::run_yocotron("export-hf " + run.string() + " --out " + hf.string() + " --sample-tokens 9");
    INFO(e.err);
    REQUIRE(e.exit_code == 0);

    // The export holds exactly the checkpoint's tensors, bit for bit.
    auto ck = load_checkpoint(resolve_checkpoint_path(run.string()));
    auto exported = load_safetensors((hf / "model.safetensors").string()).tensors;
    CHECK(exported.size() == ck.tensors.model.size());
    for (const auto& [name, t] : ck.tensors.model) {
      INFO(name);
      REQUIRE(exported.count((name == "lm_head.weight" ? "" : "model.") + name));
      CHECK(torch::equal(exported.at((name == "lm_head.weight" ? "" : "model.") + name), t));
    }

    // Both init_from routes rebuild the model that produced the export's logits.
    auto sample = load_safetensors((hf / "yocotron_sample.safetensors").string()).tensors;
    for (const std::string& from : {"checkpoint:" + run.string(), "hf:" + hf.string()}) {
      INFO(from);
      Decoder d = build_decoder(load_config(recipe.string(), {"model.init_from=" + from}));
      torch::NoGradGuard g;
      auto logits = d->forward(sample.at("input_ids")).narrow(-1, 0, 40);
      CHECK((logits - sample.at("logits")).abs().max().item<double>() == 0.0);
    }
  }
}

TEST_CASE("loading weights under other plan settings is an error naming the key", "[hf]") {
  auto dir = test::temp_dir("hf-settings");
  struct Case {
    std::string arch, loaded, key;
  };
  const std::vector<Case> cases = {
      {"yocopp", "model.yocopp.scaling_factor=1", "model.yocopp.scaling_factor=1.0 but"},
      {"resformer", "model.resformer.lambda1=0.7", "model.resformer.lambda1=0.7 but"},
      {"resformer", "model.resformer.learnable=true", "model.resformer.learnable=true but"},
      {"fusedkv", "model.fusedkv.init=lite", "model.fusedkv.init=lite but"},
  };
  for (const auto& c : cases) {
    INFO(c.loaded);
    fs::path recipe = write_recipe(dir, c.arch);
    fs::path out = dir / ("x-" + c.arch);
    REQUIRE(test::run_yocotron("export-hf " + recipe.string() + " --out " + out.string() + " --overwrite").exit_code == 0);
    auto r = test::run_yocotron("export-hf " + recipe.string() + " --set " + c.loaded + " --set model.init_from=hf:" +
                                out.string() + " --out " + (dir / "y").string());
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring(c.key));
    CHECK(lines(r.err) == 1);
    CHECK_THAT(r.err, !ContainsSubstring("frame"));
  }
  // The same through checkpoint:RUN.
  fs::path recipe = write_recipe(dir, "yocopp");
  REQUIRE(test::run_yocotron("train --config " + recipe.string() + " --run-dir " + (dir / "run").string()).exit_code == 0);
  auto r = test::run_yocotron("export-hf " + recipe.string() + " --set model.yocopp.scaling_factor=1 --set model.init_from=checkpoint:" +
                              (dir / "run").string() + " --out " + (dir / "z").string());
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, ContainsSubstring("model.yocopp.scaling_factor=1.0 but the checkpoint's model"));
  CHECK(lines(r.err) == 1);

  // An export whose config.json says one thing to transformers and another to us is refused.
  fs::path out = dir / "x-yocopp";
  auto cfg = json::parse(test::read_file(out / "config.json"));
  CHECK(cfg["yocopp_scaling_factor"] == 35.0);
  cfg["yocopp_scaling_factor"] = 1.0;
  test::write_file(out / "config.json", cfg.dump(2));
  for (const std::string& cmd : {"export-hf hf:" + out.string() + " --out " + (dir / "w").string(),
                                "generate hf:" + out.string() + " --prompt hi"}) {
    INFO(cmd);
    auto g = test::run_yocotron(cmd);
    CHECK(g.exit_code == 2);
    CHECK_THAT(g.err, ContainsSubstring("\"yocopp_scaling_factor\" is 1.0 but the embedded recipe has model.yocopp.scaling_factor=35.0"));
    CHECK(lines(g.err) == 1);
  }
}

TEST_CASE("AdamW decays the KV mixing weights as model.<arch>.weight_decay says", "[hf][optim]") {
  struct Case {
    std::string arch, key;
  };
  for (const Case& c : {Case{"yocopp", "model.yocopp.weight_decay"}, Case{"fusedkv", "model.fusedkv.weight_decay"},
                        Case{"resformer", "model.resformer.weight_decay"}}) {
    for (bool decay : {false, true}) {
      INFO(c.key << "=" << decay);
      Config cfg = config_from_yaml("model:\n  arch: " + c.arch + "\n  n_layers: 4\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                                    "  d_ffn: 48\n  vocab_size: 40\n  max_seq_len: 16\ndata:\n  seq_len: 8\n",
                                    {c.key + "=" + (decay ? "true" : "false"), "model.resformer.learnable=true"});
      Decoder d(cfg.model);
      std::map<std::string, at::Tensor> before;
      for (auto& p : d->named_parameters()) before[p.key()] = p.value().detach().clone();
      TrainConfig tc;
      tc.weight_decay = 0.5;
      FlatAdamW opt(d, tc, at::kFloat);
      opt.zero_grad();  // zero gradients: Adam's step is 0, only decoupled decay moves a weight
      opt.fold_micro_step(true);
      opt.step(0.1, at::ones({}), at::zeros({}));
      int mixes = 0;
      for (auto& p : d->named_parameters()) {
        const std::string& name = p.key();
        INFO(name);
        const bool is_mix = ends_with(name, "_mix"), is_norm = ends_with(name, "norm.weight");
        mixes += is_mix;
        const bool want = is_mix ? decay : !is_norm;  // HF Trainer's default: all but norms and biases
        auto expect = want ? before[name] * (1 - 0.1 * 0.5) : before[name];
        CHECK((p.value() - expect).abs().max().item<double>() <= 1e-7);
      }
      CHECK(mixes > 0);
    }
  }
  // The TinyLlama recipes (the YOCO++ paper's setup) decay them, as the authors' HF Trainer does.
  auto tinyllama = [](const std::string& arch) {
    return load_config(test::source_dir() + "/recipes/tinyllama-1.1b/" + arch + ".yaml").model;
  };
  CHECK(tinyllama("yocopp").yocopp.weight_decay);
  CHECK(tinyllama("fusedkv").fusedkv.weight_decay);
  CHECK(tinyllama("resformer").resformer.weight_decay);  // used when λ is made learnable
}

TEST_CASE("export-hf writes transformers' files: modeling code for non-Llama archs, the tokenizer config", "[hf]") {
  auto dir = test::temp_dir("hf-files");
  const std::string modeling = test::read_file(fs::path(test::source_dir()) / "src/model/hf_modeling/modeling_yocotron.py");
  const std::string configuration = test::read_file(fs::path(test::source_dir()) / "src/model/hf_modeling/configuration_yocotron.py");
  for (const auto& arch : kArchs) {
    INFO(arch);
    fs::path recipe = write_recipe(dir, arch, arch_extra(arch));
    if (arch == "transformer") {  // a dataset tokenized with --bos, and its tokenizer (bytes are only copied)
      auto m = json::parse(test::read_file(dir / "data" / "manifest.json"));
      m["tokenizer"]["add_bos"] = true;
      test::write_file(dir / "data" / "manifest.json", m.dump(2));
      test::write_file(dir / "data" / "tokenizer.model", "not really a sentencepiece model");
    }
    fs::path out = dir / ("out-" + arch);
    auto e = test::run_yocotron("export-hf " + recipe.string() + " --out " + out.string());
    INFO(e.err);
    REQUIRE(e.exit_code == 0);
    auto cfg = json::parse(test::read_file(out / "config.json"));
    CHECK(test::read_file(out / "tokenizer.model") == "not really a sentencepiece model");
    auto tok = json::parse(test::read_file(out / "tokenizer_config.json"));
    CHECK(tok["tokenizer_class"] == "LlamaTokenizer");
    CHECK(tok["add_bos_token"] == true);
    CHECK(tok["add_eos_token"] == false);
    if (arch == "transformer") {
      CHECK(cfg["architectures"] == json::array({"LlamaForCausalLM"}));
      CHECK(!cfg.contains("auto_map"));
      CHECK(!fs::exists(out / "modeling_yocotron.py"));
      CHECK(!fs::exists(out / "configuration_yocotron.py"));
      continue;
    }
    CHECK(cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_yocotron.YocotronForCausalLM");
    CHECK(cfg["auto_map"]["AutoConfig"] == "configuration_yocotron.YocotronConfig");
    CHECK(cfg["yocotron_arch"] == arch);
    CHECK(cfg["use_cache"] == false);
    CHECK(test::read_file(out / "modeling_yocotron.py") == modeling);  // embedded at build time
    CHECK(test::read_file(out / "configuration_yocotron.py") == configuration);
    if (arch == "yocopp") CHECK(cfg["yocopp_scaling_factor"] == 10.0);
    if (arch == "fusedkv") CHECK(cfg["fusedkv_init"] == "normal");
    if (arch == "resformer") {
      CHECK(cfg["resformer_learnable"] == false);
      CHECK(cfg["resformer_lambda1"] == 0.3);
      CHECK(cfg["resformer_lambda2"] == 0.8);
      // Fixed λ are the config's, not tensors.
      CHECK(!load_safetensors((out / "model.safetensors").string()).tensors.count("model.layers.1.self_attn.v_mix"));
    }
  }
}

TEST_CASE("export-hf into a non-empty directory: refused without --overwrite, replaced whole with it", "[hf]") {
  auto dir = test::temp_dir("hf-overwrite");
  fs::path out = dir / "hf";
  fs::path yocopp = write_recipe(dir, "yocopp", arch_extra("yocopp")), transformer = write_recipe(dir, "transformer");
  REQUIRE(test::run_yocotron("export-hf " + yocopp.string() + " --out " + out.string()).exit_code == 0);
  REQUIRE(fs::exists(out / "modeling_yocotron.py"));
  test::write_file(out / "notes.txt", "mine");
  const std::string before = test::read_file(out / "config.json");
  auto refused = test::run_yocotron("export-hf " + transformer.string() + " --out " + out.string());
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, ContainsSubstring("--out " + out.string() + ": the directory is not empty; give --overwrite"));
  CHECK_THAT(refused.err, !ContainsSubstring("frame"));
  CHECK(test::read_file(out / "config.json") == before);  // untouched
  // --overwrite: the transformer export alone, no modeling code or file of the earlier one left.
  auto e = test::run_yocotron("export-hf " + transformer.string() + " --out " + out.string() + "/ --overwrite");
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  CHECK(json::parse(test::read_file(out / "config.json"))["architectures"] == json::array({"LlamaForCausalLM"}));
  CHECK_FALSE(fs::exists(out / "modeling_yocotron.py"));
  CHECK_FALSE(fs::exists(out / "notes.txt"));
  for (const auto& entry : fs::directory_iterator(dir))  // no staging or old directory left beside it
    CHECK_FALSE(starts_with(entry.path().filename().string(), "."));
  // hf:DIR re-exported into DIR keeps its tokenizer (read before the directory is replaced).
  test::write_file(out / "tokenizer.model", "not really a sentencepiece model");
  auto again = test::run_yocotron("export-hf hf:" + out.string() + " --out " + out.string() + " --overwrite");
  INFO(again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(test::read_file(out / "tokenizer.model") == "not really a sentencepiece model");
  // --overwrite never replaces a directory that holds the source: a run exported into itself or its parent.
  fs::path run = dir / "runs" / "r";
  REQUIRE(test::run_yocotron("train --config " + transformer.string() + " --run-dir " + run.string()).exit_code == 0);
  for (const fs::path& into : {run, run.parent_path()}) {
    test::write_file(into / "config.json", "{}");  // even one that also holds an export's files
    test::write_file(into / "model.safetensors", "");
    auto r = test::run_yocotron("export-hf " + run.string() + " --out " + into.string() + " --overwrite");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("--out " + into.string() + ": holds the source "));
    CHECK(fs::exists(run / "checkpoints" / "latest"));
  }
  // --overwrite replaces only an earlier export: not a dataset, a run's logs or a checkpoint.
  for (const fs::path& other : {dir / "data", run / "logs", run / "checkpoints" / "step_00000003"}) {
    REQUIRE(fs::is_directory(other));
    auto r = test::run_yocotron("export-hf " + transformer.string() + " --out " + other.string() + " --overwrite");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("--overwrite replaces only an earlier export"));
  }
  CHECK(fs::exists(dir / "data" / "manifest.json"));
  // A file where the directory should be.
  test::write_file(dir / "file", "x");
  auto file = test::run_yocotron("export-hf " + transformer.string() + " --out " + (dir / "file").string());
  CHECK(file.exit_code == 2);
  CHECK_THAT(file.err, ContainsSubstring("exists and is not a directory"));
}
