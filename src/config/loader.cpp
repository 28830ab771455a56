// Reading recipes: `base:` inheritance, deep merge, `--set` overrides, and the strict typed walk
// that turns a YAML tree into a Config while collecting every problem it meets.
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "fields.h"
#include "yocotron/config.h"
#include "yocotron/str.h"

namespace fs = std::filesystem;

namespace yt {

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join(problems, "\n")), problems_(std::move(problems)) {}

namespace {

// Where each leaf of the merged tree was last written (a file, or "--set k=v").
using Origins = std::map<std::string, std::string>;

struct Tree {
  YAML::Node root = YAML::Node(YAML::NodeType::Map);
  Origins origin;
};

void record_origins(const YAML::Node& node, const std::string& prefix, const std::string& who,
                    Origins& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      std::string key = kv.first.as<std::string>();
      if (prefix.empty() && key == "base") continue;
      std::string path = prefix.empty() ? key : prefix + "." + key;
      out[path] = who;
      record_origins(kv.second, path, who, out);
    }
  }
}

void merge_into(YAML::Node dst, const YAML::Node& src) {
  for (const auto& kv : src) {
    std::string key = kv.first.as<std::string>();
    if (dst[key] && dst[key].IsMap() && kv.second.IsMap()) {
      merge_into(dst[key], kv.second);
    } else if (dst[key] && dst[key].IsMap() && kv.second.IsNull()) {
      // An empty section (`model:` with every key commented out) names no key: the base's stay.
    } else {
      dst[key] = YAML::Clone(kv.second);
    }
  }
}

std::string at_mark(const std::string& origin, const YAML::Mark& m) {
  if (m.line < 0) return origin + ": ";
  return cat(origin, ":", m.line + 1, ":", m.column + 1, ": ");
}

// yaml-cpp keeps every entry of a mapping, duplicates included, and a lookup finds the first: a
// duplicated key would silently lose one of its values. Also refuses keys that are not plain names
// and trees too large or deep to be a recipe (aliases can make a small file a huge tree).
void check_keys(const YAML::Node& node, const std::string& origin, int depth, size_t& visited) {
  if (++visited > 100000)
    throw ConfigError({cat(origin, ": more than 100000 YAML nodes (counting aliases where used): not a recipe")});
  if (depth > 64) throw ConfigError({cat(at_mark(origin, node.Mark()), "YAML nested deeper than 64 levels: not a recipe")});
  if (node.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        throw ConfigError({cat(at_mark(origin, kv.first.Mark()), "a key must be a plain name, found ",
                               kv.first.IsNull() ? "null" : kv.first.IsSequence() ? "a list" : "a mapping")});
      auto [it, fresh] = seen.emplace(kv.first.Scalar(), kv.first.Mark());
      if (!fresh)
        throw ConfigError({cat(at_mark(origin, kv.first.Mark()), "duplicate key '", kv.first.Scalar(), "'",
                               it->second.line >= 0 ? cat(" (first at line ", it->second.line + 1, ")") : "",
                               ": a recipe names each key once")});
      check_keys(kv.second, origin, depth + 1, visited);
    }
  } else if (node.IsSequence()) {
    for (const auto& child : node) check_keys(child, origin, depth + 1, visited);
  }
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError({cat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1,
                           ": YAML syntax error: ", e.msg)});
  } catch (const YAML::Exception& e) {
    throw ConfigError({cat(origin, ": YAML error: ", e.msg)});
  }
  if (docs.empty()) return YAML::Node();
  if (docs.size() > 1)
    throw ConfigError({cat(at_mark(origin, docs[1].Mark()), "a second YAML document (after '---'); a recipe is one document")});
  size_t visited = 0;
  check_keys(docs[0], origin, 0, visited);
  return docs[0];
}

// The recipe's text: a regular file (or a pipe) of at most 16 MiB, else an error naming it.
std::string read_recipe(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw ConfigError({cat(path.string(), ": is a directory, not a recipe file")});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError({cat(path.string(), ": cannot open recipe: ", std::strerror(errno))});
  constexpr size_t kMax = size_t{16} << 20;
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMax) throw ConfigError({cat(path.string(), ": larger than 16 MiB: not a recipe")});
  }
  if (in.bad()) throw ConfigError({cat(path.string(), ": cannot read recipe: ", std::strerror(errno))});
  if (text.find('\0') != std::string::npos) throw ConfigError({cat(path.string(), ": holds NUL bytes: not a YAML recipe")});
  return text;
}

Tree load_tree_text(const std::string& text, const std::string& origin, const fs::path& dir,
                    std::vector<std::string>& chain);

Tree load_tree_file(const fs::path& path, std::vector<std::string>& chain) {
  std::string canon = fs::weakly_canonical(path).string();
  for (const auto& c : chain) {
    if (c == canon) throw ConfigError({cat(path.string(), ": base recipes form a cycle: ",
                                           join(chain, " -> "), " -> ", canon)});
  }
  std::string text = read_recipe(path);
  chain.push_back(canon);
  Tree t = load_tree_text(text, path.string(), path.parent_path(), chain);
  chain.pop_back();
  return t;
}

Tree load_tree_text(const std::string& text, const std::string& origin, const fs::path& dir,
                    std::vector<std::string>& chain) {
  YAML::Node node = parse_yaml(text, origin);
  if (node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) throw ConfigError({cat(origin, ": a recipe must be a YAML mapping of sections")});
  Tree tree;
  if (node["base"]) {
    const YAML::Node b = node["base"];
    if (!b.IsScalar()) throw ConfigError({cat(origin, ": base: expected a path to a recipe")});
    fs::path base_path = fs::path(b.Scalar());
    if (base_path.is_relative()) base_path = dir / base_path;
    tree = load_tree_file(base_path, chain);
  }
  merge_into(tree.root, node);
  tree.root.remove("base");
  record_origins(node, "", origin, tree.origin);
  return tree;
}

void apply_override(Tree& tree, const std::string& assignment, std::vector<std::string>& problems) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    problems.push_back(cat("--set ", assignment, ": expected section.key=value"));
    return;
  }
  std::string key = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
    size_t visited = 0;
    check_keys(parsed, "--set " + assignment, 0, visited);
  } catch (const YAML::Exception& e) {
    problems.push_back(cat("--set ", assignment, ": value is not valid YAML: ", e.msg));
    return;
  } catch (const ConfigError& e) {
    problems.push_back(e.problems().front());
    return;
  }
  auto parts = split(key, '.');
  std::vector<YAML::Node> path{tree.root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = path.back()[parts[i]];
    if (!child.IsMap()) child = YAML::Node(YAML::NodeType::Map);
    path.back()[parts[i]] = child;
    path.push_back(child);
  }
  path.back()[parts.back()] = parsed;
  tree.origin[key] = "--set " + assignment;
}

// ---- typed conversion of one scalar -------------------------------------------------------------

std::string shown(const YAML::Node& n) {
  if (n.IsNull()) return "null (no value)";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "'" + n.Scalar() + "'";
}

bool quoted(const YAML::Node& n) { return n.Tag() == "!"; }

std::string convert(const YAML::Node& n, std::string& out, const detail::Choices& choices) {
  if (n.IsNull()) {
    if (!choices.empty()) return "expected one of " + join(choices, "|") + ", found null (no value)";
    out.clear();
    return "";
  }
  if (!n.IsScalar()) return "expected a string, found " + shown(n);
  if (!choices.empty()) {
    bool ok = false;
    for (const auto& c : choices) ok = ok || c == n.Scalar();
    if (!ok) {
      std::string near = closest_match(n.Scalar(), choices);
      return "expected one of " + join(choices, "|") + ", found " + shown(n) +
             (near.empty() ? "" : "; did you mean '" + near + "'?");
    }
  }
  out = n.Scalar();
  return "";
}

std::string convert(const YAML::Node& n, int64_t& out, const detail::Choices&) {
  if (!n.IsScalar() || quoted(n)) return "expected an integer, found " + shown(n);
  const std::string& s = n.Scalar();
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0' && errno == 0) {
    out = v;
    return "";
  }
  // Accept integral scientific notation (steps: 1e5), nothing fractional.
  double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
    out = static_cast<int64_t>(d);
    return "";
  }
  return "expected an integer, found " + shown(n);
}

std::string convert(const YAML::Node& n, double& out, const detail::Choices&) {
  if (!n.IsScalar() || quoted(n)) return "expected a number, found " + shown(n);
  const std::string& s = n.Scalar();
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(d)) return "expected a number, found " + shown(n);
  out = d;
  return "";
}

std::string convert(const YAML::Node& n, bool& out, const detail::Choices&) {
  if (n.IsScalar() && !quoted(n)) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") { out = true; return ""; }
    if (s == "false" || s == "False" || s == "FALSE") { out = false; return ""; }
  }
  return "expected a boolean (true|false), found " + shown(n);
}

// A list of integers: a YAML sequence ("[3, 5]"), each element typed like an integer key.
std::string convert(const YAML::Node& n, std::vector<int64_t>& out, const detail::Choices& choices) {
  if (!n.IsSequence()) return "expected a list of integers ([] for none), found " + shown(n);
  std::vector<int64_t> values;
  for (size_t i = 0; i < n.size(); ++i) {
    int64_t v = 0;
    if (!convert(n[i], v, choices).empty())
      return cat("expected a list of integers, found ", shown(n[i]), " at position ", i + 1);
    values.push_back(v);
  }
  out = std::move(values);
  return "";
}

// A list of strings: a YAML sequence of scalars ("[hellaswag, tasks/cloze.jsonl]").
std::string convert(const YAML::Node& n, std::vector<std::string>& out, const detail::Choices& choices) {
  if (!n.IsSequence()) return "expected a list of strings ([] for none), found " + shown(n);
  std::vector<std::string> values;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string v;
    if (!n[i].IsScalar() || !convert(n[i], v, choices).empty())
      return cat("expected a list of strings, found ", shown(n[i]), " at position ", i + 1);
    values.push_back(v);
  }
  out = std::move(values);
  return "";
}

std::string list_text(const std::vector<std::string>& v) { return "[" + join(v, ", ") + "]"; }

std::string list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// ---- the strict walk ----------------------------------------------------------------------------

struct Binder {
  std::map<std::string, std::function<std::string(const YAML::Node&)>> setters;
  std::set<std::string> sections;
  std::vector<std::string> known;  // leaves and sections, for suggestions
};

Binder bind(Config& cfg) {
  Binder b;
  detail::visit_fields(cfg, [&](const char* key, auto& field, const detail::Choices& choices) {
    b.setters[key] = [&field, choices](const YAML::Node& n) { return convert(n, field, choices); };
    b.known.push_back(key);
    auto parts = split(key, '.');
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += (i ? "." : "") + parts[i];
      if (b.sections.insert(prefix).second) b.known.push_back(prefix);
    }
  });
  return b;
}

void walk(const YAML::Node& node, const std::string& prefix, const Binder& b, const Origins& origin,
          std::vector<std::string>& problems) {
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    auto it = origin.find(path);
    std::string where = it == origin.end() ? "" : it->second + ": ";
    auto setter = b.setters.find(path);
    if (setter != b.setters.end()) {
      std::string err = setter->second(kv.second);
      if (!err.empty()) problems.push_back(where + path + ": " + err);
    } else if (b.sections.count(path)) {
      if (kv.second.IsMap()) {
        walk(kv.second, path, b, origin, problems);
      } else if (!kv.second.IsNull()) {
        problems.push_back(where + path + ": expected a section of keys, found " + shown(kv.second));
      }
    } else {
      std::string near = closest_match(path, b.known);
      problems.push_back(where + path + ": unknown key" +
                         (near.empty() ? "" : "; did you mean '" + near + "'?"));
    }
  }
}

Config finish(Tree tree, const std::vector<std::string>& overrides, const std::string& source) {
  std::vector<std::string> problems;
  for (const auto& o : overrides) apply_override(tree, o, problems);
  Config cfg;
  cfg.source = source;
  Binder b = bind(cfg);
  walk(tree.root, "", b, tree.origin, problems);
  if (problems.empty()) {
    for (auto& p : validate(cfg)) problems.push_back((source.empty() ? "" : source + ": ") + p);
  }
  if (!problems.empty()) throw ConfigError(problems);
  return cfg;
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::vector<std::string> chain;
  return finish(load_tree_file(path, chain), overrides, path);
}

Config config_from_yaml(const std::string& yaml_text, const std::vector<std::string>& overrides,
                        const std::string& origin) {
  std::vector<std::string> chain;
  return finish(load_tree_text(yaml_text, origin, fs::current_path(), chain), overrides, origin);
}

std::vector<SchemaKey> schema() {
  std::vector<SchemaKey> out;
  const Config defaults;
  detail::visit_fields(defaults, [&](const char* key, const auto& field, const detail::Choices& ch) {
    using T = std::decay_t<decltype(field)>;
    SchemaKey k{key, "", ""};
    if constexpr (std::is_same_v<T, std::string>) {
      k.type = ch.empty() ? "string" : "one of " + join(ch, "|");
      k.default_text = field;
    } else if constexpr (std::is_same_v<T, bool>) {
      k.type = "boolean";
      k.default_text = field ? "true" : "false";
    } else if constexpr (std::is_same_v<T, double>) {
      k.type = "number";
      k.default_text = format_double(field);
    } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
      k.type = "list of integers";
      k.default_text = list_text(field);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      k.type = "list of strings";
      k.default_text = list_text(field);
    } else {
      k.type = "integer";
      k.default_text = std::to_string(field);
    }
    out.push_back(k);
  });
  return out;
}

std::vector<std::pair<std::string, std::string>> flatten(const Config& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  detail::visit_fields(cfg, [&](const char* key, const auto& field, const detail::Choices&) {
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_same_v<T, std::string>) out.emplace_back(key, field);
    else if constexpr (std::is_same_v<T, bool>) out.emplace_back(key, field ? "true" : "false");
    else if constexpr (std::is_same_v<T, double>) out.emplace_back(key, format_double(field));
    else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<std::string>>)
      out.emplace_back(key, list_text(field));
    else out.emplace_back(key, std::to_string(field));
  });
  return out;
}

std::vector<KeyDifference> model_differences(const ModelConfig& was, const ModelConfig& is) {
  Config a, b;
  a.model = was;
  b.model = is;
  auto fa = flatten(a), fb = flatten(b);
  std::vector<KeyDifference> out;
  for (size_t i = 0; i < fa.size(); ++i) {
    const std::string& key = fa[i].first;
    if (!starts_with(key, "model.") || key == "model.init_from" || key == "model.attention" ||
        key == "model.fused_kernels")
      continue;
    if (fa[i].second != fb[i].second) out.push_back({key, fa[i].second, fb[i].second});
  }
  return out;
}

std::string to_yaml(const Config& cfg) {
  YAML::Node root(YAML::NodeType::Map);
  detail::visit_fields(cfg, [&](const char* key, const auto& field, const detail::Choices&) {
    auto parts = split(key, '.');
    std::vector<YAML::Node> path{root};
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node child = path.back()[parts[i]];
      if (!child.IsMap()) child = YAML::Node(YAML::NodeType::Map);
      path.back()[parts[i]] = child;
      path.push_back(child);
    }
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_same_v<T, double>) {
      path.back()[parts.back()] = format_double(field);
    } else if constexpr (std::is_same_v<T, bool>) {
      path.back()[parts.back()] = field ? "true" : "false";
    } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<std::string>>) {
      YAML::Node list(YAML::NodeType::Sequence);
      for (const auto& v : field) list.push_back(v);
      list.SetStyle(YAML::EmitterStyle::Flow);
      path.back()[parts.back()] = list;
    } else {
      path.back()[parts.back()] = field;
    }
  });
  YAML::Emitter em;
  em << root;
  return std::string(em.c_str()) + "\n";
}

}  // namespace yt
