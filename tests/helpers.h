// Test helpers: run the real `yocotron` executable, temporary directories, file I/O.
#pragma once
#include <filesystem>
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

std::string source_dir();   // the repository root
std::string yocotron_bin();
// A fresh, empty directory under the system temp dir, removed by remove_temp_dirs().
std::filesystem::path temp_dir(const std::string& tag);
void remove_temp_dirs();  // main() calls it after the tests; YT_KEEP_TEST_FILES=1 keeps them
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& text);

}  // namespace yt::test
