// `yocotron <command> [options]`: dispatch, and the one place that turns errors into exit codes.
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/errors.h"
#include "yocotron/stop_signal.h"
#include "yocotron/str.h"

namespace yt::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"config", "print the fully resolved recipe as YAML", run_config},
      {"train", "train a recipe (resumable; mpirun for several processes)", run_train},
      {"compare", "plot runs' loss curves on one chart and tabulate them", run_compare},
      {"tokenize", "tokenize a corpus into checksummed token shards", run_tokenize},
      {"inspect", "show a recipe's KV plan and sizes, or verify a shard or dataset", run_inspect},
      {"generate", "continue a prompt with a trained model (KV cache, greedy or sampled)", run_generate},
      {"eval", "score a model on multiple-choice tasks (lm-eval rules) and split perplexity", run_eval},
      {"bench", "measure throughput (one JSON line of figures)", run_bench},
      {"export-hf", "write a model as Hugging Face safetensors + config.json", run_export_hf},
      {"version", "print versions of yocotron, LibTorch, CUDA, NCCL and MPI", run_version},
  };
  return all;
}

namespace {

std::string top_help() {
  std::string h =
      "usage: yocotron <command> [options]\n\n"
      "yocotron: distributed pretraining of Llama-style decoders and their KV-sharing variants\n"
      "(Transformer, YOCO, YOCO++, FusedKV, ...) from YAML recipes. Launch multi-process runs with\n"
      "`mpirun -np N yocotron <command> ...`.\n\ncommands:\n";
  for (const auto& c : commands()) {
    std::string name = "  " + std::string(c.name);
    name.resize(14, ' ');
    h += name + c.summary + "\n";
  }
  h += "\n`yocotron <command> --help` describes a command's options.\n"
       "`yocotron --version` prints the versions this binary was built with.\n";
  return h;
}

int dispatch(const Args& argv) {
  if (argv.empty()) {
    std::cerr << top_help();
    return 2;
  }
  const std::string& name = argv[0];
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << top_help();
    return 0;
  }
  if (name == "--version") return run_version({});
  Args rest(argv.begin() + 1, argv.end());
  for (const auto& c : commands()) {
    if (name == c.name) return c.run(rest);
  }
  std::vector<std::string> names;
  for (const auto& c : commands()) names.push_back(c.name);
  std::string near = closest_match(name, names);
  std::cerr << "error: unknown command '" << name << "'" << (near.empty() ? "" : "; did you mean '" + near + "'?")
            << "\n\n" << top_help();
  return 2;
}

}  // namespace
}  // namespace yt::cli

int main(int argc, char** argv) {
  yt::cli::Args args(argv + 1, argv + argc);
  // A trainer is preemptible from its first instruction: a stop that lands during startup (MPI,
  // recipe, data) is served at the first safe point instead of killing the process (exit 75, not 143).
  if (!args.empty() && args[0] == "train") yt::install_stop_handlers();
  // A file-size limit (ulimit -f) must fail the write with EFBIG, which is reported with the file's
  // name, not kill the process silently.
  std::signal(SIGXFSZ, SIG_IGN);
  // The one place where errors become messages: LibTorch's lose their C++ backtrace on the way.
  return yt::run_cli(args.empty() ? "" : args[0], [&] { return yt::without_backtraces([&] { return yt::cli::dispatch(args); }); });
}
