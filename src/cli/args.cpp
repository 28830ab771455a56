#include "yocotron/cli_args.h"

#include <iostream>

#include "yocotron/config.h"
#include "yocotron/stop_signal.h"
#include "yocotron/str.h"

namespace yt {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& metavar, const std::string& help,
                             bool repeatable) {
  opts_.push_back({name, metavar, help, repeatable});
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  opts_.push_back({name, "", help, false});
  return *this;
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
      if (o->metavar.empty()) {
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
  for (const auto& o : opts_) h += row(o.name + (o.metavar.empty() ? "" : " " + o.metavar), o.help);
  h += row("-h, --help", "show this help");
  if (!epilog_.empty()) h += "\n" + epilog_ + "\n";
  return h;
}

int run_cli(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n(see `yocotron " << (command.empty() ? "" : command + " ") << "--help`)\n";
    return 2;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) std::cerr << "error: " << p << "\n";
    return 2;
  } catch (const Stopped& e) {
    std::cerr << "yocotron: " << e.what() << "\n";
    return kExitStopped;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace yt
