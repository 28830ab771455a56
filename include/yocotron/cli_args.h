// Command-line options of one `yocotron <command>`: declared options, strict parsing (an unknown
// option is a UsageError naming it, with the closest known option), typed numeric options with
// ranges (a bad value is one line naming the option, the value and the range), and help text.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace yt {

// Bad command-line usage (exit status 2): one problem, or several, one line each.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& problem);
  explicit UsageError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  // An option taking a value ("--config RECIPE"); repeatable ones collect every occurrence.
  ArgParser& option(const std::string& name, const std::string& metavar, const std::string& help,
                    bool repeatable = false);
  ArgParser& flag(const std::string& name, const std::string& help);
  // An integer option in [min, max]; parse() refuses anything else (not an integer, out of range).
  ArgParser& integer(const std::string& name, const std::string& metavar, const std::string& help, int64_t min,
                     int64_t max = std::numeric_limits<int64_t>::max());
  // A finite real number in [min, max], or [min, max) when `max_open`.
  ArgParser& number(const std::string& name, const std::string& metavar, const std::string& help, double min, double max,
                    bool max_open = false);
  // Positional arguments; `many` takes all remaining ones.
  ArgParser& positional(const std::string& name, const std::string& help, bool required, bool many = false);
  ArgParser& epilog(const std::string& text);

  // Returns false when --help was given (help is printed to stdout); throws UsageError otherwise.
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& all(const std::string& name) const;
  // The value of an integer() / number() option (already checked by parse()), or `fallback`.
  int64_t get_integer(const std::string& name, int64_t fallback) const;
  double get_number(const std::string& name, double fallback) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  std::string usage() const;
  std::string help() const;

 private:
  enum class Kind { Text, Flag, Integer, Number };
  struct Opt {
    std::string name, metavar, help;
    bool repeatable = false;
    Kind kind = Kind::Text;
    int64_t imin = 0, imax = 0;
    double dmin = 0, dmax = 0;
    bool dmax_open = false;
    std::string range() const;  // "an integer in [1, 4096]", "a number in [0, 1)", "an integer >= 0"
  };
  struct Pos {
    std::string name, help;
    bool required = false, many = false;
  };
  const Opt* find(const std::string& name) const;
  std::string check_value(const Opt& o, const std::string& value) const;  // "" or the problem

  std::string command_, summary_, epilog_;
  std::vector<Opt> opts_;
  std::vector<Pos> pos_;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, int64_t> integers_;
  std::map<std::string, double> numbers_;
  std::vector<std::string> positionals_;
};

// Strict parsing of a whole string as a base-10 integer or a finite real number; false when it is not
// one (or does not fit), leaving `out` unspecified.
bool parse_integer(const std::string& text, int64_t& out);
bool parse_number(const std::string& text, double& out);

// Runs a command body and maps failures to exit codes, printing one "error: ..." line per problem:
// UsageError and ConfigError exit 2, any other exception 1; a loop stopped by a signal (Stopped,
// stop_signal.h) prints its message and exits 75.
int run_cli(const std::string& command, const std::function<int()>& body);

}  // namespace yt
