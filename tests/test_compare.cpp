// `yocotron compare` and the TensorBoard writer: parsing, smoothing, alignment, the report's numbers,
// error cases, the charts rendered by librsvg, and event files decoded independently of the writer.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "tb_decode.h"
#include "yocotron/compare.h"
#include "yocotron/fileio.h"
#include "yocotron/str.h"
#include "yocotron/kv_plan.h"
#include "yocotron/svg_chart.h"
#include "yocotron/tensorboard.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

// A run directory as `yocotron train` leaves it: config.yaml and metrics.jsonl.
fs::path fake_run(const fs::path& dir, const std::string& arch, const std::vector<double>& losses, int every,
                  const std::vector<std::pair<int, double>>& evals, const std::string& data = "data/demo/train") {
  Config c;
  c.model.arch = arch;
  c.data.train = data;
  test::write_file(dir / "config.yaml", to_yaml(c));
  std::string m;
  for (size_t i = 0; i < losses.size(); ++i) {
    int step = static_cast<int>((i + 1) * every);
    m += nlohmann::json({{"step", step}, {"tokens", step * 1000}, {"loss", losses[i]}, {"lr", 0.001},
                         {"grad_norm", 1.0}, {"tokens_per_s", 100.0 * (i + 1)}, {"skipped", 0}})
             .dump() + "\n";
    for (const auto& [s, v] : evals)
      if (s == step) m += nlohmann::json({{"step", s}, {"tokens", s * 1000}, {"val_loss", v}}).dump() + "\n";
  }
  test::write_file(dir / "metrics.jsonl", m + "{\"step\": 99, \"lo");  // a run still writing
  return dir;
}

std::vector<std::vector<std::string>> csv_rows(const fs::path& p) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(test::read_file(p));
  for (std::string line; std::getline(in, line);) rows.push_back(split(line, ','));
  return rows;
}

}  // namespace

TEST_CASE("EMA smoothing and tick values", "[compare]") {
  auto s = ema({1, 3, NAN, 5}, 3);  // alpha = 0.5; a NaN keeps the average
  CHECK(s[0] == 1);
  CHECK(s[1] == 2);
  CHECK(s[2] == 2);
  CHECK(s[3] == 3.5);
  CHECK(ema({4, 2}, 1) == std::vector<double>{4, 2});
  CHECK(nice_ticks(0, 1, 5) == std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0});
  auto t = nice_ticks(2.37, 7.81, 6);
  CHECK(t.front() == 3);
  CHECK(t.back() == 7);
}

TEST_CASE("compare: curves aligned on tokens or steps; report numbers from the runs", "[compare]") {
  auto d = test::temp_dir("cmp");
  fake_run(d / "transformer", "transformer", {5.0, 4.0, 3.0, 2.5}, 10, {{20, 3.9}, {40, 2.9}});
  fake_run(d / "yocopp", "yocopp", {5.1, 4.2, 3.1, 2.6, 2.4, 2.3, 2.2, 2.1}, 5, {{20, 3.8}, {40, 2.7}});
  CompareOptions o;
  o.out_dir = (d / "out").string();
  auto r = compare_runs({(d / "transformer").string(), (d / "yocopp").string()}, o);
  CHECK(r.warnings.empty());
  auto rows = csv_rows(d / "out" / "report.csv");
  REQUIRE(rows.size() == 3);
  CHECK(rows[1][0] == "transformer");
  CHECK(rows[2][1] == "yocopp");
  CHECK(std::stod(rows[1][5]) == 2.5);  // final train loss (no smoothing)
  CHECK(std::stod(rows[2][5]) == 2.1);
  CHECK(std::stod(rows[2][6]) == Approx(-0.4));  // Δ vs the first run
  CHECK(std::stod(rows[2][7]) == 2.7);           // best val loss
  CHECK(std::stod(rows[2][8]) == Approx(-0.2));
  CHECK(std::stod(rows[1][4]) == 40000);  // tokens seen
  CHECK(std::stod(rows[2][9]) == 500);    // median of the logged tokens/s
  Config c;
  c.model.arch = "yocopp";
  CHECK(std::stoll(rows[2][3]) == make_kv_plan(c.model).kv_cache_bytes_per_token(c.model.head_dim(), 2));
  CHECK(std::stoll(rows[1][2]) == count_parameters(Config{}.model, make_kv_plan(Config{}.model)).total);
  std::string svg = test::read_file(d / "out" / "loss.svg");
  size_t polylines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++polylines;
  CHECK(polylines == 2);
  CHECK_THAT(svg, ContainsSubstring(">yocopp<"));
  CHECK(fs::exists(d / "out" / "val_loss.svg"));
  CHECK_THAT(r.report_md, ContainsSubstring("| yocopp | yocopp |"));

  o.smooth = 3;
  o.baseline = "yocopp";
  o.x = "step";
  compare_runs({(d / "transformer").string(), (d / "yocopp").string()}, o);
  rows = csv_rows(d / "out" / "report.csv");
  CHECK(std::stod(rows[1][5]) == Approx(ema({5.0, 4.0, 3.0, 2.5}, 3).back()));
  CHECK(std::stod(rows[2][6]) == 0.0);  // the baseline against itself
}

TEST_CASE("compare: clear errors and a warning for runs on different data", "[compare]") {
  auto d = test::temp_dir("cmp-err");
  fake_run(d / "a", "transformer", {3, 2}, 10, {});
  fake_run(d / "b", "yoco", {3, 2}, 10, {}, "data/other/train");
  CompareOptions o;
  o.out_dir = (d / "out").string();
  auto r = compare_runs({(d / "a").string(), (d / "b").string()}, o);
  REQUIRE(r.warnings.size() == 1);
  CHECK_THAT(r.warnings[0], ContainsSubstring("different data"));
  CHECK_THROWS_WITH(compare_runs({(d / "nope").string()}, o), ContainsSubstring("nope: no such run directory"));
  fs::create_directories(d / "empty");
  CHECK_THROWS_WITH(compare_runs({(d / "empty").string()}, o), ContainsSubstring("empty/metrics.jsonl: missing"));
  test::write_file(d / "empty" / "metrics.jsonl", "");
  test::write_file(d / "empty" / "config.yaml", to_yaml(Config{}));
  CHECK_THROWS_WITH(compare_runs({(d / "empty").string()}, o), ContainsSubstring("empty/metrics.jsonl: no metrics yet"));
  o.metric = "val_loss";
  CHECK_THROWS_WITH(compare_runs({(d / "a").string()}, o), ContainsSubstring("no run has evaluation lines"));
  o.metric = "loss";
  o.baseline = "zzz";
  CHECK_THROWS_WITH(compare_runs({(d / "a").string()}, o), ContainsSubstring("--baseline zzz is not one of the runs"));
  auto cli = test::run_yocotron("compare " + (d / "a").string() + " " + (d / "missing").string() + " --out " + (d / "o2").string());
  CHECK(cli.exit_code == 1);
  CHECK_THAT(cli.err, ContainsSubstring("missing: no such run directory"));
}

TEST_CASE("the charts render with librsvg (rsvg-convert); a malformed SVG does not", "[compare]") {
  auto d = test::temp_dir("cmp-render");
  auto render = [&](const fs::path& svg, const fs::path& png) {
    return test::run_shell("tests/svg/render_svg.sh '" + svg.string() + "' '" + png.string() + "'");
  };
  test::write_file(d / "broken.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>a & b</text></svg>");
  auto broken = render(d / "broken.svg", d / "b.png");
  if (broken.exit_code == 3) {  // the tool is absent (GPU nodes have nothing to install it with)
    WARN("skipped: " << broken.err << "(launch/setup.sh installs it)");
    return;
  }
  CHECK(broken.exit_code == 1);
  CHECK_THAT(broken.err, ContainsSubstring("broken.svg: rsvg-convert could not render it"));
  fake_run(d / "transformer", "transformer", {5.0, 4.0, 3.0, 2.5}, 10, {{20, 3.9}, {40, 2.9}});
  fake_run(d / "yocopp & co", "yocopp", {5.1, 4.2, 3.1, 2.6}, 10, {{20, 3.8}});  // a name that needs escaping
  CompareOptions o;
  o.out_dir = (d / "out").string();
  o.log_x = true;
  compare_runs({(d / "transformer").string(), (d / "yocopp & co").string()}, o);
  for (const char* f : {"loss.svg", "val_loss.svg"}) {
    fs::path png = d / "out" / (std::string(f) + ".png");
    auto r = render(d / "out" / f, png);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    REQUIRE(fs::exists(png));
    CHECK(fs::file_size(png) > 10000);
  }
}

TEST_CASE("TensorBoard events: TFRecord framing and Event fields, decoded independently", "[compare]") {
  auto d = test::temp_dir("tb");
  std::string ev = tb_scalar_event(1700000000.5, 42, {{"loss", 2.5f}, {"lr", 0.001f}});
  auto fields = test::decode_protobuf(ev);
  REQUIRE(fields.size() == 3);
  double wall;
  std::memcpy(&wall, fields[0].bytes.data(), 8);
  CHECK((fields[0].number == 1 && fields[0].wire == 1 && wall == 1700000000.5));
  CHECK((fields[1].number == 2 && fields[1].varint == 42));
  CHECK(fields[2].number == 5);
  auto values = test::decode_protobuf(fields[2].bytes);
  REQUIRE(values.size() == 2);
  auto v0 = test::decode_protobuf(values[0].bytes);
  CHECK(v0[0].bytes == "loss");
  float f;
  std::memcpy(&f, v0[1].bytes.data(), 4);
  CHECK((v0[1].number == 2 && v0[1].wire == 5 && f == 2.5f));
  CHECK(test::decode_protobuf(tb_file_version_event(1.0))[1].bytes == "brain.Event:2");

  std::string file = tfrecord(tb_file_version_event(1.0)) + tfrecord(ev);
  test::write_file(d / "events", file);
  auto recs = read_tfrecords((d / "events").string());
  REQUIRE(recs.size() == 2);
  CHECK(recs[1] == ev);
  CHECK(tb_event_step(recs[1]) == 42);
  uint64_t len;
  std::memcpy(&len, file.data(), 8);
  CHECK(len == recs[0].size());
  file[20] ^= 1;
  test::write_file(d / "bad", file);
  CHECK_THROWS_WITH(read_tfrecords((d / "bad").string()), ContainsSubstring("checksum"));
}

TEST_CASE("training writes TensorBoard scalars equal to metrics.jsonl, also across a resume", "[compare]") {
  auto d = test::temp_dir("tb-run");
  std::vector<uint32_t> toks;
  for (int i = 0; i < 3000; ++i) toks.push_back(static_cast<uint32_t>((i * 7 + i / 13) % 64));
  std::string data = test::make_dataset(d / "data", "train", {toks}, 64);
  test::write_file(d / "r.yaml", "model:\n  n_layers: 2\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 64\n"
                                 "  vocab_size: 64\n  max_seq_len: 32\ndata:\n  train: " + data + "\n  seq_len: 16\n"
                                 "train:\n  steps: 10\n  micro_batch: 4\n  global_batch: 4\n  warmup_steps: 1\n"
                                 "checkpoint:\n  every: 100\nlog:\n  every: 1\n");
  std::string cmd = "train --config " + (d / "r.yaml").string() + " --run-dir " + (d / "run").string();
  REQUIRE(test::run_yocotron(cmd + " --set train.exit_after_steps=4").exit_code == 0);
  REQUIRE(test::run_yocotron(cmd).exit_code == 0);
  int files = 0, repeats = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(d / "run" / "tb")) ++files;
  const std::map<int64_t, float> tb_loss = test::tb_scalars(d / "run" / "tb", &repeats)["loss"];
  CHECK(repeats == 0);  // no step twice, though the run was resumed
  CHECK(files == 2);
  std::istringstream in(test::read_file(d / "run" / "metrics.jsonl"));
  int rows = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    ++rows;
    CHECK(tb_loss.at(j["step"].get<int64_t>()) == static_cast<float>(j["loss"].get<double>()));
  }
  CHECK(rows == 10);
  CHECK(tb_loss.size() == 10);
}
