// The subcommands of the `yocotron` executable. Each takes the arguments after its name and
// returns the process exit code (0 ok, 1 runtime failure, 2 bad usage or bad recipe).
#pragma once
#include <string>
#include <vector>

namespace yt::cli {

using Args = std::vector<std::string>;

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args& args);
};

const std::vector<Command>& commands();

int run_config(const Args& args);
int run_version(const Args& args);
int run_inspect(const Args& args);
int run_export_hf(const Args& args);
int run_generate(const Args& args);
int run_eval(const Args& args);
int run_tokenize(const Args& args);
int run_bench(const Args& args);
int run_train(const Args& args);
int run_compare(const Args& args);

}  // namespace yt::cli
