// `yocotron tokenize ...` runs the `yocotron-tokenize` executable that sits beside this one: the
// tokenizer lives in its own torch-free process (see data_pipeline/tokenize_main.cpp for why).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "yocotron/str.h"

namespace yt::cli {

int run_tokenize(const Args& args) {
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  std::string tool = (self.parent_path() / "yocotron-tokenize").string();
  if (::access(tool.c_str(), X_OK) != 0)
    throw std::runtime_error(cat(tool, ": not found; this build has no tokenizer (install libsentencepiece-dev and "
                                       "libzstd-dev, then reconfigure)"));
  std::vector<char*> argv{const_cast<char*>(tool.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(tool.c_str(), argv.data());
  throw std::runtime_error(cat(tool, ": cannot run: ", std::strerror(errno)));
}

}  // namespace yt::cli
