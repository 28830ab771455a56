// `yocotron eval` as a user runs it: a tiny real training run with a real tokenizer (the Brown
// sample), the real binary. Its per-choice log-likelihoods are checked against one plain forward
// per request computed here with the tokenizer service and the checkpoint, its accuracies against
// those values, mpirun -np 2 against one process, and bad input against one line and exit status 2.
#include <csignal>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/config.h"
#include "yocotron/dataset.h"
#include "yocotron/eval_metrics.h"
#include "yocotron/hf.h"
#include "yocotron/eval_tasks.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct EvalRun {
  fs::path dir, dataset, run, task, wino;
  EvalRun() : dir(test::temp_dir("eval-cli")) {
    dataset = test::tokenized_brown(dir, 512);
    run = dir / "run";
    test::write_file(dir / "r.yaml",
                     "model:\n  arch: transformer\n  n_layers: 2\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 128\n"
                     "  vocab_size: 512\n  max_seq_len: 48\n  attention: math\n"
                     "data:\n  train: " + (dataset / "train").string() + "\n  seq_len: 32\n"
                     "train:\n  steps: 60\n  micro_batch: 8\n  global_batch: 8\n  lr: 0.01\n  min_lr: 0.001\n  warmup_steps: 5\n"
                     "checkpoint:\n  every: 0\nlog:\n  every: 10\n");
    auto r = test::run_yocotron("train --config " + (dir / "r.yaml").string() + " --run-dir " + run.string());
    if (r.exit_code != 0) throw std::runtime_error("training failed: " + r.err);
    // Items with a trailing space in the context, an empty context, choices of different lengths,
    // and one long enough to be truncated to the model's 48 tokens.
    std::string long_ctx;
    for (int i = 0; i < 12; ++i) long_ctx += "the jury said that the city of Atlanta ";
    json items = json::array(
        {{{"context", "The jury said "}, {"choices", {"it", "that the election was conducted", "of"}}, {"gold", 1}},
         {{"context", "He was"}, {"choices", {"a man", "the", "not in the city", "a"}}, {"gold", 0}},
         {{"context", ""}, {"choices", {"The city", "Of of of"}}, {"gold", 0}},
         {{"context", long_ctx}, {"choices", {"was", "in the state of Georgia and the county"}}, {"gold", 1}},
         {{"context", "In the morning the"}, {"choices", {"river", "house", "said"}}, {"gold", 2}}});
    std::string lines;
    for (int k = 0; k < 3; ++k)
      for (const auto& it : items) lines += it.dump() + "\n";
    task = dir / "cloze.jsonl";
    test::write_file(task, lines);
    wino = dir / "wino.jsonl";
    test::write_file(wino, "{\"contexts\": [\"The jury\", \"The city\"], \"continuation\": \"said it was fair.\", \"gold\": 0}\n"
                           "{\"contexts\": [\"He went to\", \"He went of\"], \"continuation\": \"the house.\", \"gold\": 0}\n"
                           "{\"contexts\": [\"A\", \"The\", \"An\"], \"continuation\": \"election\", \"gold\": 1}\n");
  }
};
const EvalRun& trained() {
  static EvalRun t;
  return t;
}

json eval_json(const std::string& args, const std::string& launcher = "") {
  auto r = test::run_shell(launcher + "'" + test::yocotron_bin() + "' eval " + args + " --device cpu --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

// Log-likelihood of each request, one full forward each, from the checkpoint loaded here.
struct Reference {
  Decoder model{nullptr};
  TokenizerClient tok;
  explicit Reference(const EvalRun& t) : tok((t.dataset / "tokenizer.model").string()) {
    LoadedCheckpoint ck = load_checkpoint(resolve_checkpoint_path(t.run.string()));
    model = Decoder(config_from_yaml(ck.state.config_yaml, {}, ck.dir).model);
    model->load_global_state(ck.tensors.model, ck.dir);
    model->eval();
  }
  double loglik(const McRequest& r) {
    torch::NoGradGuard g;
    TokenizedRequest t = encode_request(r, [&](const std::string& s) { return tok.encode(s); }, tok.bos_id());
    std::vector<int64_t> all = t.context;
    all.insert(all.end(), t.continuation.begin(), t.continuation.end());
    const size_t L = static_cast<size_t>(model->config().max_seq_len);
    if (all.size() > L + 1) all.erase(all.begin(), all.end() - static_cast<long>(L + 1));
    const int64_t n = static_cast<int64_t>(all.size()) - 1, k = static_cast<int64_t>(t.continuation.size());
    at::Tensor logp = model->forward(at::tensor(std::vector<int64_t>(all.begin(), all.end() - 1)).view({1, n})).log_softmax(-1)[0];
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += logp[n - k + j][t.continuation[static_cast<size_t>(j)]].item<double>();
    return sum;
  }
};

// The whole line: "error: " + says.
void check_bad_input(const test::ProcResult& r, const std::string& says) {
  INFO(r.err);
  CHECK(test::bad_input_problem(r, says, "eval") == "");
  CHECK(starts_with(r.err, "error: " + says + "\n"));
}

}  // namespace

TEST_CASE("eval cli: per-choice log-likelihoods equal one forward per request; acc from them", "[eval]") {
  const EvalRun& t = trained();
  fs::path dump = t.dir / "choices.jsonl";
  json j = eval_json(t.run.string() + " --tasks " + t.task.string() + "," + t.wino.string() + " --batch 4 --dump-choices " +
                     dump.string());
  Reference ref(t);
  McTask cloze = load_task(t.task.string(), "", 0), wino = load_task(t.wino.string(), "", 0);
  std::map<std::string, std::vector<std::vector<double>>> lls;
  size_t lines = 0;
  for (const auto& line : split(test::read_file(dump), '\n')) {
    if (line.empty()) continue;
    json c = json::parse(line);
    const McTask& task = c["task"] == "cloze" ? cloze : wino;
    const McItem& item = task.items[c["item"].get<size_t>()];
    McRequest r = request_for(item, c["choice"].get<size_t>());
    CHECK(c["context"] == r.context);
    CHECK(c["continuation"] == r.continuation);
    INFO(line);
    CHECK(c["loglik"].get<double>() == Approx(ref.loglik(r)).margin(1e-4));
    auto& v = lls[c["task"]];
    v.resize(task.items.size());
    v[c["item"].get<size_t>()].push_back(c["loglik"].get<double>());
    ++lines;
  }
  CHECK(lines == 3 * (3 + 4 + 2 + 2 + 3) + 2 + 2 + 3);  // cloze: 3 copies of 5 items; wino: 3 items
  for (const auto& [name, task] : {std::pair<std::string, const McTask*>{"cloze", &cloze}, {"wino", &wino}}) {
    TaskResult expect = summarize_task(*task, lls[name]);
    const json& got = j["tasks"][name];
    CHECK(got["n"] == task->items.size());
    CHECK(got["acc"].get<double>() == expect.acc);
    if (expect.acc_norm) CHECK(got["acc_norm"].get<double>() == *expect.acc_norm);
    else CHECK(got["acc_norm"].is_null());
    CHECK(got["items_per_s"].get<double>() > 0);
  }
  CHECK(j["average"]["acc"].get<double>() == Approx((j["tasks"]["cloze"]["acc"].get<double>() + j["tasks"]["wino"]["acc"].get<double>()) / 2));

  // The table says the same.
  auto table = test::run_yocotron("eval " + t.run.string() + " --tasks " + t.task.string() + " --device cpu --limit 5");
  INFO(table.err);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, ContainsSubstring("| cloze | "));
  CHECK_THAT(table.out, ContainsSubstring(" | 5 |"));
}

TEST_CASE("eval cli: mpirun -np 2 gives one process's numbers (tasks and perplexity)", "[eval]") {
  const EvalRun& t = trained();
  const std::string args = t.run.string() + " --tasks " + t.task.string() + "," + t.wino.string() + " --batch 2 --ppl " +
                           (t.dataset / "val").string();
  json one = eval_json(args), two = eval_json(args, test::mpirun(2));
  CHECK(two["processes"] == 2);
  for (const char* task : {"cloze", "wino"})
    for (const char* key : {"acc", "acc_norm", "acc_stderr", "n"}) {
      INFO(task << " " << key);
      CHECK(one["tasks"][task][key] == two["tasks"][task][key]);
    }
  const json& p1 = one["ppl"][(t.dataset / "val").string()];
  const json& p2 = two["ppl"][(t.dataset / "val").string()];
  CHECK(p1["tokens"] == p2["tokens"]);
  CHECK(p1["bytes"] == p2["bytes"]);
  CHECK(p1["loss"].get<double>() == Approx(p2["loss"].get<double>()).epsilon(1e-6));
}

TEST_CASE("eval cli: perplexity and bits per byte of a tokenized split", "[eval]") {
  const EvalRun& t = trained();
  json j = eval_json(t.run.string() + " --ppl " + (t.dataset / "val").string() + " --ppl-seq-len 32");
  const json& p = j["ppl"][(t.dataset / "val").string()];
  auto ds = TokenDataset::open((t.dataset / "val").string());
  CHECK(p["tokens"] == ds->n_tokens() - 1);
  // Independent: the mean loss of every window of 33 tokens, as the model's own loss computes it.
  Reference ref(t);
  const int64_t T = static_cast<int64_t>(ds->n_tokens());
  double nll = 0;
  for (int64_t b = 0; b + 1 < T; b += 32) {
    const int64_t len = std::min<int64_t>(33, T - b);
    std::vector<int64_t> w(static_cast<size_t>(len));
    ds->copy_tokens(static_cast<uint64_t>(b), static_cast<uint64_t>(len), w.data());
    at::Tensor x = at::tensor(w).view({1, len});
    torch::NoGradGuard g;
    nll += ref.model->loss(x.narrow(1, 0, len - 1), x.narrow(1, 1, len - 1)).item<double>() * static_cast<double>(len - 1);
  }
  CHECK(p["loss"].get<double>() == Approx(nll / static_cast<double>(T - 1)).epsilon(1e-5));
  CHECK(p["perplexity"].get<double>() == Approx(std::exp(p["loss"].get<double>())));
  // Bits per byte: the same nats over the decoded text's bytes, in bits.
  const double bytes = p["bytes"].get<double>();
  CHECK(bytes > static_cast<double>(T));  // English text: more than a byte per token
  CHECK(p["bits_per_byte"].get<double>() == Approx(nll / std::log(2.0) / bytes).epsilon(1e-5));
}

TEST_CASE("eval cli: bad input is one line naming the file and line, exit status 2", "[eval]") {
  const EvalRun& t = trained();
  const std::string run = t.run.string();
  auto eval = [&](const std::string& args) { return test::run_yocotron("eval " + run + " --device cpu " + args); };
  fs::path bad = t.dir / "bad.jsonl";
  test::write_file(bad, "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 0}\n{\"context\": \"A\", \"choices\": [\"b\", \n");
  check_bad_input(eval("--tasks " + bad.string()), bad.string() + ":2: not a JSON line (a task file holds one JSON object per line): "
                                                                  "{\"context\": \"A\", \"choices\": [\"b\", ");
  fs::path range = t.dir / "range.jsonl";
  test::write_file(range, "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 5}\n");
  check_bad_input(eval("--tasks " + range.string()), range.string() + ":1: gold index 5 is out of range for 2 choices");
  fs::path csv = t.dir / "task.csv";
  test::write_file(csv, "context,a,b,gold\n");
  check_bad_input(eval("--tasks " + csv.string()),
                  csv.string() + ":1: not a JSON line (a task file holds one JSON object per line: {\"context\", \"choices\", "
                                 "\"gold\"}, or a raw HellaSwag, ARC, OpenBookQA, PIQA or WinoGrande file)");
  check_bad_input(eval("--tasks " + (t.dir / "none.jsonl").string()), (t.dir / "none.jsonl").string() + ": no such task file");
  check_bad_input(eval("--tasks piqa --data " + t.dir.string()),
                  "task piqa: its file is not under " + t.dir.string() + " (looked for " + (t.dir / "piqa/valid.jsonl").string() +
                      ", " + (t.dir / "valid.jsonl").string() + "; give --data DIR, docs/evaluation.md says where to download it)");
  check_bad_input(eval(""), "give --tasks LIST and/or --ppl DATASET/SPLIT");
  check_bad_input(eval("--tasks " + t.task.string() + " --batch 0"), "--batch 0: out of range; expected an integer in [1, 65536]");
  check_bad_input(eval("--tasks " + t.task.string() + " --dtype fp16"), "--dtype must be fp32 or bf16, found 'fp16'");
}

TEST_CASE("eval cli: train.eval_tasks logs what `yocotron eval` reports, with DP=2 too; compare draws it", "[eval]") {
  const EvalRun& t = trained();
  auto recipe = [&](const std::string& name, int64_t micro) {
    fs::path p = t.dir / (name + ".yaml");
    test::write_file(p, "model:\n  arch: yocopp\n  n_layers: 2\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 128\n"
                        "  vocab_size: 512\n  max_seq_len: 48\n  attention: math\n"
                        "data:\n  train: " + (t.dataset / "train").string() + "\n  seq_len: 32\n"
                        // device cpu: under mpirun on a one-GPU node rank 1 has no GPU (the hook's results are compared
                        // with a CPU `yocotron eval`)
                        "train:\n  device: cpu\n  steps: 20\n  micro_batch: " + std::to_string(micro) + "\n  global_batch: 8\n  lr: 0.01\n"
                        "  min_lr: 0.001\n  warmup_steps: 5\n  eval_tasks: [" + t.task.string() + ", " + t.wino.string() + "]\n"
                        "  eval_tasks_every: 10\ncheckpoint:\n  every: 0\nlog:\n  every: 10\n  tensorboard: true\n");
    return p.string();
  };
  for (int np : {1, 2}) {
    INFO("processes: " << np);
    fs::path run = t.dir / cat("hook", np);
    auto r = test::run_shell((np > 1 ? test::mpirun(np) : "") + "'" + test::yocotron_bin() + "' train --config " +
                             recipe(cat("hook", np), 4) + " --run-dir " + run.string());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::vector<json> rows;
    for (const auto& line : split(test::read_file(run / "metrics.jsonl"), '\n'))
      if (!line.empty() && line.find("eval/cloze/acc") != std::string::npos) rows.push_back(json::parse(line));
    REQUIRE(rows.size() == 2);
    CHECK(rows[0]["step"] == 10);
    CHECK(rows[1]["step"] == 20);
    CHECK(rows[1].contains("eval/wino/acc"));
    CHECK(!rows[1].contains("eval/wino/acc_norm"));
    // The last scoring is of the final checkpoint's weights: `yocotron eval` of it, one process.
    json e = eval_json(run.string() + " --tasks " + t.task.string() + "," + t.wino.string());
    CHECK(rows[1]["eval/cloze/acc"] == e["tasks"]["cloze"]["acc"]);
    CHECK(rows[1]["eval/cloze/acc_norm"] == e["tasks"]["cloze"]["acc_norm"]);
    CHECK(rows[1]["eval/wino/acc"] == e["tasks"]["wino"]["acc"]);
    const std::string csv = test::read_file(run / "metrics_tasks.csv");
    CHECK(starts_with(csv, "step,tokens,task,acc,acc_stderr,acc_norm,acc_norm_stderr,n\n"));
    CHECK_THAT(csv, ContainsSubstring("\n20,5120,cloze,"));
    CHECK_THAT(r.err + r.out, ContainsSubstring("tasks at step 20: cloze acc "));
  }
  auto c = test::run_yocotron("compare " + (t.dir / "hook1").string() + " " + (t.dir / "hook2").string() + " --out " +
                              (t.dir / "cmp").string());
  INFO(c.err);
  REQUIRE(c.exit_code == 0);
  CHECK(fs::exists(t.dir / "cmp" / "task_cloze_acc.svg"));
  CHECK(fs::exists(t.dir / "cmp" / "task_cloze_acc_norm.svg"));
  CHECK(fs::exists(t.dir / "cmp" / "task_wino_acc.svg"));
  CHECK_THAT(test::read_file(t.dir / "cmp" / "report.md"), ContainsSubstring("(task_cloze_acc.svg)"));

  // A bad task file stops the run before its first step: one line, exit status 2.
  fs::path bad = t.dir / "bad-hook.jsonl";
  test::write_file(bad, "{\"context\": \"A\", \"choices\": [\"b\"], \"gold\": 0}\n");
  auto b = test::run_yocotron("train --config " + recipe("hook1", 4) + " --run-dir " + (t.dir / "badrun").string() +
                              " --set train.eval_tasks=[" + bad.string() + "]");
  CHECK(b.exit_code == 2);
  CHECK_THAT(b.err, ContainsSubstring("train.eval_tasks: " + bad.string() + ":1: an item needs at least 2 choices, found 1"));
}

TEST_CASE("eval cli: a stop signal during train.eval_tasks checkpoints; the resumed run scores that step first", "[eval]") {
  const EvalRun& t = trained();
  fs::path recipe = t.dir / "stop.yaml", run = t.dir / "stop-run";
  test::write_file(recipe, "model:\n  arch: transformer\n  n_layers: 2\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 128\n"
                           "  vocab_size: 512\n  max_seq_len: 48\n  attention: math\n"
                           "data:\n  train: " + (t.dataset / "train").string() + "\n  seq_len: 32\n"
                           "train:\n  steps: 20\n  micro_batch: 1\n  global_batch: 4\n  lr: 0.01\n  warmup_steps: 2\n"
                           "  eval_tasks: [" + t.task.string() + "]\n  eval_tasks_every: 10\n"
                           "checkpoint:\n  every: 0\nlog:\n  every: 10\n");
  const std::string cmd = "'" + test::yocotron_bin() + "' train --config " + recipe.string() + " --run-dir " + run.string();
  // 15 items, one per batch, each 0.4 s longer: a 6 s evaluation at step 10.
  test::Background b("env YOCOTRON_TEST_EVAL_BATCH_SECS=0.4 " + cmd);
  REQUIRE(test::wait_until([&] { return fs::exists(run / "metrics.jsonl") && !test::read_file(run / "metrics.jsonl").empty(); }, 120));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  b.signal(SIGTERM);
  const int code = b.wait(60);
  INFO(b.err());
  CHECK(code == 75);
  CHECK_THAT(b.err(), ContainsSubstring("stopped by a signal at step 10, during its evaluation"));
  CHECK(json::parse(test::read_file(run / "checkpoints" / "step_00000010" / "state.json"))["eval_pending"] == true);
  CHECK(test::read_file(run / "metrics.jsonl").find("eval/cloze/acc") == std::string::npos);
  auto resumed = test::run_shell(cmd);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  std::vector<int64_t> steps;
  for (const auto& line : split(test::read_file(run / "metrics.jsonl"), '\n'))
    if (line.find("eval/cloze/acc") != std::string::npos) steps.push_back(json::parse(line)["step"].get<int64_t>());
  CHECK(steps == std::vector<int64_t>{10, 20});
}
