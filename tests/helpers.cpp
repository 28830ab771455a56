#include "helpers.h"

#include "yocotron/fileio.h"

#include <unistd.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <vector>

namespace yt::test {
namespace fs = std::filesystem;

namespace {
struct TempRoot {
  fs::path root;
  TempRoot() {
    root = fs::temp_directory_path() / ("yocotron-test-" + std::to_string(::getpid()));
    fs::create_directories(root);
  }
};
TempRoot& temp_root() {
  static TempRoot r;
  return r;
}
}  // namespace

void remove_temp_dirs() {
  if (!std::getenv("YT_KEEP_TEST_FILES")) remove_tree(temp_root().root.string());
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& text) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << text;
}

fs::path temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  fs::path d = temp_root().root / (tag + "-" + std::to_string(counter++));
  remove_tree(d.string());
  fs::create_directories(d);
  return d;
}

ProcResult run_shell(const std::string& command) {
  fs::path d = temp_dir("proc");
  std::string full = "cd '" + source_dir() + "' && (" + command + ") >'" + (d / "out").string() + "' 2>'" +
                     (d / "err").string() + "'";
  int status = std::system(full.c_str());
  ProcResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(d / "out");
  r.err = read_file(d / "err");
  return r;
}

ProcResult run_yocotron(const std::string& args) { return run_shell("'" + yocotron_bin() + "' " + args); }

std::string source_dir() { return YT_SOURCE_DIR; }
std::string yocotron_bin() { return YT_YOCOTRON_BIN; }

}  // namespace yt::test
