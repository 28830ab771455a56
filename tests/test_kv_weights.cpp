// `yocotron inspect --kv-weights` and `compare --kv-weights` on real tiny training runs: the printed
// weights against the checkpoint's safetensors read here byte by byte and the papers' formulas, the
// charts parsed by a browser, and bad input as one line with exit 2.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The F32 tensors of a safetensors file, read without yocotron's reader: 8-byte header length, JSON
// header, raw little-endian data.
std::map<std::string, std::vector<float>> read_f32_tensors(const fs::path& file) {
  const std::string b = test::read_file(file);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  const json header = json::parse(b.substr(8, n));
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__" || e["dtype"] != "F32") continue;
    const uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    std::vector<float> v((end - begin) / 4);
    std::memcpy(v.data(), b.data() + 8 + n + begin, end - begin);
    out[name] = v;
  }
  return out;
}

// The newest checkpoint's model weights, found through RUN/checkpoints/latest.
std::map<std::string, std::vector<float>> newest_weights(const fs::path& run) {
  std::string latest = test::read_file(run / "checkpoints" / "latest");
  latest.erase(latest.find_last_not_of("\n") + 1);
  return read_f32_tensors(run / "checkpoints" / latest / "model-tp00-of-01.safetensors");
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// Tiny real runs of 4 steps at a learning rate large enough that the mixing weights move far from
// their initial values. Trained once per test process.
struct Runs {
  fs::path dir = test::temp_dir("kvw");
  fs::path yocopp = dir / "yocopp", fusedkv = dir / "fusedkv", resformer = dir / "resformer",
           resformer_fixed = dir / "resformer_fixed", transformer = dir / "transformer";

  Runs() {
    test::make_dataset(dir / "data", "train", {test::markov_tokens(3000, 64, 5)}, 64);
    train(yocopp, "yocopp", 6, "  yocopp:\n    scaling_factor: 10.0\n");
    train(fusedkv, "fusedkv", 4, "");
    train(resformer, "resformer", 4, "  resformer:\n    learnable: true\n");
    train(resformer_fixed, "resformer", 4, "  resformer:\n    lambda1: 0.3\n    lambda2: 0.7\n");
    train(transformer, "transformer", 4, "");
  }

  void train(const fs::path& run, const std::string& arch, int layers, const std::string& model_extra) {
    const fs::path recipe = dir / (run.filename().string() + ".yaml");
    test::write_file(recipe, cat("model:\n  arch: ", arch, "\n  n_layers: ", layers,
                                 "\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 48\n  vocab_size: 64\n"
                                 "  max_seq_len: 16\n", model_extra, "data:\n  train: ", (dir / "data" / "train").string(),
                                 "\n  seq_len: 16\ntrain:\n  steps: 4\n  micro_batch: 4\n  global_batch: 4\n"
                                 "  lr: 0.02\n  warmup_steps: 1\n"));
    auto r = test::run_yocotron("train --config " + recipe.string() + " --run-dir " + run.string());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
};

const Runs& runs() {
  static Runs r;
  return r;
}

json inspect_json(const fs::path& path, const std::string& extra = "") {
  auto r = test::run_yocotron("inspect " + path.string() + " --kv-weights --json " + extra);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

}  // namespace

TEST_CASE("inspect --kv-weights: YOCO++'s effective weights are s times the checkpoint's scalars", "[kv_weights]") {
  const Runs& R = runs();
  const fs::path svg = R.dir / "yocopp.svg";
  json j = inspect_json(R.yocopp, "--svg " + svg.string());
  auto w = newest_weights(R.yocopp);
  CHECK(j["arch"] == "yocopp");
  CHECK(j["step"] == 4);
  CHECK_THAT(j["checkpoint"].get<std::string>(), Catch::Matchers::EndsWith("checkpoints/step_00000004"));
  CHECK(j["has_kv_weights"] == true);
  // L = 6, n = 3: layers 2..n mix with layer 1 (1-based); layer 1 and the top half have no weights.
  REQUIRE(j["layers"].size() == 2);
  const double s = 10.0;  // model.yocopp.scaling_factor in the recipe above
  for (int i = 0; i < 2; ++i) {
    const json& l = j["layers"][i];
    CHECK(l["layer"] == i + 2);
    for (const char* kv : {"k", "v"}) {
      const std::vector<float>& a = w.at(cat("layers.", i + 1, ".self_attn.", kv, "_mix"));
      REQUIRE(a.size() == 2);
      const json& t = l[kv]["weights"];
      CHECK(t[0]["source"] == "layer 1");
      CHECK(t[1]["source"] == "own");
      CHECK(t[0]["weight"].get<double>() == Approx(s * a[0]).epsilon(1e-12));
      CHECK(t[1]["weight"].get<double>() == Approx(s * a[1]).epsilon(1e-12));
      CHECK(l[kv]["raw"][0].get<double>() == a[0]);
      // Initialised at (0, 1/s): the effective weights started at (0, 1) and training moved them.
      CHECK(std::fabs(t[0]["weight"].get<double>()) + std::fabs(t[1]["weight"].get<double>() - 1.0) > 1e-2);
    }
  }
  // The text form prints the same numbers (4 decimals) under a column per weight.
  auto text = test::run_yocotron("inspect " + R.yocopp.string() + " --kv-weights");
  REQUIRE(text.exit_code == 0);
  for (const char* col : {"K from layer 1", "K own", "V from layer 1", "V own"}) CHECK_THAT(text.out, ContainsSubstring(col));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", s * w.at("layers.2.self_attn.v_mix")[1]);
  CHECK_THAT(text.out, ContainsSubstring(buf));
  CHECK_THAT(text.out, ContainsSubstring("s = 10.0"));

  // The chart: one polyline per weight with a point per mixing layer; a browser parses it.
  const std::string chart = test::read_file(svg);
  CHECK(count(chart, "<polyline") == 4);
  for (const char* label : {">K from layer 1<", ">K own<", ">V from layer 1<", ">V own<"}) CHECK_THAT(chart, ContainsSubstring(label));
  size_t p = chart.find("points=\"");
  REQUIRE(p != std::string::npos);
  CHECK(count(chart.substr(p, chart.find('"', p + 8) - p), ",") == 2);
  auto r = test::run_shell("tests/svg/render_svg.sh '" + svg.string() + "' '" + (R.dir / "yocopp.png").string() + "'");
  INFO(r.err << "\n(rsvg-convert comes with launch/setup.sh)");
  if (r.exit_code == 3) WARN("skipped the render check: " << r.err);  // the tool is absent (GPU nodes)
  else CHECK(r.exit_code == 0);
}

TEST_CASE("inspect --kv-weights: FusedKV vectors' mean, min and max; ResFormer's λ learned or fixed", "[kv_weights]") {
  const Runs& R = runs();
  json f = inspect_json(R.fusedkv / "checkpoints" / "step_00000004");  // a checkpoint directory works too
  auto w = newest_weights(R.fusedkv);
  // L = 4, n = 2: top layers 3 and 4 fuse layer 1 and layer 2; vectors of head_dim/2 = 4.
  REQUIRE(f["layers"].size() == 2);
  for (int i = 0; i < 2; ++i) {
    const json& l = f["layers"][i];
    CHECK(l["layer"] == i + 3);
    for (const char* kv : {"k", "v"}) {
      const std::vector<float>& a = w.at(cat("layers.", i + 2, ".self_attn.", kv, "_mix"));
      REQUIRE(a.size() == 8);
      for (int row = 0; row < 2; ++row) {
        std::vector<double> v(a.begin() + row * 4, a.begin() + row * 4 + 4);
        const json& t = l[kv]["weights"][row];
        CHECK(t["source"] == (row == 0 ? "layer 1" : "layer 2"));
        CHECK(t["weight"].get<double>() == Approx(std::accumulate(v.begin(), v.end(), 0.0) / 4).epsilon(1e-12));
        CHECK(t["min"].get<double>() == *std::min_element(v.begin(), v.end()));
        CHECK(t["max"].get<double>() == *std::max_element(v.begin(), v.end()));
      }
    }
  }
  json r = inspect_json(R.resformer);
  auto rw = newest_weights(R.resformer);
  REQUIRE(r["layers"].size() == 3);  // layers 2..4, V only
  for (int i = 0; i < 3; ++i) {
    const json& l = r["layers"][i];
    CHECK(!l.contains("k"));
    const std::vector<float>& lambda = rw.at(cat("layers.", i + 1, ".self_attn.v_mix"));
    CHECK(l["v"]["weights"][0]["weight"].get<double>() == Approx(lambda[0]).epsilon(1e-12));  // λ1, on V_1
    CHECK(l["v"]["weights"][1]["weight"].get<double>() == Approx(lambda[1]).epsilon(1e-12));  // λ2, own
    CHECK(std::fabs(lambda[0] - 0.5) > 1e-3);
  }
  // Fixed λ are not in the checkpoint: they are the recipe's.
  CHECK(newest_weights(R.resformer_fixed).count("layers.1.self_attn.v_mix") == 0);
  json x = inspect_json(R.resformer_fixed);
  CHECK(x["layers"][0]["v"]["learnable"] == false);
  CHECK(x["layers"][2]["v"]["weights"][0]["weight"] == 0.3);
  CHECK(x["layers"][2]["v"]["weights"][1]["weight"] == 0.7);
  auto text = test::run_yocotron("inspect " + R.resformer_fixed.string() + " --kv-weights");
  CHECK_THAT(text.out, ContainsSubstring("fixed by the recipe"));
}

TEST_CASE("inspect --kv-weights: no mixing weights said plainly; bad input is one line, exit 2", "[kv_weights]") {
  const Runs& R = runs();
  auto t = test::run_yocotron("inspect " + R.transformer.string() + " --kv-weights --svg " + (R.dir / "t.svg").string());
  CHECK(t.exit_code == 0);
  CHECK_THAT(t.out, ContainsSubstring("model.arch=transformer has no KV mixing weights"));
  CHECK(!fs::exists(R.dir / "t.svg"));
  CHECK(inspect_json(R.transformer)["has_kv_weights"] == false);

  auto one_line = [](const test::ProcResult& r) { return std::count(r.err.begin(), r.err.end(), '\n') == 1; };
  auto missing = test::run_yocotron("inspect " + (R.dir / "nope").string() + " --kv-weights");
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, ContainsSubstring("nope: no such run or checkpoint directory"));
  CHECK(one_line(missing));
  CHECK(missing.out.empty());
  fs::create_directories(R.dir / "empty_run");
  auto empty = test::run_yocotron("inspect " + (R.dir / "empty_run").string() + " --kv-weights");
  CHECK(empty.exit_code == 2);
  CHECK_THAT(empty.err, ContainsSubstring("empty_run: neither a checkpoint directory nor a run directory"));
  CHECK(one_line(empty));
  auto bad_svg = test::run_yocotron("inspect " + R.yocopp.string() + " --kv-weights --svg " + (R.dir / "no" / "x.svg").string());
  CHECK(bad_svg.exit_code == 2);
  CHECK_THAT(bad_svg.err, ContainsSubstring("does not exist"));
  CHECK(one_line(bad_svg));
  auto svg_alone = test::run_yocotron("inspect " + R.yocopp.string() + " --svg x.svg");
  CHECK(svg_alone.exit_code == 2);
  CHECK_THAT(svg_alone.err, ContainsSubstring("add --kv-weights"));
  auto no_dir = test::run_yocotron("compare " + R.yocopp.string() + " " + (R.dir / "nope").string() + " --kv-weights --out " + (R.dir / "c0").string());
  CHECK(no_dir.exit_code == 2);
  CHECK(one_line(no_dir));
}

TEST_CASE("compare --kv-weights: a chart per weight with a line per run, and the table", "[kv_weights]") {
  const Runs& R = runs();
  const fs::path out = R.dir / "cmp";
  auto r = test::run_yocotron("compare " + R.yocopp.string() + " " + R.fusedkv.string() + " " + R.resformer.string() +
                              " " + R.transformer.string() + " --kv-weights --out " + out.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // yocopp and fusedkv weigh K and V from layer 1; resformer weighs V from layer 1 too.
  std::string k1 = test::read_file(out / "kv_weights_k_from_layer_1.svg");
  CHECK(count(k1, "<polyline") == 2);
  CHECK_THAT(k1, ContainsSubstring(">yocopp<"));
  CHECK_THAT(k1, ContainsSubstring(">fusedkv<"));
  CHECK(count(test::read_file(out / "kv_weights_v_from_layer_1.svg"), "<polyline") == 3);
  CHECK(count(test::read_file(out / "kv_weights_v_own.svg"), "<polyline") == 2);          // yocopp, resformer
  CHECK(count(test::read_file(out / "kv_weights_k_from_layer_2.svg"), "<polyline") == 1);  // fusedkv's middle layer
  auto png = test::run_shell("tests/svg/render_svg.sh '" + (out / "kv_weights_v_from_layer_1.svg").string() + "' '" +
                             (out / "v1.png").string() + "'");
  if (png.exit_code == 3) WARN("skipped the render check: " << png.err);
  else CHECK(png.exit_code == 0);

  // The csv: a row per run, layer and term, with the same numbers as inspect.
  std::istringstream csv(test::read_file(out / "kv_weights.csv"));
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(csv, line);) rows.push_back(split(line, ','));
  REQUIRE(rows.size() == 1 + 2 * 4 + 2 * 4 + 3 * 2);  // yocopp 2 layers x 4, fusedkv 2 x 4, resformer 3 x 2
  CHECK(rows[0] == std::vector<std::string>{"run", "arch", "step", "layer", "tensor", "source", "label", "weight", "min", "max"});
  auto w = newest_weights(R.yocopp);
  CHECK(rows[1][0] == "yocopp");
  CHECK(rows[1][3] == "2");
  CHECK(rows[1][6] == "K from layer 1");
  CHECK(std::stod(rows[1][7]) == Approx(10.0 * w.at("layers.1.self_attn.k_mix")[0]).epsilon(1e-12));
  const std::string md = test::read_file(out / "kv_weights.md");
  CHECK_THAT(md, ContainsSubstring("![K from layer 1](kv_weights_k_from_layer_1.svg)"));
  CHECK_THAT(md, ContainsSubstring("| yocopp | yocopp | 4 | 3 |"));
  CHECK_THAT(md, ContainsSubstring("No KV mixing weights: transformer."));
  CHECK_THAT(r.out, ContainsSubstring("wrote " + (out / "kv_weights.csv").string()));
}
