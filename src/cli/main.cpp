// `yocotron <command> [options]`: dispatch, and the one place that turns errors into exit codes.
#include <cstdio>
#include <exception>
#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/str.h"

namespace yt::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"config", "print the fully resolved recipe as YAML", run_config},
      {"inspect", "show a recipe's KV plan, parameter counts and KV-cache bytes", run_inspect},
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
  using namespace yt;
  cli::Args args(argv + 1, argv + argc);
  try {
    return cli::dispatch(args);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    std::cerr << "(see `yocotron " << (args.empty() ? "" : args[0] + " ") << "--help`)\n";
    return 2;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) std::cerr << "error: " << p << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
