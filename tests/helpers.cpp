#include "helpers.h"

#include "yocotron/fileio.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>
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

Background::Background(const std::string& command) : dir_(temp_dir("background")) {
  const std::string out = (dir_ / "out").string(), err = (dir_ / "err").string(), full = "exec " + command;
  const std::string cwd = source_dir();
  pid_ = ::fork();
  if (pid_ == 0) {  // the child: only async-signal-safe calls until exec
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0 || ::chdir(cwd.c_str()) != 0) ::_exit(127);
    ::execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
}

Background::~Background() {
  if (pid_ > 0 && status_ < 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Background::signal(int sig) const { ::kill(pid_, sig); }

int Background::wait(double secs) {
  if (status_ >= 0) return status_;
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(secs);
  while (true) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Background::out() const { return read_file(dir_ / "out"); }
std::string Background::err() const { return read_file(dir_ / "err"); }

bool wait_until(const std::function<bool()>& ready, double secs) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(secs);
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string bad_input_problem(const ProcResult& r, const std::string& says, const std::string& command) {
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < r.err.size();) {
    size_t nl = r.err.find('\n', pos);
    lines.push_back(r.err.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    pos = nl == std::string::npos ? r.err.size() : nl + 1;
  }
  if (r.exit_code != 2) return "exit status " + std::to_string(r.exit_code) + ", not 2";
  if (!r.out.empty()) return "stdout is not empty: " + r.out;
  if (lines.empty() || lines[0].rfind("error: ", 0) != 0) return "stderr does not start with 'error: '";
  if (lines[0].find(says) == std::string::npos) return "the error line does not say '" + says + "'";
  if (lines.size() > 2 || (lines.size() == 2 && lines[1].rfind("(see `yocotron " + command + " --help`)", 0) != 0))
    return "more than one error line";
  return "";
}

std::string mpirun(int np) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
         "OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 '" YT_MPIEXEC "' -np " + std::to_string(np) + " ";
}

std::string source_dir() { return YT_SOURCE_DIR; }
std::string yocotron_bin() { return YT_YOCOTRON_BIN; }

}  // namespace yt::test
