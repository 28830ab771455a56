#include "yocotron/cli_args.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <new>

#include "yocotron/config.h"
#include "yocotron/stop_signal.h"
#include "yocotron/str.h"

namespace yt {

UsageError::UsageError(const std::string& problem) : UsageError(std::vector<std::string>{problem}) {}

UsageError::UsageError(std::vector<std::string> problems)
    : std::runtime_error(join(problems, "\n")), problems_(std::move(problems)) {}

bool parse_integer(const std::string& text, int64_t& out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') {  // from_chars takes '-' but not '+'
    ++begin;
    if (begin != end && *begin == '-') return false;
  }
  auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end;
}

bool parse_number(const std::string& text, double& out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && errno != ERANGE && std::isfinite(out);
}

std::string ArgParser::Opt::range() const {
  if (kind == Kind::Integer) {
    if (imax == std::numeric_limits<int64_t>::max()) return cat("an integer >= ", imin);
    return cat("an integer in [", imin, ", ", imax, "]");
  }
  // Plain stream formatting: "[0, 1)" reads better here than format_double's YAML-typed "[0.0, 1.0)".
  if (kind == Kind::Number) return cat("a number in [", dmin, ", ", dmax, dmax_open ? ")" : "]");
  return "";
}

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& metavar, const std::string& help,
                             bool repeatable) {
  opts_.push_back({name, metavar, help, repeatable});
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  Opt o{name, "", help, false};
  o.kind = Kind::Flag;
  opts_.push_back(o);
  return *this;
}

ArgParser& ArgParser::integer(const std::string& name, const std::string& metavar, const std::string& help, int64_t min,
                              int64_t max) {
  Opt o{name, metavar, help, false};
  o.kind = Kind::Integer;
  o.imin = min;
  o.imax = max;
  opts_.push_back(o);
  return *this;
}

ArgParser& ArgParser::number(const std::string& name, const std::string& metavar, const std::string& help, double min,
                             double max, bool max_open) {
  Opt o{name, metavar, help, false};
  o.kind = Kind::Number;
  o.dmin = min;
  o.dmax = max;
  o.dmax_open = max_open;
  opts_.push_back(o);
  return *this;
}

std::string ArgParser::check_value(const Opt& o, const std::string& value) const {
  if (o.kind == Kind::Integer) {
    int64_t v = 0;
    if (!parse_integer(value, v)) {
      size_t sign = !value.empty() && (value[0] == '+' || value[0] == '-') ? 1 : 0;
      bool well_formed = value.size() > sign && value.find_first_not_of("0123456789", sign) == std::string::npos;
      return cat(o.name, " ", value, ": ", well_formed ? "out of range" : "not an integer", "; expected ", o.range());
    }
    if (v < o.imin || v > o.imax) return cat(o.name, " ", value, ": out of range; expected ", o.range());
    return "";
  }
  if (o.kind == Kind::Number) {
    double v = 0;
    if (!parse_number(value, v)) return cat(o.name, " ", value, ": not a number; expected ", o.range());
    if (v < o.dmin || v > o.dmax || (o.dmax_open && v == o.dmax))
      return cat(o.name, " ", value, ": out of range; expected ", o.range());
  }
  return "";
}

ArgParser& ArgParser::positional(const std::string& name, const std::string& help, bool required, bool many) {
  pos_.push_back({name, help, required, many});
  return *this;
}

ArgParser& ArgParser::epilog(const std::string& text) {
  epilog_ = text;
  return *this;
}

const ArgParser::Opt* ArgParser::find(const std::string& name) const {
  for (const auto& o : opts_)
    if (o.name == name) return &o;
  return nullptr;
}

bool ArgParser::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << help();
      return false;
    }
    if (starts_with(a, "--")) {
      std::string name = a, value;
      bool inline_value = false;
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      const Opt* o = find(name);
      if (!o) {
        std::vector<std::string> names;
        for (const auto& x : opts_) names.push_back(x.name);
        std::string near = closest_match(name, names);
        throw UsageError(cat("unknown option '", name, "' for 'yocotron ", command_, "'",
                             near.empty() ? "" : "; did you mean '" + near + "'?"));
      }
      if (o->kind == Kind::Flag) {
        if (inline_value) throw UsageError(cat("option ", name, " takes no value"));
        values_[name].push_back("true");
        continue;
      }
      if (!inline_value) {
        if (i + 1 >= args.size()) throw UsageError(cat("option ", name, " needs a value (", o->metavar, ")"));
        value = args[++i];
      }
      auto& v = values_[name];
      if (!v.empty() && !o->repeatable) throw UsageError(cat("option ", name, " given more than once"));
      v.push_back(value);
    } else {
      positionals_.push_back(a);
    }
  }
  size_t max_pos = 0;
  bool unbounded = false;
  size_t required = 0;
  for (const auto& p : pos_) {
    unbounded = unbounded || p.many;
    max_pos++;
    if (p.required) required++;
  }
  if (!unbounded && positionals_.size() > max_pos)
    throw UsageError(cat("unexpected argument '", positionals_[max_pos], "' for 'yocotron ", command_, "'"));
  if (positionals_.size() < required)
    throw UsageError(cat("missing argument ", pos_[positionals_.size()].name));
  std::vector<std::string> bad;  // every bad number, one line each
  for (const auto& o : opts_) {
    if ((o.kind != Kind::Integer && o.kind != Kind::Number) || !has(o.name)) continue;
    const std::string& value = values_.at(o.name).back();
    std::string problem = check_value(o, value);
    if (!problem.empty()) {
      bad.push_back(problem);
    } else if (o.kind == Kind::Integer) {
      parse_integer(value, integers_[o.name]);
    } else {
      parse_number(value, numbers_[o.name]);
    }
  }
  if (!bad.empty()) throw UsageError(bad);
  return true;
}

bool ArgParser::has(const std::string& name) const { return values_.count(name) > 0; }

std::string ArgParser::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

const std::vector<std::string>& ArgParser::all(const std::string& name) const {
  static const std::vector<std::string> none;
  auto it = values_.find(name);
  return it == values_.end() ? none : it->second;
}

int64_t ArgParser::get_integer(const std::string& name, int64_t fallback) const {
  auto it = integers_.find(name);
  return it == integers_.end() ? fallback : it->second;
}

double ArgParser::get_number(const std::string& name, double fallback) const {
  auto it = numbers_.find(name);
  return it == numbers_.end() ? fallback : it->second;
}

std::string ArgParser::usage() const {
  std::string u = "usage: yocotron " + command_;
  for (const auto& o : opts_) u += " [" + o.name + (o.metavar.empty() ? "" : " " + o.metavar) + (o.repeatable ? " ..." : "") + "]";
  for (const auto& p : pos_) u += p.required ? " " + p.name : " [" + p.name + "]";
  return u + (pos_.empty() || !pos_.back().many ? "" : "...") + "\n";
}

std::string ArgParser::help() const {
  std::string h = usage() + "\n" + summary_ + "\n";
  auto row = [](const std::string& left, const std::string& text) {
    std::string l = "  " + left;
    if (l.size() < 28) l.resize(28, ' ');
    else l += "\n" + std::string(28, ' ');
    return l + text + "\n";
  };
  if (!pos_.empty()) {
    h += "\narguments:\n";
    for (const auto& p : pos_) h += row(p.name, p.help);
  }
  h += "\noptions:\n";
  for (const auto& o : opts_) {
    std::string range = o.range();
    h += row(o.name + (o.metavar.empty() ? "" : " " + o.metavar), o.help + (range.empty() ? "" : " [" + range + "]"));
  }
  h += row("-h, --help", "show this help");
  if (!epilog_.empty()) h += "\n" + epilog_ + "\n";
  return h;
}

int run_cli(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    for (const auto& p : e.problems()) std::cerr << "error: " << p << "\n";
    std::cerr << "(see `yocotron " << (command.empty() ? "" : command + " ") << "--help`)\n";
    return 2;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) std::cerr << "error: " << p << "\n";
    return 2;
  } catch (const std::bad_alloc&) {  // train and bench say more (errors.h); elsewhere this is all there is to say
    std::cerr << "error: out of host memory (std::bad_alloc)\n";
    return 1;
  } catch (const Stopped& e) {
    std::cerr << "yocotron: " << e.what() << "\n";
    return kExitStopped;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace yt
