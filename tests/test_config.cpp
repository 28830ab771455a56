#include <filesystem>
#include <regex>
#include <set>

#include "catch.hpp"
#include "helpers.h"
#include "yocotron/config.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

// Loads and returns the problems, failing the test if the recipe unexpectedly loads.
std::vector<std::string> problems_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    config_from_yaml(yaml, sets, "t.yaml");
  } catch (const ConfigError& e) {
    return e.problems();
  }
  FAIL("recipe loaded without error:\n" << yaml);
  return {};
}

bool any_contains(const std::vector<std::string>& v, const std::string& needle) {
  for (const auto& s : v)
    if (s.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("every shipped recipe loads", "[config]") {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(test::source_dir() + "/recipes")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path());
    Config c = load_config(e.path().string());
    CHECK(c.model.n_layers > 0);
    ++n;
  }
  CHECK(n >= 4);
}

TEST_CASE("base recipe and override merge", "[config]") {
  Config c = load_config(test::source_dir() + "/recipes/tiny/yocopp.yaml");
  CHECK(c.model.arch == "yocopp");
  CHECK(c.model.n_layers == 4);             // from base.yaml
  CHECK(c.model.d_model == 128);            // from base.yaml
  CHECK(c.model.yocopp.scaling_factor == 35.0);
  CHECK(c.train.lr == Approx(3e-3));

  fs::path d = test::temp_dir("merge");
  test::write_file(d / "a" / "base.yaml", "model:\n  n_layers: 6\n  d_model: 64\ntrain:\n  lr: 0.5\n");
  test::write_file(d / "b" / "child.yaml", "base: ../a/base.yaml\nmodel:\n  d_model: 96\n");
  Config m = load_config((d / "b" / "child.yaml").string());
  CHECK(m.model.n_layers == 6);  // inherited
  CHECK(m.model.d_model == 96);  // overridden, sibling keys kept
  CHECK(m.train.lr == 0.5);
  CHECK(m.train.steps == Config{}.train.steps);  // untouched default
}

TEST_CASE("base cycles and missing bases are reported", "[config]") {
  fs::path d = test::temp_dir("cycle");
  test::write_file(d / "x.yaml", "base: y.yaml\n");
  test::write_file(d / "y.yaml", "base: x.yaml\n");
  CHECK_THROWS_WITH(load_config((d / "x.yaml").string()), ContainsSubstring("cycle"));
  test::write_file(d / "z.yaml", "base: nope.yaml\n");
  CHECK_THROWS_WITH(load_config((d / "z.yaml").string()), ContainsSubstring("nope.yaml"));
  CHECK_THROWS_WITH(load_config((d / "absent.yaml").string()), ContainsSubstring("absent.yaml: cannot open"));
}

TEST_CASE("--set overrides are typed by the schema", "[config]") {
  Config c = config_from_yaml("", {"model.n_layers=6", "train.lr=2e-4", "parallel.zero1=true",
                                    "model.arch=yocopp", "data.train=/tmp/x y", "model.yocopp.scaling_factor=1"});
  CHECK(c.model.n_layers == 6);
  CHECK(c.train.lr == Approx(2e-4));
  CHECK(c.parallel.zero1);
  CHECK(c.model.arch == "yocopp");
  CHECK(c.data.train == "/tmp/x y");
  CHECK(c.model.yocopp.scaling_factor == 1.0);
  CHECK(config_from_yaml("", {"train.steps=1e4"}).train.steps == 10000);

  auto p = problems_of("", {"model.n_layers=four"});
  REQUIRE(p.size() == 1);
  CHECK_THAT(p[0], ContainsSubstring("model.n_layers: expected an integer, found 'four'"));
  CHECK_THAT(p[0], ContainsSubstring("--set model.n_layers=four"));
  CHECK(any_contains(problems_of("", {"model.n_layers=4.5"}), "expected an integer, found '4.5'"));
  CHECK(any_contains(problems_of("", {"parallel.zero1=yes"}), "expected a boolean (true|false), found 'yes'"));
  CHECK(any_contains(problems_of("", {"noequals"}), "expected section.key=value"));
}

TEST_CASE("unknown keys name the closest known key", "[config]") {
  auto p = problems_of("model:\n  n_layer: 4\n");
  REQUIRE(p.size() == 1);
  CHECK_THAT(p[0], ContainsSubstring("t.yaml: model.n_layer: unknown key; did you mean 'model.n_layers'?"));
  CHECK(any_contains(problems_of("modle:\n  d_model: 4\n"), "did you mean 'model'?"));
  CHECK(any_contains(problems_of("", {"train.learning_rate=1"}), "train.learning_rate: unknown key"));
  CHECK(any_contains(problems_of("model:\n  arch: yocoo\n"), "did you mean 'yoco'?"));
  CHECK(any_contains(problems_of("model: 3\n"), "model: expected a section of keys, found '3'"));
}

TEST_CASE("wrong types name the key, the expected type and the value", "[config]") {
  auto p = problems_of("model:\n  d_model: abc\n  n_heads: [1, 2]\ntrain:\n  lr: fast\n  steps: \"10\"\n");
  CHECK(p.size() == 4);
  CHECK(any_contains(p, "model.d_model: expected an integer, found 'abc'"));
  CHECK(any_contains(p, "model.n_heads: expected an integer, found a list"));
  CHECK(any_contains(p, "train.lr: expected a number, found 'fast'"));
  CHECK(any_contains(p, "train.steps: expected an integer, found '10'"));  // quoted: a string
}

TEST_CASE("semantic checks name the keys involved and report all problems at once", "[config]") {
  auto p = problems_of(
      "model:\n  arch: yoco\n  n_layers: 5\n  d_model: 130\n  n_heads: 4\n  n_kv_heads: 3\n"
      "train:\n  lr: 0\n  min_lr: 0\n  steps: 10\n  warmup_steps: 20\nparallel:\n  tp: 8\n");
  CHECK(any_contains(p, "model.d_model=130 is not divisible by model.n_heads=4"));
  CHECK(any_contains(p, "model.n_heads=4 is not divisible by model.n_kv_heads=3"));
  CHECK(any_contains(p, "model.n_layers=5 must be even"));
  CHECK(any_contains(p, "train.lr=0 must be > 0"));
  CHECK(any_contains(p, "train.warmup_steps=20 exceeds train.steps=10"));
  CHECK(any_contains(p, "parallel.tp=8 does not divide model.n_heads=4"));
  CHECK(any_contains(p, "parallel.tp=8 does not divide model.n_kv_heads=3"));
  CHECK(p.size() == 7);
  CHECK(any_contains(problems_of("", {"data.seq_len=4096"}), "data.seq_len=4096 exceeds model.max_seq_len=256"));
  CHECK(any_contains(problems_of("", {"model.arch=skipv1", "model.n_kv_heads=1", "model.n_heads=4"}),
                     "model.n_kv_heads=1 must be even for model.arch=skipv1"));
}

TEST_CASE("log.profile_steps: a list of integers, typed, validated and round-tripped", "[config]") {
  CHECK(config_from_yaml("").log.profile_steps.empty());
  Config c = config_from_yaml("log:\n  profile_steps: [3, 5]\n");
  CHECK(c.log.profile_steps == std::vector<int64_t>{3, 5});
  CHECK(config_from_yaml("", {"log.profile_steps=[3,5]"}).log.profile_steps == std::vector<int64_t>{3, 5});
  CHECK(config_from_yaml("log:\n  profile_steps:\n    - 2\n    - 2\n").log.profile_steps == std::vector<int64_t>{2, 2});
  CHECK(config_from_yaml("log:\n  profile_steps: [3, 5]\n", {"log.profile_steps=[]"}).log.profile_steps.empty());
  // Round trip: the resolved YAML writes a flow list and reads back equal; flatten() shows it.
  std::string text = to_yaml(c);
  CHECK_THAT(text, ContainsSubstring("profile_steps: [3, 5]"));
  CHECK(config_from_yaml(text).log.profile_steps == std::vector<int64_t>{3, 5});
  CHECK(to_yaml(config_from_yaml(text)) == text);
  CHECK_THAT(to_yaml(Config{}), ContainsSubstring("profile_steps: []"));
  CHECK(config_from_yaml(to_yaml(Config{})).log.profile_steps.empty());
  bool found = false;
  for (const auto& [k, v] : flatten(c)) {
    if (k != "log.profile_steps") continue;
    found = true;
    CHECK(v == "[3, 5]");
  }
  CHECK(found);
  // Wrong types name the key, the expected type and what was found.
  CHECK(any_contains(problems_of("log:\n  profile_steps: 3\n"), "log.profile_steps: expected a list of integers ([] for none), found '3'"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[3,x]"}), "log.profile_steps: expected a list of integers, found 'x' at position 2"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[1.5,2]"}), "found '1.5' at position 1"));
  CHECK(any_contains(problems_of("log:\n  profile_steps: {a: 1}\n"), "found a mapping"));
  CHECK(any_contains(problems_of("log:\n  profile_steps:\n"), "found null (no value)"));
  CHECK(any_contains(problems_of("log:\n  profile_steps: [\"3\", 4]\n"), "found '3' at position 1"));  // quoted: a string
  // Validation: [] or [a, b] with 1 <= a <= b <= train.steps.
  CHECK(any_contains(problems_of("", {"log.profile_steps=[3]"}), "log.profile_steps=[3] must be [] (off) or [a, b]"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[1,2,3]"}), "must be [] (off) or [a, b]"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[0,2]"}), "1 <= a <= b"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[5,4]"}), "1 <= a <= b"));
  CHECK(any_contains(problems_of("", {"log.profile_steps=[5,300]"}), "log.profile_steps=[5, 300] ends after train.steps=200"));
  CHECK(config_from_yaml("", {"log.profile_steps=[200,200]"}).log.profile_steps.size() == 2);
}

TEST_CASE("the resolved YAML loads back to the same config", "[config]") {
  Config a = load_config(test::source_dir() + "/recipes/tiny/yocopp.yaml", {"train.lr=1.234e-3", "data.val="});
  std::string text = to_yaml(a);
  CHECK(text.find("base:") == std::string::npos);
  Config b = config_from_yaml(text);
  CHECK(to_yaml(b) == text);
  CHECK(b.train.lr == a.train.lr);
  CHECK(b.data.val.empty());
  CHECK(b.model.yocopp.scaling_factor == 35.0);
}

TEST_CASE("docs/configuration.md documents exactly the schema's keys", "[config]") {
  std::string doc = test::read_file(test::source_dir() + "/docs/configuration.md");
  // A row: | `key` | type | default | meaning |, where cells may contain escaped pipes (\|).
  std::regex row(R"(\|\s*`([a-z0-9_.]+)`\s*\|((?:[^|\\]|\\.)+)\|((?:[^|\\]|\\.)*)\|)");
  std::set<std::string> documented;
  std::map<std::string, std::string> doc_type, doc_default;
  for (std::sregex_iterator it(doc.begin(), doc.end(), row), end; it != end; ++it) {
    std::string key = (*it)[1];
    if (key.find('.') == std::string::npos) continue;
    documented.insert(key);
    auto trim = [](std::string s) {
      s = std::regex_replace(s, std::regex(R"(\\\|)"), "|");
      s.erase(0, s.find_first_not_of(" `"));
      s.erase(s.find_last_not_of(" `") + 1);
      return s;
    };
    doc_type[key] = trim((*it)[2]);
    doc_default[key] = trim((*it)[3]);
  }
  std::set<std::string> known;
  for (const auto& k : schema()) {
    known.insert(k.key);
    INFO(k.key);
    CHECK(documented.count(k.key) == 1);
    if (documented.count(k.key)) {
      CHECK(doc_type[k.key] == k.type);
      CHECK(doc_default[k.key] == (k.default_text.empty() ? "\"\"" : k.default_text));
    }
  }
  for (const auto& d : documented) {
    INFO("documented but not in the schema: " << d);
    CHECK(known.count(d) == 1);
  }
}
