// Command-line options of one `yocotron <command>`: declared options, strict parsing
// (an unknown option is a UsageError naming it, with the closest known option), and help text.
#pragma once
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace yt {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  // An option taking a value ("--config RECIPE"); repeatable ones collect every occurrence.
  ArgParser& option(const std::string& name, const std::string& metavar, const std::string& help,
                    bool repeatable = false);
  ArgParser& flag(const std::string& name, const std::string& help);
  // Positional arguments; `many` takes all remaining ones.
  ArgParser& positional(const std::string& name, const std::string& help, bool required, bool many = false);
  ArgParser& epilog(const std::string& text);

  // Returns false when --help was given (help is printed to stdout); throws UsageError otherwise.
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& all(const std::string& name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  std::string usage() const;
  std::string help() const;

 private:
  struct Opt {
    std::string name, metavar, help;
    bool repeatable = false;
  };
  struct Pos {
    std::string name, help;
    bool required = false, many = false;
  };
  const Opt* find(const std::string& name) const;

  std::string command_, summary_, epilog_;
  std::vector<Opt> opts_;
  std::vector<Pos> pos_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

// Runs a command body and maps failures to exit codes, printing one "error: ..." line per problem:
// UsageError and ConfigError exit 2, any other exception 1; a loop stopped by a signal (Stopped,
// stop_signal.h) prints its message and exits 75.
int run_cli(const std::string& command, const std::function<int()>& body);

}  // namespace yt
