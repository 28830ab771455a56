// Hugging Face interop and the safetensors format, through real files.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "helpers.h"
#include "dataset_fixture.h"
#include "yocotron/checkpoint.h"
#include "yocotron/hf.h"
#include "yocotron/model_factory.h"
#include "yocotron/safetensors.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;

TEST_CASE("safetensors write -> read keeps names, dtypes, shapes and bytes", "[hf]") {
  auto dir = test::temp_dir("st");
  auto a = at::randn({3, 5});
  auto b = at::arange(7, at::kLong);
  auto c = at::randn({2, 2}).to(at::kBFloat16);
  save_safetensors((dir / "x.safetensors").string(), {{"a", a}, {"b", b}, {"c", c}}, {{"format", "pt"}});
  auto f = load_safetensors((dir / "x.safetensors").string());
  CHECK(f.metadata.at("format") == "pt");
  CHECK(torch::equal(f.tensors.at("a"), a));
  CHECK(torch::equal(f.tensors.at("b"), b));
  CHECK(f.tensors.at("c").scalar_type() == at::kBFloat16);
  CHECK(torch::equal(f.tensors.at("c"), c));
  // Independent check of the layout: 8-byte length, JSON header, data at the declared offsets.
  std::string raw = test::read_file(dir / "x.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  auto header = nlohmann::json::parse(raw.substr(8, n));
  CHECK(header["a"]["dtype"] == "F32");
  CHECK(header["a"]["shape"] == nlohmann::json::array({3, 5}));
  auto off = header["b"]["data_offsets"].get<std::vector<uint64_t>>();
  int64_t third = 0;
  std::memcpy(&third, raw.data() + 8 + n + off[0] + 2 * 8, 8);
  CHECK(third == 2);
}

TEST_CASE("malformed safetensors files are errors naming the file", "[hf]") {
  auto dir = test::temp_dir("stbad");
  save_safetensors((dir / "ok.safetensors").string(), {{"a", at::randn({64})}});
  std::string raw = test::read_file(dir / "ok.safetensors");
  test::write_file(dir / "short.safetensors", raw.substr(0, raw.size() - 10));
  CHECK_THROWS_WITH(load_safetensors((dir / "short.safetensors").string()), ContainsSubstring("short.safetensors"));
  std::string bad = raw;
  bad[9] = '#';
  test::write_file(dir / "badjson.safetensors", bad);
  CHECK_THROWS_WITH(load_safetensors((dir / "badjson.safetensors").string()), ContainsSubstring("corrupt safetensors header"));
  test::write_file(dir / "tiny.safetensors", "abc");
  CHECK_THROWS_WITH(load_safetensors((dir / "tiny.safetensors").string()), ContainsSubstring("not a safetensors file"));
  CHECK_THROWS_WITH(load_safetensors((dir / "absent.safetensors").string()), ContainsSubstring("absent.safetensors: cannot open"));
}

TEST_CASE("export-hf -> import gives identical logits", "[hf]") {
  for (const char* arch : {"transformer", "yocopp", "fusedkv", "resformer"}) {
    INFO(arch);
    auto dir = test::temp_dir(std::string("hf-") + arch);
    Decoder src(test::small_model(arch));
    src->init_weights(3);
    {
      torch::NoGradGuard g;
      for (auto& p : src->named_parameters())
        if (ends_with(p.key(), "_mix")) p.value().add_(0.25);  // not the init values
    }
    export_hf(src, dir.string(), {});
    auto cfg = nlohmann::json::parse(test::read_file(dir / "config.json"));
    CHECK(cfg["model_type"] == (std::string(arch) == "transformer" ? "llama" : "yocotron"));
    CHECK(cfg["num_key_value_heads"] == 2);
    CHECK(cfg["tie_word_embeddings"] == false);
    CHECK(model_config_from_hf(dir.string()).arch == arch);

    Decoder dst(test::small_model(arch));
    dst->init_weights(99);  // different weights until loaded
    auto tokens = at::randint(0, 50, {2, 11}, at::kLong);
    CHECK(!torch::equal(src->forward(tokens), dst->forward(tokens)));
    load_hf_weights(dst, dir.string());
    CHECK(torch::equal(src->forward(tokens), dst->forward(tokens)));
  }
}

TEST_CASE("importing weights of another shape names the keys", "[hf]") {
  auto dir = test::temp_dir("hf-shape");
  Decoder src(test::small_model("transformer"));
  export_hf(src, dir.string(), {});
  auto other = test::small_model("transformer");
  other.n_layers = 6;
  other.d_ffn = 64;
  Decoder dst(other);
  CHECK_THROWS_WITH(load_hf_weights(dst, dir.string()), ContainsSubstring("model.n_layers=6 but"));
  CHECK_THROWS_WITH(load_hf_weights(dst, dir.string()), ContainsSubstring("has intermediate_size=48"));
  // A tensor missing from the file is named too.
  auto st = load_safetensors((dir / "model.safetensors").string());
  st.tensors.erase("model.layers.1.mlp.up_proj.weight");
  NamedTensors kept(st.tensors.begin(), st.tensors.end());
  save_safetensors((dir / "model.safetensors").string(), kept);
  Decoder same(test::small_model("transformer"));
  CHECK_THROWS_WITH(load_hf_weights(same, dir.string()), ContainsSubstring("missing tensor 'layers.1.mlp.up_proj.weight'"));
}

TEST_CASE("yocotron inspect and export-hf on the command line", "[hf]") {
  auto r = test::run_yocotron("inspect --config recipes/tinyllama-1.1b/transformer.yaml --json");
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["params"] == 1100048384LL);
  CHECK(j["kv_cache_bytes_per_token"] == 22528);
  CHECK(j["layers"].size() == 22);
  CHECK(j.contains("params_non_embedding"));
  auto text = test::run_yocotron("inspect --config recipes/tiny/yoco.yaml");
  CHECK(text.exit_code == 0);
  CHECK_THAT(text.out, ContainsSubstring("0.500 x transformer"));

  auto dir = test::temp_dir("cli-hf");
  auto e = test::run_yocotron("export-hf recipes/tiny/transformer.yaml --out " + dir.string() + " --sample-tokens 8");
  REQUIRE(e.exit_code == 0);
  CHECK(fs::exists(dir / "model.safetensors"));
  auto sample = load_safetensors((dir / "yocotron_sample.safetensors").string());
  CHECK(sample.tensors.at("logits").sizes() == at::IntArrayRef({2, 8, 2048}));
  // A run can start from those weights: model.init_from: hf:DIR.
  auto e2 = test::run_yocotron("export-hf recipes/tiny/transformer.yaml --set model.init_from=hf:" + dir.string() +
                               " --set train.seed=77 --out " + (dir / "again").string() + " --sample-tokens 8");
  REQUIRE(e2.exit_code == 0);
  auto again = load_safetensors((dir / "again" / "yocotron_sample.safetensors").string());
  // Same tokens only when seeds agree, so compare the weights themselves.
  auto w1 = load_safetensors((dir / "model.safetensors").string()).tensors;
  auto w2 = load_safetensors((dir / "again" / "model.safetensors").string()).tensors;
  CHECK(torch::equal(w1.at("model.layers.2.self_attn.q_proj.weight"), w2.at("model.layers.2.self_attn.q_proj.weight")));
  auto bad = test::run_yocotron("export-hf recipes/tiny/transformer.yaml --set model.init_from=hf:" + dir.string() +
                                " --set model.n_layers=2 --out " + (dir / "bad").string());
  CHECK(bad.exit_code == 2);  // the recipe does not fit the weights: bad input
  CHECK_THAT(bad.err, ContainsSubstring("model.init_from: model.n_layers=2 but"));
}

TEST_CASE("export-hf from a checkpoint; model.init_from: checkpoint:RUN", "[hf]") {
  auto dir = test::temp_dir("hf-ckpt");
  std::vector<uint32_t> toks;
  for (int i = 0; i < 2000; ++i) toks.push_back(static_cast<uint32_t>((i * 7 + i / 11) % 40));
  std::string data = test::make_dataset(dir / "data", "train", {toks}, 40);
  test::write_file(dir / "r.yaml", "model:\n  arch: yocopp\n  n_layers: 4\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                                   "  d_ffn: 48\n  vocab_size: 40\n  max_seq_len: 16\ndata:\n  train: " + data +
                                   "\n  seq_len: 8\ntrain:\n  steps: 5\n  micro_batch: 4\n  global_batch: 4\n  warmup_steps: 1\n");
  auto run = dir / "run";
  REQUIRE(test::run_yocotron("train --config " + (dir / "r.yaml").string() + " --run-dir " + run.string()).exit_code == 0);
  auto e = test::run_yocotron("export-hf " + run.string() + " --out " + (dir / "hf").string());
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  CHECK_THAT(e.out, ContainsSubstring("step_00000005"));
  auto ck = load_checkpoint((run / "checkpoints" / "step_00000005").string());
  auto hf = load_safetensors((dir / "hf" / "model.safetensors").string()).tensors;
  CHECK(torch::equal(hf.at("model.layers.1.self_attn.k_mix"), ck.tensors.model.at("layers.1.self_attn.k_mix")));
  CHECK(torch::equal(hf.at("model.layers.0.mlp.up_proj.weight"), ck.tensors.model.at("layers.0.mlp.up_proj.weight")));
  // A new run starting from those weights.
  Config c = load_config((dir / "r.yaml").string(), {"model.init_from=checkpoint:" + run.string()});
  Decoder d = build_decoder(c);
  CHECK(torch::equal(d->named_parameters()["layers.2.self_attn.q_proj.weight"], ck.tensors.model.at("layers.2.self_attn.q_proj.weight")));
  Config other = load_config((dir / "r.yaml").string(), {"model.init_from=checkpoint:" + run.string(), "model.d_ffn=64"});
  CHECK_THROWS_WITH(build_decoder(other), ContainsSubstring("model.d_ffn=64 but the checkpoint's model"));
  CHECK_THROWS_WITH(build_decoder(load_config((dir / "r.yaml").string(), {"model.init_from=checkpoint:" + dir.string()})),
                    ContainsSubstring("neither a checkpoint directory nor a run directory"));
}
