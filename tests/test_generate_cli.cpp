// `yocotron generate` as a user runs it: a real tokenizer trained by `yocotron tokenize` on the Brown
// sample, a tiny real training run, the real binary. Its ids are checked against generate() run here
// on the same checkpoint, its text against the tokenizer service's own decoding, and every bad input
// against one error line and exit status 2.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/config.h"
#include "yocotron/generation.h"
#include "yocotron/hf.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kPrompt = "The jury said";

std::string recipe_text(const fs::path& dataset, int64_t steps, const std::string& arch = "yocopp") {
  return "model:\n  arch: " + arch + "\n  yoco:\n    window: 8\n    loops: 2\n    chunk: 8\n  n_layers: 4\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 128\n"
         "  vocab_size: 512\n  max_seq_len: 48\n  attention: math\n"
         "data:\n  train: " + (dataset / "train").string() + "\n  seq_len: 32\n"
         "train:\n  steps: " + std::to_string(steps) + "\n  micro_batch: 8\n  global_batch: 8\n  lr: 0.01\n"
         "  min_lr: 0.001\n  warmup_steps: 5\ncheckpoint:\n  every: 0\nlog:\n  every: 10\n";
}

test::ProcResult train(const fs::path& dir, const fs::path& dataset, int64_t steps, const fs::path& run,
                       const std::string& arch = "yocopp") {
  test::write_file(dir / (run.filename().string() + ".yaml"), recipe_text(dataset, steps, arch));
  return test::run_yocotron("train --config " + (dir / (run.filename().string() + ".yaml")).string() + " --run-dir " +
                            run.string());
}

// One dataset and one trained YOCO++ run for the whole binary.
struct TrainedRun {
  fs::path dir, dataset, run;
  TrainedRun() : dir(test::temp_dir("generate-cli")) {
    dataset = test::tokenized_brown(dir, 512);
    run = dir / "run";
    auto r = train(dir, dataset, 100, run);
    if (r.exit_code != 0) throw std::runtime_error("training failed: " + r.err);
  }
};
const TrainedRun& trained() {
  static TrainedRun t;
  return t;
}

// On the CPU whatever the machine, so the ids compare with the fp32 reference computed here.
test::ProcResult generate_cli(const std::string& source, const std::string& args) {
  return test::run_yocotron("generate '" + source + "' --device cpu " + args);
}

json generate_json(const std::string& source, const std::string& args) {
  auto r = generate_cli(source, args + " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

// The greedy continuation computed here: the checkpoint loaded by hand, generate() with the cache.
std::vector<int64_t> greedy_here(const fs::path& run, const std::vector<int64_t>& prompt, int64_t n) {
  LoadedCheckpoint ck = load_checkpoint(resolve_checkpoint_path(run.string()));
  Decoder d(config_from_yaml(ck.state.config_yaml, {}, ck.dir).model);
  d->load_global_state(ck.tensors.model, ck.dir);
  GenerationOptions o;
  o.max_new_tokens = n;
  o.sampling.temperature = 0;
  o.eos_id = 2;
  return generate(d, {prompt}, o).tokens[0];
}

// Exit status 2 and one line saying what is wrong (a usage error may add the "(see --help)" hint).
void check_bad_input(const test::ProcResult& r, const std::string& says) {
  INFO(r.err);
  CHECK(test::bad_input_problem(r, says, "generate") == "");
}

}  // namespace

TEST_CASE("generate: greedy ids equal generate() on the checkpoint; the text is the tokenizer's", "[generate_cli]") {
  const TrainedRun& t = trained();
  TokenizerClient tok((t.dataset / "tokenizer.model").string());
  const std::vector<int64_t> prompt = tok.encode(kPrompt);
  const std::vector<int64_t> expected = greedy_here(t.run, prompt, 8);
  REQUIRE(!expected.empty());

  json j = generate_json(t.run.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 8");
  CHECK(j["prompt_ids"].get<std::vector<int64_t>>() == prompt);
  std::vector<int64_t> out = j["output_ids"];
  CHECK(out == expected);
  CHECK((out.size() == 8 || out.back() == 2));  // stops after 8 tokens or at EOS
  // The text is what the new ids add to the prompt, as the tokenizer decodes them in context.
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), out.begin(), out.end());
  CHECK(tok.decode(prompt) == kPrompt);
  CHECK(j["text"] == tok.decode(all).substr(std::string(kPrompt).size()));
  CHECK(!j["text"].get<std::string>().empty());
  CHECK(j["prefill_ms"].get<double>() > 0);
  CHECK(j["decode_tokens_per_s"].get<double>() >= 0);
  CHECK(j["dtype"] == "fp32");

  // The checkpoint directory itself, without early exit, and as streamed text: the same continuation.
  fs::path ckpt = resolve_checkpoint_path(t.run.string());
  json full = generate_json(ckpt.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 8 --no-early-exit");
  CHECK(full["output_ids"] == j["output_ids"]);
  auto text = generate_cli(t.run.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 8");
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out == kPrompt + j["text"].get<std::string>() + "\n");
  CHECK_THAT(text.err, ContainsSubstring("tokens/s"));
}

TEST_CASE("generate: the original YOCO family (windows, retention, loops) from a trained run", "[generate_cli]") {
  const TrainedRun& t = trained();
  TokenizerClient tok((t.dataset / "tokenizer.model").string());
  const std::vector<int64_t> prompt = tok.encode(kPrompt);
  for (const char* arch : {"yoco_swa", "yoco_gret", "yocou"}) {
    INFO(arch);
    fs::path run = t.dir / (std::string("run_") + arch);
    auto r = train(t.dir, t.dataset, 6, run, arch);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    // 12 new tokens after the prompt: the window of 8 wraps in the cache.
    json j = generate_json(run.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 12");
    CHECK(j["output_ids"].get<std::vector<int64_t>>() == greedy_here(run, prompt, 12));
    json full = generate_json(run.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 12 --no-early-exit");
    CHECK(full["output_ids"] == j["output_ids"]);
  }
}

TEST_CASE("generate: a seed repeats its samples; batches and prompt files", "[generate_cli]") {
  const TrainedRun& t = trained();
  const std::string sample = std::string("--prompt '") + kPrompt + "' --temperature 1 --top-k 50 --top-p 0.95 --max-new-tokens 12";
  json a = generate_json(t.run.string(), sample + " --seed 7");
  json b = generate_json(t.run.string(), sample + " --seed 7");
  CHECK(a["output_ids"] == b["output_ids"]);
  CHECK(a["text"] == b["text"]);

  // --batch 4: four samples of one prompt, drawn in sequence from one seeded generator.
  json batch = generate_json(t.run.string(), sample + " --seed 7 --batch 4");
  REQUIRE(batch["output_ids"].size() == 4);
  REQUIRE(batch["prompt_ids"].size() == 4);
  std::set<std::vector<int64_t>> distinct;
  for (const auto& row : batch["output_ids"]) distinct.insert(row.get<std::vector<int64_t>>());
  CHECK(distinct.size() >= 2);

  // A prompt file: one prompt per line, generated together (left-padded), each as it is alone.
  fs::path file = t.dir / "prompts.txt";
  test::write_file(file, std::string(kPrompt) + "\nIn the morning the river\n");
  json two = generate_json(t.run.string(), "--prompt-file " + file.string() + " --temperature 0 --max-new-tokens 8");
  REQUIRE(two["text"].size() == 2);
  json first = generate_json(t.run.string(), std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 8");
  CHECK(two["output_ids"][0] == first["output_ids"]);
  json second = generate_json(t.run.string(), "--prompt 'In the morning the river' --temperature 0 --max-new-tokens 8");
  CHECK(two["output_ids"][1] == second["output_ids"]);
  CHECK(two["prompt_ids"][1] == second["prompt_ids"]);
  auto bos = generate_json(t.run.string(), std::string("--prompt '") + kPrompt + "' --bos --max-new-tokens 2");
  CHECK(bos["prompt_ids"][0] == 1);
  CHECK(bos["prompt_ids"].size() == first["prompt_ids"].size() + 1);
}

TEST_CASE("generate: hf:DIR after export-hf gives the same ids; the export carries the tokenizer", "[generate_cli]") {
  const TrainedRun& t = trained();
  fs::path hf = t.dir / "hf";
  auto e = test::run_yocotron("export-hf " + t.run.string() + " --out " + hf.string());
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  CHECK_THAT(e.out, ContainsSubstring("copied " + (t.dataset / "tokenizer.model").string()));
  CHECK(test::read_file(hf / "tokenizer.model") == test::read_file(t.dataset / "tokenizer.model"));
  const std::string args = std::string("--prompt '") + kPrompt + "' --temperature 0 --max-new-tokens 8";
  json from_run = generate_json(t.run.string(), args);
  json from_hf = generate_json("hf:" + hf.string(), args);
  CHECK(from_hf["output_ids"] == from_run["output_ids"]);
  CHECK(from_hf["text"] == from_run["text"]);
  CHECK(from_hf["tokenizer"] == (hf / "tokenizer.model").string());

  // Without its tokenizer.model the export needs --tokenizer.
  fs::remove(hf / "tokenizer.model");
  check_bad_input(generate_cli("hf:" + hf.string(), args),
                  "hf:" + hf.string() + ": no tokenizer found (looked for " + (hf / "tokenizer.model").string() + ")");
  json given = generate_json("hf:" + hf.string(), args + " --tokenizer " + (t.dataset / "tokenizer.model").string());
  CHECK(given["output_ids"] == from_run["output_ids"]);
}

TEST_CASE("generate: bad input is one line and exit status 2", "[generate_cli]") {
  const TrainedRun& t = trained();
  const std::string run = t.run.string();
  const std::string p = std::string("--prompt '") + kPrompt + "'";
  check_bad_input(generate_cli((t.dir / "no-such-run").string(), p), (t.dir / "no-such-run").string() + ": no such run");
  check_bad_input(generate_cli(t.dir.string(), p), t.dir.string() + ": neither a checkpoint directory nor a run directory");
  check_bad_input(generate_cli("hf:" + (t.dir / "nothing").string(), p), "no such directory");
  check_bad_input(generate_cli(run, "--prompt ''"), "--prompt is empty");
  check_bad_input(generate_cli(run, ""), "give exactly one of --prompt TEXT and --prompt-file FILE");
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "the river and the mountain ";
  check_bad_input(generate_cli(run, "--prompt '" + long_prompt + "'"), "leaves no room to generate within model.max_seq_len=48");
  check_bad_input(generate_cli(run, p + " --max-new-tokens 46"), "plus --max-new-tokens 46 exceeds model.max_seq_len=48");
  check_bad_input(generate_cli(run, p + " --max-new-tokens 0"), "--max-new-tokens 0: out of range; expected an integer >= 1");
  check_bad_input(generate_cli(run, p + " --max-new-tokens many"), "--max-new-tokens many: not an integer; expected an integer >= 1");
  check_bad_input(generate_cli(run, p + " --temperature -1"), "--temperature -1: out of range; expected a number in [0, 100]");
  check_bad_input(generate_cli(run, p + " --top-p 1.5"), "--top-p 1.5: out of range; expected a number in [0, 1]");
  check_bad_input(generate_cli(run, p + " --top-p 0"), "--top-p must be > 0, found 0");
  check_bad_input(generate_cli(run, p + " --top-k -3"), "--top-k -3: out of range; expected an integer >= 0");
  check_bad_input(generate_cli(run, p + " --batch 0"), "--batch 0: out of range; expected an integer in [1, 4096]");
  check_bad_input(generate_cli(run, p + " --seed -2"), "--seed -2: out of range; expected an integer >= 0");
  check_bad_input(test::run_yocotron("generate " + run + " " + p + " --device tpu"), "--device must be cpu, cuda or auto, found 'tpu'");
  check_bad_input(generate_cli(run, p + " --tokenizer " + (t.dir / "none.model").string()),
                  "--tokenizer " + (t.dir / "none.model").string() + ": no such file");
  test::write_file(t.dir / "bogus.model", "not a model");
  check_bad_input(generate_cli(run, p + " --tokenizer " + (t.dir / "bogus.model").string()),
                  (t.dir / "bogus.model").string() + ": not a SentencePiece model");
  fs::path prompts = t.dir / "gappy.txt";
  test::write_file(prompts, "one\n\nthree\n");
  check_bad_input(generate_cli(run, "--prompt-file " + prompts.string()), prompts.string() + ":2: an empty prompt");

  // A run whose dataset has lost its tokenizer: every place searched is named.
  fs::path copy = t.dir / "copy";
  fs::create_directories(copy);
  fs::copy(t.dataset, copy / "brown", fs::copy_options::recursive);
  auto lost = train(t.dir, copy / "brown", 6, t.dir / "lost");
  INFO(lost.err);
  REQUIRE(lost.exit_code == 0);
  fs::remove(copy / "brown" / "tokenizer.model");
  const std::string ckpt = resolve_checkpoint_path((t.dir / "lost").string());
  check_bad_input(generate_cli((t.dir / "lost").string(), p),
                  "no tokenizer found (looked for " + ckpt + "/tokenizer.model and " +
                      (copy / "brown" / "tokenizer.model").string() + ")");
}
