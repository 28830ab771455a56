// Test helpers: run the real `yocotron` executable, temporary directories, file I/O.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace yt::test {

struct ProcResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `command` through /bin/sh with stdout and stderr captured separately.
ProcResult run_shell(const std::string& command);
// Runs the yocotron binary built next to the tests with `args` (already shell-quoted where needed).
ProcResult run_yocotron(const std::string& args);

// A command started in the background (`/bin/sh -c "exec COMMAND"`, so `pid` is the command's own
// process: signals sent to it reach the command, not a shell), stdout and stderr to files.
// Put environment settings in front as `env VAR=value ...`.
class Background {
 public:
  explicit Background(const std::string& command);
  ~Background();  // kills the command (SIGKILL) if it still runs
  int pid() const { return pid_; }
  void signal(int sig) const;
  // Waits up to `secs` for the command to end; its exit status (128 + signal when killed by one),
  // or -1 when it still runs.
  int wait(double secs);
  std::string out() const;
  std::string err() const;

 private:
  int pid_ = -1;
  int status_ = -1;
  std::filesystem::path dir_;
};

// Polls `ready` every 20 ms for up to `secs`; true once it holds.
bool wait_until(const std::function<bool()>& ready, double secs);

// "" when `r` ended as bad input does: exit status 2, nothing on stdout, and on stderr one line
// "error: ..." containing `says` (a usage error may add "(see `yocotron COMMAND --help`)"); else
// what differs.
std::string bad_input_problem(const ProcResult& r, const std::string& says, const std::string& command);

// `mpirun -np N ` with the environment Open MPI needs here (root, oversubscribed cores, no CMA),
// to put in front of a command.
std::string mpirun(int np);

std::string source_dir();   // the repository root
std::string yocotron_bin();
// A fresh, empty directory under the system temp dir, removed by remove_temp_dirs().
std::filesystem::path temp_dir(const std::string& tag);
void remove_temp_dirs();  // main() calls it after the tests; YT_KEEP_TEST_FILES=1 keeps them
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& text);

}  // namespace yt::test
