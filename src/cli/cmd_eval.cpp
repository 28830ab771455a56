// `yocotron eval SOURCE --tasks ... | --ppl SPLIT`: a trained model's accuracy on multiple-choice
// tasks, scored as lm-evaluation-harness 0.4.9.1 scores them (eval_tasks.h, eval_scorer.h), and the
// perplexity of tokenized splits (eval_ppl.h). The model and its tokenizer are found as
// model_source.h says. Under mpirun every process takes its share of the items (eval_run.h) and
// rank 0 prints the results, which equal one process's.
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/device.h"
#include "yocotron/eval_ppl.h"
#include "yocotron/eval_run.h"
#include "yocotron/model_source.h"
#include "yocotron/mpi_env.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

namespace yt::cli {
namespace {

using nlohmann::json;

std::vector<std::string> task_names(const ArgParser& p) {
  std::vector<std::string> out;
  for (const auto& list : p.all("--tasks"))
    for (const auto& name : split(list, ','))
      if (!name.empty()) out.push_back(name);
  return out;
}

json nullable(const std::optional<double>& v) { return v && std::isfinite(*v) ? json(*v) : json(nullptr); }

json task_json(const TaskResult& r) {
  return {{"acc", r.acc},         {"acc_stderr", nullable(r.acc_stderr)}, {"acc_norm", nullable(r.acc_norm)},
          {"acc_norm_stderr", nullable(r.acc_norm_stderr)}, {"n", r.n}, {"source", r.source}, {"seconds", r.seconds},
          {"items_per_s", r.seconds > 0 ? static_cast<double>(r.n) / r.seconds : 0.0}};
}

// One line per choice, for parity checks against another implementation (tests/parity/eval_parity.py).
void dump_choices(std::ofstream& out, const TokenizedTask& t, const ScoredTask& s) {
  for (size_t i = 0; i < t.task.items.size(); ++i)
    for (size_t c = 0; c < t.task.items[i].n_choices(); ++c) {
      McRequest r = request_for(t.task.items[i], c);
      json j = {{"task", t.task.name},   {"item", i},
                {"choice", c},           {"gold", t.task.items[i].gold},
                {"context", r.context},  {"continuation", r.continuation},
                {"context_ids", t.requests[i][c].context}, {"continuation_ids", t.requests[i][c].continuation},
                {"loglik", s.lls[i][c]}};
      out << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    }
}

}  // namespace

int run_eval(const Args& args) {
  ArgParser p("eval",
              "Evaluate a trained model: accuracy on multiple-choice tasks, scored as lm-evaluation-harness\n"
              "0.4.9.1 does (acc, acc_norm, standard errors, n, average), and the perplexity and bits per byte\n"
              "of tokenized splits. SOURCE is a run directory, a checkpoint directory or hf:DIR. Under\n"
              "mpirun every process scores its share of the items; the numbers equal one process's.\n"
              "docs/evaluation.md has the task files, where to get them and how the numbers relate to lm-eval's.");
  p.positional("SOURCE", "RUN_DIR, CHECKPOINT_DIR or hf:DIR", true)
      .option("--tasks", "LIST", "comma-separated task names (hellaswag, arc_easy, arc_challenge, openbookqa, piqa, "
                                 "winogrande) or FILE.jsonl task files",
              true)
      .option("--data", "DIR", "where the named tasks' raw files are (default: .)")
      .integer("--limit", "N", "score the first N items of each task only (default: all)", 1)
      .integer("--batch", "B", "items per forward pass (default 32)", 1, 65536)
      .option("--ppl", "DATASET/SPLIT", "perplexity, loss and bits per byte of a tokenized split", true)
      .integer("--ppl-seq-len", "N", "window length for --ppl (default: model.max_seq_len)", 1)
      .option("--tokenizer", "FILE.model", "use this SentencePiece model instead of the one found with the model")
      .option("--device", "cpu|cuda", "where to run (default: cuda when a GPU is visible, else cpu)")
      .option("--dtype", "fp32|bf16", "weights and activations (default: bf16 on cuda, fp32 on cpu)")
      .option("--dump-choices", "FILE", "write every choice's context, continuation, token ids and log-likelihood "
                                         "as JSON lines (one process only)")
      .flag("--json", "print one JSON object instead of the table");
  if (!p.parse(args)) return 0;
  const std::vector<std::string> names = task_names(p);
  if (names.empty() && !p.has("--ppl")) throw UsageError("give --tasks LIST and/or --ppl DATASET/SPLIT");
  const std::string dtype_name = p.get("--dtype");
  if (!dtype_name.empty() && dtype_name != "fp32" && dtype_name != "bf16")
    throw UsageError("--dtype must be fp32 or bf16, found '" + dtype_name + "'");
  MpiEnv& mpi = MpiEnv::get();
  if (p.has("--dump-choices") && mpi.size() > 1) throw UsageError("--dump-choices needs one process (not mpirun)");
  const EvalShard shard{mpi.rank(), mpi.size(), mpi.size() > 1 ? MPI_COMM_WORLD : MPI_COMM_SELF};
  const bool rank0 = mpi.rank() == 0;
  const int64_t batch = p.get_integer("--batch", 32);

  // Bad input first (task files, splits), before the model is loaded.
  std::vector<McTask> tasks;
  for (const auto& n : names) tasks.push_back(load_task(n, p.get("--data"), p.get_integer("--limit", 0)));
  std::vector<std::shared_ptr<const TokenDataset>> splits;
  for (const auto& s : p.all("--ppl")) {
    try {
      splits.push_back(TokenDataset::open(s));
    } catch (const std::runtime_error& e) {
      throw ConfigError({cat("--ppl ", s, ": ", e.what())});
    }
  }

  const std::string source = p.positionals()[0];
  ModelSource src = open_model_source(source);
  std::unique_ptr<TokenizerClient> tok = open_model_tokenizer(src, source, p.get("--tokenizer"));
  for (const auto& ds : splits)
    if (ds->tokenizer_fingerprint() != tok->fingerprint())
      throw ConfigError({cat("--ppl ", ds->split_dir(), ": tokenized with another tokenizer than ", tok->model_path())});
  at::Device device = inference_device(p.get("--device"));
  if (device.is_cuda()) {
    device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(mpi.local_rank() % cuda_device_count()));
    set_current_cuda_device(device.index());
  }
  const at::ScalarType dtype = dtype_name.empty() ? (device.is_cuda() ? at::kBFloat16 : at::kFloat)
                                                  : (dtype_name == "bf16" ? at::kBFloat16 : at::kFloat);
  const ModelConfig& mc = src.config.model;
  if (!device.is_cuda() && (mc.attention == "cudnn" || mc.attention == "flash")) src.config.model.attention = "auto";
  Decoder model = load_model(src);
  prepare_for_inference(model, device, dtype);

  std::ofstream dump;
  if (p.has("--dump-choices")) {
    dump.open(p.get("--dump-choices"));
    if (!dump) throw ConfigError({cat("--dump-choices ", p.get("--dump-choices"), ": cannot open for writing")});
  }
  std::vector<TaskResult> results;
  for (auto& task : tasks) {
    const std::string name = task.name;
    TokenizedTask t = tokenize_task(std::move(task), *tok, shard);
    // A progress line redrawn in place on a terminal; nothing when stderr is a file.
    const bool show = rank0 && isatty(STDERR_FILENO);
    int64_t shown = -1;
    auto progress = [&](int64_t done, int64_t total) {
      if (show && done != shown) std::cerr << "\r" << name << ": " << (shown = done) << "/" << total << " items" << std::flush;
    };
    std::optional<ScoredTask> s = score_task(model, t, shard, batch, {}, progress);
    if (show) std::cerr << "\n";
    results.push_back(s->result);
    if (dump.is_open()) dump_choices(dump, t, *s);
  }
  std::vector<PplResult> ppl;
  for (const auto& ds : splits) {
    PplOptions o;
    o.seq_len = p.get_integer("--ppl-seq-len", 0);
    o.batch = batch;
    o.shard = shard;
    ppl.push_back(split_perplexity(model, *ds, *tok, o));
  }
  if (!rank0) return 0;
  if (p.has("--json")) {
    json out = {{"model", source}, {"device", device.str()}, {"dtype", dtype == at::kBFloat16 ? "bf16" : "fp32"},
                {"processes", mpi.size()}, {"tokenizer", tok->model_path()}, {"tasks", json::object()}, {"ppl", json::object()}};
    double acc = 0, norm = 0;
    int n_norm = 0;
    for (const auto& r : results) {
      out["tasks"][r.name] = task_json(r);
      acc += r.acc;
      if (r.acc_norm) norm += *r.acc_norm, ++n_norm;
    }
    if (!results.empty())
      out["average"] = {{"acc", acc / static_cast<double>(results.size())},
                        {"acc_norm", n_norm ? json(norm / n_norm) : json(nullptr)}};
    for (const auto& r : ppl)
      out["ppl"][r.split] = {{"loss", r.loss()}, {"perplexity", std::exp(r.loss())}, {"bits_per_byte", nullable(r.bits_per_byte())},
                             {"tokens", r.tokens}, {"bytes", r.bytes}, {"seconds", r.seconds}};
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    std::cout << results_table(results, ppl);
  }
  return 0;
}

}  // namespace yt::cli
