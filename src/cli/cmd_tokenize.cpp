// `yocotron tokenize ...` runs the `yocotron-tokenize` executable that sits beside this one: the
// tokenizer lives in its own torch-free process (see data_pipeline/tokenize_main.cpp for why).
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "commands.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

namespace yt::cli {

int run_tokenize(const Args& args) {
  std::string tool = tokenizer_tool_path();
  std::vector<char*> argv{const_cast<char*>(tool.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(tool.c_str(), argv.data());
  throw std::runtime_error(cat(tool, ": cannot run: ", std::strerror(errno)));
}

}  // namespace yt::cli
