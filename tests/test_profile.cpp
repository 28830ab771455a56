// The profiler and out-of-memory messages as a user meets them: `yocotron bench --profile`,
// `log.profile_steps` in `yocotron train`, and a run that cannot allocate its activations.
// Real processes, real files.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include <c10/util/Exception.h>

#include "yocotron/checkpoint.h"
#include "yocotron/device.h"
#include "yocotron/errors.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string recipe(const fs::path& dir, const std::string& train_data, const std::string& extra = "") {
  std::string text = "model:\n  arch: yocopp\n  n_layers: 2\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                     "  d_ffn: 64\n  vocab_size: 64\n  max_seq_len: 32\n"
                     "data:\n  train: " + train_data + "\n  seq_len: 16\n"
                     "train:\n  steps: 6\n  micro_batch: 4\n  global_batch: 8\n  lr: 0.01\n  min_lr: 0.001\n"
                     "  warmup_steps: 2\n  device: cpu\n"
                     "checkpoint:\n  every: 100\nlog:\n  every: 1\n" + extra;
  fs::path p = dir / "recipe.yaml";
  test::write_file(p, text);
  return p.string();
}

std::set<std::string> event_names(const json& trace) {
  std::set<std::string> names;
  for (const auto& e : trace["traceEvents"])
    if (e.contains("name") && e["name"].is_string()) names.insert(e["name"].get<std::string>());
  return names;
}

bool any_of(const std::set<std::string>& names, std::initializer_list<const char*> wanted) {
  for (const char* w : wanted)
    if (names.count(w)) return true;
  return false;
}

// The summary's table rows: "  12.34%    1.234    48    25.7  name" -> shares in percent.
std::vector<double> summary_shares(const std::string& text, const std::string& section) {
  std::vector<double> shares;
  std::istringstream in(text);
  bool inside = false;
  std::regex row(R"(^\s*([0-9]+\.[0-9]+)%\s+[0-9.]+\s+[0-9]+\s+)");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(section, 0) == 0) inside = true, shares.clear();
    else if (line.empty()) inside = false;
    std::smatch m;
    if (inside && std::regex_search(line, m, row)) shares.push_back(std::stod(m[1]));
  }
  return shares;
}

void check_summary(const std::string& text) {
  INFO(text);
  auto ops = summary_shares(text, "top ");
  REQUIRE(ops.size() >= 5);
  double sum = 0;
  for (double s : ops) {
    CHECK(s >= 0);
    sum += s;
  }
  CHECK(sum <= 100.0);
  CHECK(sum >= 90.0);  // the top rows and "[N others]" cover the whole
  for (size_t i = 1; i + 1 < ops.size(); ++i) CHECK(ops[i] <= ops[i - 1]);  // sorted (the last row is the rest)
  auto phases = summary_shares(text, "phases");
  REQUIRE(phases.size() >= 4);
  for (double s : phases) CHECK(s <= 100.0);
  CHECK_THAT(text, ContainsSubstring("yocotron::forward"));
  CHECK_THAT(text, ContainsSubstring("by CPU self time"));
}

// Each forward op the tiny model dispatches on the CPU path, and the phase ranges of a step.
void check_trace(const fs::path& path) {
  INFO(path);
  REQUIRE(fs::exists(path));
  json trace = json::parse(test::read_file(path));  // throws (fails the test) unless it is JSON
  REQUIRE(trace.contains("traceEvents"));
  REQUIRE(trace["traceEvents"].is_array());
  auto names = event_names(trace);
  INFO("events: " << names.size());
  CHECK(names.count("aten::embedding"));
  CHECK(any_of(names, {"aten::linear", "aten::matmul", "aten::mm"}));
  CHECK(names.count("aten::silu"));
  CHECK(names.count("aten::mul"));
  CHECK(any_of(names, {"aten::softmax", "aten::_softmax", "aten::scaled_dot_product_attention"}));
  // The loss (head + cross entropy in chunks) and the blocks' own autograd functions, with their ops.
  for (const char* range : {"yocotron::linear_cross_entropy", "yocotron::norm_project", "yocotron::swiglu_down",
                            "yocotron::norm_project_backward", "yocotron::swiglu_down_backward"})
    CHECK(names.count(range));
  CHECK(names.count("aten::exp"));
  for (const char* phase : {"yocotron::step", "yocotron::forward", "yocotron::backward", "yocotron::grad_sync", "yocotron::optimizer"})
    CHECK(names.count(phase));
  // Ops carry their input shapes (record_shapes).
  bool shapes = false;
  for (const auto& e : trace["traceEvents"])
    if (e.value("name", "") == "aten::embedding" && e.contains("args") && e["args"].contains("Input Dims")) shapes = true;
  CHECK(shapes);
}

}  // namespace

TEST_CASE("bench --profile writes a Chrome trace with every forward op and phase, and a summary", "[profile]") {
  fs::path dir = test::temp_dir("profile-bench");
  std::string r = recipe(dir, "unused");
  auto res = test::run_yocotron("bench --config " + r + " --steps 1 --warmup 1 --profile " + (dir / "prof").string() +
                                " --profile-steps 2");
  INFO(res.err);
  REQUIRE(res.exit_code == 0);
  json line = json::parse(res.out);
  CHECK(line["profile_steps"] == 2);
  CHECK(line["profile_trace"] == (dir / "prof" / "bench.rank0.json").string());
  check_trace(dir / "prof" / "bench.rank0.json");
  REQUIRE(fs::exists(dir / "prof" / "bench.rank0.summary.txt"));
  std::string summary = test::read_file(dir / "prof" / "bench.rank0.summary.txt");
  check_summary(summary);
  CHECK_THAT(summary, ContainsSubstring("yocotron bench: yocopp"));
  // Two profiled steps: each phase range twice.
  json trace = json::parse(test::read_file(dir / "prof" / "bench.rank0.json"));
  int steps = 0;
  for (const auto& e : trace["traceEvents"]) steps += e.value("name", "") == "yocotron::step";
  CHECK(steps == 2);

  auto bad = test::run_yocotron("bench --config " + r + " --profile-steps 2");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, ContainsSubstring("--profile-steps needs --profile DIR"));
}

TEST_CASE("train with log.profile_steps=[2,3] writes the trace and summary of steps 2-3", "[profile]") {
  fs::path dir = test::temp_dir("profile-train");
  std::string data = test::make_dataset(dir / "data", "train", {test::markov_tokens(3000, 64, 7)}, 64);
  std::string r = recipe(dir, data);
  auto res = test::run_shell("'" + test::yocotron_bin() + "' train --config " + r + " --run-dir " + (dir / "run").string() +
                             " --set 'log.profile_steps=[2,3]'");
  INFO(res.err);
  REQUIRE(res.exit_code == 0);
  CHECK_THAT(res.out, ContainsSubstring("profile of steps 2-3"));
  fs::path trace = dir / "run" / "profile" / "steps_2-3.rank0.json";
  check_trace(trace);
  json t = json::parse(test::read_file(trace));
  int steps = 0;
  for (const auto& e : t["traceEvents"]) steps += e.value("name", "") == "yocotron::step";
  CHECK(steps == 2);
  std::string summary = test::read_file(dir / "run" / "profile" / "steps_2-3.rank0.summary.txt");
  check_summary(summary);
  CHECK_THAT(summary, ContainsSubstring("yocotron train: yocopp, steps 2-3, rank 0 of 1, cpu"));
  // Nothing else was profiled, and the run's curve is complete.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "run" / "profile")) files += e.is_regular_file();
  CHECK(files == 2);
  CHECK(test::read_file(dir / "run" / "metrics.jsonl").find("\"step\":6") != std::string::npos);
}

TEST_CASE("out of memory: one line naming phase, step, micro-batch and what to try; exit 1; checkpoint kept", "[profile]") {
  fs::path dir = test::temp_dir("oom");
  // Room for 4096-token sequences, trained first at 16 tokens with a checkpoint after step 2.
  std::string data = test::make_dataset(dir / "data", "train", {test::markov_tokens(140000, 64, 3)}, 64, 0x1234, 5000);
  std::string r = recipe(dir, data);
  std::string common = " --set model.max_seq_len=4096 --set checkpoint.every=2";
  fs::path run = dir / "run";
  auto first = test::run_shell("'" + test::yocotron_bin() + "' train --config " + r + " --run-dir " + run.string() + common +
                               " --set train.exit_after_steps=2");
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  fs::path ckpt = run / "checkpoints" / "step_00000002";
  REQUIRE(fs::exists(ckpt));
  const std::string latest = test::read_file(run / "checkpoints" / "latest");

  // Resumed with 32 x 4096-token micro-batches under an 8 GiB address-space limit: the math
  // attention's scores alone (32 x 4 heads x 4096 x 4096 fp32 = 8 GiB) cannot be allocated.
  auto oom = test::run_shell("ulimit -v 8388608 && '" + test::yocotron_bin() + "' train --config " + r + " --run-dir " +
                             run.string() + common + " --set data.seq_len=4096 --set train.micro_batch=32 --set train.global_batch=32" +
                             " --set model.attention=math");  // LibTorch 2's CPU SDPA never holds the scores
  INFO(oom.err);
  CHECK(oom.exit_code == 1);
  int error_lines = 0;
  std::string error_line;
  std::istringstream in(oom.err);
  for (std::string line; std::getline(in, line);)
    if (line.find("error") != std::string::npos) ++error_lines, error_line = line;
  CHECK(error_lines == 1);
  CHECK_THAT(error_line, ContainsSubstring("error: out of memory on cpu in the forward pass of step 3 (micro-batch 32 x 4096 tokens): tried to allocate "));
  CHECK_THAT(error_line, ContainsSubstring(" GiB (the CPU allocator"));
  CHECK_THAT(error_line, ContainsSubstring("; try a smaller train.micro_batch (train.global_batch stays; more accumulation steps), "
                                           "train.recompute=selective or full, or parallel.tp=2"));
  CHECK(oom.err.find("frame #") == std::string::npos);
  CHECK(oom.err.find("Exception raised from") == std::string::npos);
  CHECK_NOTHROW(verify_checkpoint(ckpt.string()));
  CHECK(test::read_file(run / "checkpoints" / "latest") == latest);
  CHECK(list_checkpoints((run / "checkpoints").string()).size() == 1);

  // bench says the same, with its own step count.
  auto bench = test::run_shell("ulimit -v 8388608 && '" + test::yocotron_bin() + "' bench --config " + r +
                               " --set model.max_seq_len=4096 --set data.seq_len=4096 --set train.micro_batch=32"
                               " --set train.global_batch=32 --set model.attention=math --warmup 1 --steps 1");
  INFO(bench.err);
  CHECK(bench.exit_code == 1);
  CHECK_THAT(bench.err, ContainsSubstring("error: out of memory on cpu in the forward pass of step 1 (micro-batch 32 x 4096 tokens)"));
  CHECK(bench.err.find("frame #") == std::string::npos);
}

TEST_CASE("LibTorch errors reach the user without their C++ backtrace", "[profile]") {
  // The mechanism main() wraps every command in.
  try {
    without_backtraces([]() -> int { TORCH_CHECK(false, "the check failed: ", 42); });
    FAIL("no exception");
  } catch (const c10::Error&) {
    FAIL("a c10::Error got through");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "the check failed: 42");
  }
  try {
    TORCH_CHECK(false, "plain");
  } catch (const std::exception& e) {
    CHECK(error_text(e) == "plain");  // what() adds "Exception raised from ..." and the frames
  }
  // A command: the CPU allocator's failure in test "out of memory: ..." above reaches the user as one
  // line; every command runs inside without_backtraces (src/cli/main.cpp).
}
