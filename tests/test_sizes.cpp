// Sizes: overflow-checked parameter and byte counts, and the memory plan that refuses impossible
// runs before anything is built — against the optimizer's real buffers, a tensor-parallel model's
// real shards and the peaks measured on an H100, so that a run that fits is never refused.
#include <chrono>
#include <filesystem>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checked_int.h"
#include "yocotron/config.h"
#include "yocotron/decoder.h"
#include "yocotron/flops.h"
#include "yocotron/kv_plan.h"
#include "yocotron/memory_plan.h"
#include "yocotron/optimizer.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

constexpr int64_t GiB = int64_t{1} << 30;

std::string problems(const ConfigError& e) { return join(e.problems(), "\n"); }

// The problems a recipe text is refused with at load, or "" when it loads.
std::string load_refusal(const std::string& yaml) {
  try {
    config_from_yaml(yaml);
    return "";
  } catch (const ConfigError& e) {
    return problems(e);
  }
}

// Bytes of the optimizer's buffers: parameters, gradients, fp32 accumulator, master copy (when it is
// not the parameters themselves), Adam moments.
int64_t optimizer_bytes(const FlatAdamW& opt) {
  int64_t total = 0;
  auto bytes = [](const at::Tensor& t) { return t.defined() ? static_cast<int64_t>(t.numel() * t.element_size()) : 0; };
  for (const auto& g : opt.groups()) {
    total += bytes(g.params) + bytes(g.grads) + bytes(g.grad_acc) + bytes(g.exp_avg) + bytes(g.exp_avg_sq);
    if (g.master.data_ptr() != g.params.data_ptr()) total += bytes(g.master);
  }
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("CheckedInt: sums and products that wrap are flagged, never returned", "[sizes]") {
  const int64_t big = int64_t{1} << 62;
  CHECK(!(CheckedInt(big) + (big - 1)).overflowed());
  CHECK((CheckedInt(big) + big).overflowed());
  CHECK((CheckedInt(big) * 2).overflowed());
  CHECK((CheckedInt(-big) - big - 1).overflowed());
  CHECK(((CheckedInt(big) * 4) * 0).overflowed());  // once overflowed, always
  CHECK((CheckedInt(3) * 4 + 5).value() == 17);
  CHECK(ceil_div(CheckedInt(7), 2).value() == 4);
  CHECK(floor_div(CheckedInt(7), 2).value() == 3);
}

TEST_CASE("parameter, KV-cache and FLOP counts that overflow int64 are errors naming the keys", "[sizes]") {
  ModelConfig m;
  m.d_model = int64_t{1} << 32;  // q/o projections alone: 2 x d x d = 2^65 per layer
  m.n_heads = 2;
  m.n_kv_heads = 2;
  try {
    count_parameters(m, make_kv_plan(m));
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(problems(e), ContainsSubstring("model.d_model=4294967296"));
    CHECK_THAT(problems(e), ContainsSubstring("model.n_layers=4"));
    CHECK_THAT(problems(e), ContainsSubstring("the parameter count overflows a 64-bit integer"));
  }
  CHECK_THROWS_AS(flops_per_token(m, 128), ConfigError);
  // Large but representable: exact.
  ModelConfig ok;
  ok.d_model = 1000000;
  ok.n_heads = 4;
  ok.n_kv_heads = 2;
  ok.n_layers = 1000;
  ParamCounts pc = count_parameters(ok, make_kv_plan(ok));
  const int64_t d = 1000000, dh = 250000;
  CHECK(pc.total == 1000 * (2 * d * 4 * dh + 2 * d * 2 * dh + 3 * d * ok.d_ffn + 2 * d) + d + 2 * ok.vocab_size * d);
  KvPlan huge;
  huge.layers.resize(3);
  huge.layers[0].cached_k_heads = 1 << 30;
  CHECK_THROWS_AS(huge.kv_cache_bytes_per_token(int64_t{1} << 40, 2), ConfigError);
}

TEST_CASE("memory plan of the tiny recipe, counted by hand (fp32 CPU; bf16 GPU)", "[sizes]") {
  Config cfg = load_config(test::source_dir() + "/recipes/tiny/transformer.yaml");
  // L=4, d=128, 4 heads of 32, 2 KV heads, d_ffn=352, vocab 2048, max_seq_len 256, micro-batch 16 x 128.
  // Per layer: q,o 2*128*128 = 32768; k,v 128*(2+2)*32 = 16384; SwiGLU 3*128*352 = 135168; norms 256.
  const int64_t P = 4 * (32768 + 16384 + 135168 + 256) + 128 + 2 * 2048 * 128;
  REQUIRE(P == 1262720);
  const int64_t rope = 2 * 256 * 32 * 4;
  // Kept per layer and token without recomputation: input 128, Q and attention output 128 each,
  // gate and up 352 each = 1088 values; logits are chunked (train.loss_chunk_tokens=4096).
  const int64_t act_values = 16 * 128 * 4 * 1088;
  MemoryPlan f = plan_memory(cfg, 1, /*bf16=*/false, /*gpu=*/false);
  CHECK(f.params == P);
  CHECK(f.state() == 4 * P + 4 * P + 8 * P + rope);  // weights, gradients, two moments
  CHECK(f.activations == act_values * 4);
  CHECK(f.total() == 55920640);
  CHECK(f.host_build == 0);
  cfg.train.precision = "bf16";
  MemoryPlan b = plan_memory(cfg, 1, true, true);
  // bf16 weights and gradients, fp32 accumulator, master and moments; the fp32 model is built on the host.
  CHECK(b.state() == 2 * P + 2 * P + 4 * P + 4 * P + 8 * P + rope);
  CHECK(b.activations == act_values * 2);
  CHECK(b.host_build == 4 * P);
  cfg.train.recompute = "full";
  cfg.train.loss_chunk_tokens = 0;  // full logits: 16 x 128 tokens x 2048 vocabulary
  CHECK(plan_memory(cfg, 1, true, true).activations == (16 * 128 * 4 * 128 + 16 * 128 * 2048) * 2);
}

TEST_CASE("a run whose token count overflows int64 is refused at load, naming the keys", "[sizes]") {
  std::string r = load_refusal("train:\n  steps: 1000000000000\n  global_batch: 10000000\n  micro_batch: 1\n");
  CHECK_THAT(r, ContainsSubstring("train.steps=1000000000000 x train.global_batch=10000000 x data.seq_len="));
  CHECK_THAT(r, ContainsSubstring("the run's token count overflows a 64-bit integer"));
  CHECK(load_refusal("train:\n  steps: 1000000000\n  global_batch: 1000\n  micro_batch: 1\n").empty());
}

TEST_CASE("recipes beyond the layer and head limits are refused at load, naming the key", "[sizes]") {
  CHECK_THAT(load_refusal("model:\n  n_layers: 2000000\n"), ContainsSubstring("model.n_layers=2000000 exceeds 1000000"));
  std::string heads = load_refusal("model:\n  d_model: 8589934592\n  n_heads: 4294967296\n  n_kv_heads: 4294967296\n");
  CHECK_THAT(heads, ContainsSubstring("model.n_heads=4294967296 exceeds 2147483647, the most heads"));
  CHECK_THAT(heads, ContainsSubstring("model.n_kv_heads=4294967296 exceeds 2147483647"));
  CHECK(load_refusal("model:\n  n_layers: 1000000\n").empty());
}

TEST_CASE("memory plan: the optimizer state is exactly what FlatAdamW allocates (fp32, bf16, bf16 sums)", "[sizes]") {
  for (const char* arch : {"transformer", "yocopp", "fusedkv"}) {
    for (const char* mode : {"fp32", "bf16", "bf16-accum"}) {
      INFO(arch << ", " << mode);
      Config cfg;
      cfg.model = test::small_model(arch);
      const bool bf16 = std::string(mode) != "fp32";
      cfg.train.precision = bf16 ? "bf16" : "fp32";
      cfg.train.grad_accum_dtype = std::string(mode) == "bf16-accum" ? "bf16" : "fp32";
      Decoder model(cfg.model);
      FlatAdamW opt(model, cfg.train, bf16 ? at::kBFloat16 : at::kFloat);
      MemoryPlan p = plan_memory(cfg, 1, bf16, /*gpu=*/false);
      CHECK(p.state() - p.buffers == optimizer_bytes(opt));
      CHECK(p.params == count_parameters(cfg.model, make_kv_plan(cfg.model)).total);
      int64_t rope = 0;
      for (const auto& b : model->named_buffers())
        if (starts_with(b.key(), "rope_")) rope += static_cast<int64_t>(b.value().numel() * b.value().element_size());
      CHECK(p.buffers == rope);
    }
  }
}

TEST_CASE("memory plan: a tensor-parallel rank's parameters are what its decoder holds; ZeRO-1 shares the fp32 state", "[sizes]") {
  Config cfg;
  cfg.model = test::small_model("yocopp");
  cfg.model.vocab_size = 51;  // padded to 52 rows over two ranks
  cfg.parallel.tp = 2;
  Decoder shard(cfg.model, TpContext{1, 2, nullptr});
  int64_t held = 0;
  for (const auto& p : shard->parameters()) held += p.numel();
  CHECK(plan_memory(cfg, 1, false, false).params == held);

  cfg.parallel.tp = 1;
  cfg.train.precision = "bf16";
  MemoryPlan whole = plan_memory(cfg, 4, true, true);
  cfg.parallel.zero1 = true;
  MemoryPlan zero = plan_memory(cfg, 4, true, true);
  CHECK(zero.weights == whole.weights);
  CHECK(zero.grad_accum == whole.grad_accum);  // the accumulator is reduced whole, not sharded
  CHECK(zero.moments <= whole.moments / 4);
  CHECK(zero.moments >= whole.moments / 4 - 8 * 4);
  CHECK(zero.master < whole.master / 2);
}

TEST_CASE("memory plan: the lower bound stays below every peak measured on an H100 (docs/benchmarks.md)", "[sizes]") {
  struct Row {
    const char* recipe;
    std::vector<std::string> sets;
    double peak_gib;
  };
  const std::vector<Row> rows = {
      {"recipes/tinyllama-1.1b/transformer.yaml", {"train.micro_batch=8", "train.global_batch=8"}, 41.2},
      {"recipes/tinyllama-1.1b/yocopp.yaml", {"train.micro_batch=8", "train.global_batch=8"}, 41.0},
      {"recipes/tinyllama-1.1b/transformer.yaml", {"train.micro_batch=16", "train.global_batch=16"}, 61.7},
      {"recipes/tinyllama-1.1b/transformer.yaml",
       {"train.micro_batch=16", "train.global_batch=16", "train.recompute=selective"}, 49.0},
      {"recipes/tinyllama-1.1b/transformer.yaml",
       {"train.micro_batch=8", "train.global_batch=8", "train.loss_chunk_tokens=0"}, 46.5},
      {"recipes/small/transformer.yaml", {"train.micro_batch=16", "train.global_batch=32"}, 11.1},
      {"recipes/small/transformer.yaml", {"train.micro_batch=32", "train.global_batch=64"}, 19.8},
  };
  for (const auto& r : rows) {
    Config cfg = load_config(test::source_dir() + "/" + r.recipe, r.sets);
    MemoryPlan p = plan_memory(cfg, 1, true, true);
    INFO(r.recipe << " " << join(r.sets, " ") << ": lower bound " << format_bytes(static_cast<double>(p.total()))
                  << ", measured " << r.peak_gib << " GiB");
    CHECK(static_cast<double>(p.total()) < r.peak_gib * static_cast<double>(GiB));
    CHECK(static_cast<double>(p.total()) > 0.5 * r.peak_gib * static_cast<double>(GiB));  // and still a real estimate
    CHECK(memory_refusal(cfg, p, 1, "cuda:0", static_cast<int64_t>(r.peak_gib * static_cast<double>(GiB)), 100 * GiB).empty());
  }
}

TEST_CASE("memory plan: every shipped recipe fits where it is meant to run", "[sizes]") {
  for (const auto& e : fs::recursive_directory_iterator(test::source_dir() + "/recipes")) {
    if (e.path().extension() != ".yaml" || e.path().filename() == "base.yaml") continue;
    Config cfg = load_config(e.path().string());
    const bool tiny = e.path().string().find("/tiny/") != std::string::npos;
    MemoryPlan p = plan_memory(cfg, 1, !tiny && cfg.train.precision == "bf16", !tiny);
    INFO(e.path().string() << ": " << format_bytes(static_cast<double>(p.total())));
    CHECK(memory_refusal(cfg, p, 1, tiny ? "cpu" : "cuda:0", tiny ? 1 * GiB : 78 * GiB, 16 * GiB).empty());
  }
}

TEST_CASE("memory plan: the refusal names the figures and the keys to change", "[sizes]") {
  Config cfg;
  cfg.model.n_layers = 1000;
  cfg.model.d_model = 4096;
  cfg.model.n_heads = 32;
  cfg.model.n_kv_heads = 8;
  cfg.model.d_ffn = 11008;
  cfg.train.precision = "bf16";
  MemoryPlan p = plan_memory(cfg, 1, true, true);
  std::string state = memory_refusal(cfg, p, 1, "cuda:0", 80 * GiB, 1000 * GiB);
  CHECK_THAT(state, ContainsSubstring("this run needs at least "));
  CHECK_THAT(state, ContainsSubstring(" per process on cuda:0 but 80.00 GiB is free: weights "));
  CHECK_THAT(state, ContainsSubstring("fp32 gradient accumulator"));
  CHECK_THAT(state, ContainsSubstring("activations of one micro-batch at least"));
  CHECK_THAT(state, ContainsSubstring("try a smaller model (model.n_layers=1000, model.d_model=4096, model.d_ffn=11008, "
                                      "model.vocab_size=2048), parallel.tp=2 (now 1), parallel.zero1=true with several "
                                      "data-parallel processes, or train.grad_accum_dtype=bf16"));
  // A GPU run also needs its fp32 weights on the host while the model is built.
  std::string host = memory_refusal(cfg, p, 1, "cuda:0", 100000 * GiB, 10 * GiB);
  CHECK_THAT(host, ContainsSubstring("of host memory per process"));
  CHECK_THAT(host, ContainsSubstring("but 10.00 GiB is available (MemAvailable + SwapFree)"));
  // The state fits, one micro-batch's activations do not.
  cfg.model = ModelConfig{};
  cfg.train.micro_batch = 4096;
  cfg.data.seq_len = 256;
  p = plan_memory(cfg, 1, false, false);
  std::string act = memory_refusal(cfg, p, 1, "cpu", p.state() + 1024, -1);
  CHECK_THAT(act, ContainsSubstring("is available (MemAvailable + SwapFree)"));
  CHECK_THAT(act, ContainsSubstring("(4096 x 256 tokens, train.recompute=none)"));
  CHECK_THAT(act, ContainsSubstring("try a smaller train.micro_batch (now 4096; train.global_batch stays), "
                                    "train.recompute=full, or parallel.tp=2 (now 1)"));
  CHECK(memory_refusal(cfg, p, 1, "cpu", -1, -1).empty());  // unknown free memory: not checked
  CHECK(memory_refusal(cfg, p, 1, "cpu", p.total(), -1).empty());
}

TEST_CASE("absurd sizes: train, bench and inspect exit 2 at once with one line naming the keys", "[sizes]") {
  auto dir = test::temp_dir("sizes");
  const std::string recipe = "recipes/tiny/transformer.yaml";
  // Real data, so that train gets past opening it (before the model is planned) on a fresh clone.
  const std::string data = " --set data.train=" + test::make_dataset(dir / "data_train", "train", {test::markov_tokens(5000, 2048, 1)}, 2048) +
                           " --set data.val=" + test::make_dataset(dir / "data_val", "val", {test::markov_tokens(1000, 2048, 2)}, 2048);
  for (const std::string set : {"model.d_model=1000000 --set model.n_heads=4", "model.n_layers=1000000",
                                "model.vocab_size=1000000000"}) {
    const std::string key = split(set, '=')[0];
    for (const std::string& cmd : {"train --run-dir " + (dir / "run").string(), std::string("bench --steps 1 --warmup 0")}) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = test::run_yocotron(cmd + " --config " + recipe + data + " --set train.device=cpu --set " + set);
      INFO(cmd << " --set " << set << "\n" << r.err);
      CHECK(r.exit_code == 2);
      CHECK_THAT(r.err, ContainsSubstring("error: this run needs at least "));
      CHECK_THAT(r.err, ContainsSubstring(key + "="));
      CHECK_THAT(r.err, ContainsSubstring("try a smaller model"));
      CHECK(r.err.find("bad_alloc") == std::string::npos);
      CHECK(seconds_since(t0) < 20);
    }
  }
  CHECK(!fs::exists(dir / "run" / "config.yaml"));  // refused before the run directory was written
  auto wrapped = test::run_yocotron("inspect --config " + recipe + " --set model.d_model=8589934592 --set model.n_heads=2 "
                                    "--set model.n_kv_heads=2");
  CHECK(wrapped.exit_code == 2);
  CHECK_THAT(wrapped.err, ContainsSubstring("model.d_model=8589934592"));
  CHECK_THAT(wrapped.err, ContainsSubstring("overflows a 64-bit integer"));
  auto overflow = test::run_yocotron("bench --config " + recipe + " --set train.device=cpu --set model.d_model=2147483648 "
                                     "--set model.n_heads=2 --set model.n_kv_heads=2 --set model.n_layers=1000");
  CHECK(overflow.exit_code == 2);
  CHECK_THAT(overflow.err, ContainsSubstring("error: "));
  CHECK(overflow.err.find("bad_alloc") == std::string::npos);
}

TEST_CASE("train and bench refuse the same recipes with the same line (one setup builds both)", "[sizes]") {
  auto dir = test::temp_dir("same-refusals");
  const std::string recipe = "recipes/tiny/transformer.yaml";
  const std::string data = " --set data.train=" + test::make_dataset(dir / "data_train", "train", {test::markov_tokens(5000, 2048, 1)}, 2048) +
                           " --set data.val=" + test::make_dataset(dir / "data_val", "val", {test::markov_tokens(1000, 2048, 2)}, 2048);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train.precision=bf16", "error: train.precision=bf16 needs a GPU: CPU runs train in fp32"},
      {"model.attention=flash", "error: model.attention=flash needs a GPU (this run is on the CPU); use model.attention=auto or sdpa"},
      {"model.attention=cudnn", "error: model.attention=cudnn needs a GPU (this run is on the CPU)"},
      {"train.global_batch=6 --set train.micro_batch=4",
       "error: recipes/tiny/transformer.yaml: train.global_batch=6 is not a multiple of train.micro_batch=4"}};
  for (const auto& [set, want] : cases) {
    std::vector<std::string> errs;
    for (const std::string& cmd : {"train --run-dir " + (dir / "run").string(), std::string("bench --steps 1 --warmup 0")}) {
      auto r = test::run_yocotron(cmd + " --config " + recipe + data + " --set train.device=cpu --set " + set);
      INFO(cmd << " --set " << set << "\n" << r.err);
      CHECK(r.exit_code == 2);
      CHECK(starts_with(r.err, want));
      CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
      errs.push_back(r.err);
    }
    CHECK(errs[0] == errs[1]);
  }
  CHECK(!fs::exists(dir / "run" / "config.yaml"));  // refused before the run directory was written
}
