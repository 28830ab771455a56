// The real `yocotron` executable: help, usage errors and exit codes, `config`, `--version`, and the
// typed numeric options of every command.
#include <cstdint>
#include <filesystem>

#include "catch.hpp"
#include "helpers.h"
#include "yocotron/cli_args.h"

using yt::test::run_yocotron;

TEST_CASE("yocotron --help lists the commands", "[cli]") {
  auto r = run_yocotron("--help");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("usage: yocotron <command>"));
  CHECK_THAT(r.out, ContainsSubstring("config"));
  auto none = run_yocotron("");
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, ContainsSubstring("usage: yocotron"));
}

TEST_CASE("unknown command or option: usage message, exit 2", "[cli]") {
  auto r = run_yocotron("confgi");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, ContainsSubstring("unknown command 'confgi'; did you mean 'config'?"));
  auto o = run_yocotron("config --confg recipes/tiny/base.yaml");
  CHECK(o.exit_code == 2);
  CHECK_THAT(o.err, ContainsSubstring("unknown option '--confg'"));
  CHECK_THAT(o.err, ContainsSubstring("did you mean '--config'?"));
  auto m = run_yocotron("config");
  CHECK(m.exit_code == 2);
  CHECK_THAT(m.err, ContainsSubstring("missing --config"));
}

TEST_CASE("yocotron config prints the resolved recipe", "[cli]") {
  auto r = run_yocotron("config --config recipes/tiny/yocopp.yaml --set train.lr=5e-4 --set model.n_layers=6");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("arch: yocopp"));
  CHECK_THAT(r.out, ContainsSubstring("n_layers: 6"));
  CHECK_THAT(r.out, ContainsSubstring("lr: 0.0005"));
  CHECK_THAT(r.out, ContainsSubstring("scaling_factor: 35.0"));
  auto h = run_yocotron("config --help");
  CHECK(h.exit_code == 0);
  CHECK_THAT(h.out, ContainsSubstring("--set SECTION.KEY=VALUE"));
}

TEST_CASE("a typo in --set exits 2 naming the key and the closest key", "[cli]") {
  auto r = run_yocotron("config --config recipes/tiny/yocopp.yaml --set model.n_layer=4");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, ContainsSubstring("model.n_layer: unknown key; did you mean 'model.n_layers'?"));
  CHECK(r.out.empty());
}

TEST_CASE("several recipe problems are all reported, one line each", "[cli]") {
  auto r = run_yocotron("config --config recipes/tiny/yoco.yaml --set model.n_layers=3 --set train.lr=-1");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, ContainsSubstring("error: recipes/tiny/yoco.yaml: model.n_layers=3 must be even"));
  CHECK_THAT(r.err, ContainsSubstring("error: recipes/tiny/yoco.yaml: train.lr=-1 must be > 0"));
  auto missing = run_yocotron("config --config recipes/tiny/nope.yaml");
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, ContainsSubstring("recipes/tiny/nope.yaml: cannot open recipe"));
}

TEST_CASE("yocotron --version names every library", "[cli]") {
  auto r = run_yocotron("--version");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("yocotron 0."));
  CHECK_THAT(r.out, ContainsSubstring("LibTorch "));
  CHECK_THAT(r.out, ContainsSubstring("CUDA available: "));
  CHECK_THAT(r.out, ContainsSubstring("NCCL"));
  CHECK_THAT(r.out, ContainsSubstring("MPI Open MPI"));
}

TEST_CASE("numeric options: parsed strictly, checked against their range, every bad value one line", "[cli]") {
  using yt::ArgParser;
  auto parser = [] {
    ArgParser p("demo", "numbers");
    p.integer("--n", "N", "a count", 1, 10).number("--f", "F", "a fraction", 0, 1, /*max_open=*/true).integer("--big", "N", "any", 0);
    return p;
  };
  ArgParser ok = parser();
  REQUIRE(ok.parse({"--n", "3", "--f=0.25", "--big", "+9223372036854775807"}));
  CHECK(ok.get_integer("--n", 0) == 3);
  CHECK(ok.get_number("--f", 0) == 0.25);
  CHECK(ok.get_integer("--big", 0) == INT64_MAX);
  CHECK(ok.get_integer("--missing", 7) == 7);
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--n", "0"}, "--n 0: out of range; expected an integer in [1, 10]"},
      {{"--n", "-3"}, "--n -3: out of range; expected an integer in [1, 10]"},
      {{"--n=11"}, "--n 11: out of range; expected an integer in [1, 10]"},
      {{"--n", "2.5"}, "--n 2.5: not an integer; expected an integer in [1, 10]"},
      {{"--n", "1e3"}, "--n 1e3: not an integer; expected an integer in [1, 10]"},
      {{"--n", "abc"}, "--n abc: not an integer; expected an integer in [1, 10]"},
      {{"--n", ""}, "--n : not an integer; expected an integer in [1, 10]"},
      {{"--n", "+-1"}, "--n +-1: not an integer; expected an integer in [1, 10]"},
      {{"--big", "99999999999999999999"}, "--big 99999999999999999999: out of range; expected an integer >= 0"},
      {{"--f", "1"}, "--f 1: out of range; expected a number in [0, 1)"},
      {{"--f", "-0.5"}, "--f -0.5: out of range; expected a number in [0, 1)"},
      {{"--f", "nan"}, "--f nan: not a number; expected a number in [0, 1)"},
      {{"--f", "0.5x"}, "--f 0.5x: not a number; expected a number in [0, 1)"},
  };
  for (const auto& [args, message] : bad) {
    ArgParser p = parser();
    INFO(message);
    try {
      p.parse(args);
      FAIL("accepted");
    } catch (const yt::UsageError& e) {
      REQUIRE(e.problems().size() == 1);
      CHECK(e.problems()[0] == message);
    }
  }
  ArgParser two = parser();
  try {
    two.parse({"--n", "0", "--f", "2"});
    FAIL("accepted");
  } catch (const yt::UsageError& e) {
    CHECK(e.problems().size() == 2);
  }
  CHECK_THAT(parser().help(), ContainsSubstring("a count [an integer in [1, 10]]"));
  CHECK_THAT(parser().help(), ContainsSubstring("a fraction [a number in [0, 1)]"));
}

TEST_CASE("each command's numeric options: a bad value exits 2 with one line naming option, value and range", "[cli]") {
  const std::string tiny = " --config recipes/tiny/transformer.yaml";
  struct Case {
    std::string args, line;
  };
  const std::vector<Case> cases = {
      {"bench" + tiny + " --steps -1", "error: --steps -1: out of range; expected an integer in [1, 1000000000]"},
      {"bench" + tiny + " --steps 0 --part loader", "error: --steps 0: out of range; expected an integer in [1, 1000000000]"},
      {"bench" + tiny + " --steps ten", "error: --steps ten: not an integer; expected an integer in [1, 1000000000]"},
      {"bench" + tiny + " --warmup -1", "error: --warmup -1: out of range; expected an integer in [0, 1000000000]"},
      {"bench" + tiny + " --profile /tmp/p --profile-steps 0",
       "error: --profile-steps 0: out of range; expected an integer in [1, 1000000000]"},
      {"compare a b --smooth -2", "error: --smooth -2: out of range; expected an integer in [0, 1000000]"},
      {"compare a b --smooth 0.5", "error: --smooth 0.5: not an integer; expected an integer in [0, 1000000]"},
      {"export-hf recipes/tiny/transformer.yaml --out /tmp/x --sample-tokens -5",
       "error: --sample-tokens -5: out of range; expected an integer >= 0"},
      {"export-hf recipes/tiny/transformer.yaml --out /tmp/x --sample-tokens 257",
       "error: --sample-tokens 257: out of range; expected an integer in [0, 256] (model.max_seq_len)"},
  };
  for (const auto& c : cases) {
    auto r = run_yocotron(c.args);
    INFO(c.args << "\n" << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring(c.line + "\n"));
    CHECK(r.out.empty());
  }
  // Two bad values: two lines, then the pointer to --help.
  auto two = run_yocotron("bench" + tiny + " --steps -1 --warmup x");
  CHECK(two.exit_code == 2);
  CHECK_THAT(two.err, ContainsSubstring("error: --steps -1: out of range; expected an integer in [1, 1000000000]\n"
                                        "error: --warmup x: not an integer; expected an integer in [0, 1000000000]\n"
                                        "(see `yocotron bench --help`)"));
  auto help = run_yocotron("bench --help");
  CHECK_THAT(help.out, ContainsSubstring("[an integer in [1, 1000000000]]"));
}

TEST_CASE("tokenize's numeric options: a bad value exits 2 with one line naming option, value and range", "[cli]") {
  if (!std::filesystem::exists(std::filesystem::path(yt::test::yocotron_bin()).parent_path() / "yocotron-tokenize")) {
    WARN("skipped: this build has no yocotron-tokenize (SentencePiece or zstd missing)");
    return;
  }
  const std::string base = "tokenize --input README.md --out /tmp/yt-never-written";
  struct Case {
    std::string args, line;
  };
  const std::vector<Case> cases = {
      {" --vocab-size 400 --threads -3", "error: --threads -3: out of range; expected an integer in [1, 4096]"},
      {" --vocab-size 400 --threads 1.5", "error: --threads 1.5: not an integer; expected an integer in [1, 4096]"},
      {" --vocab-size 10", "error: --vocab-size 10: out of range; expected an integer in [259, 2147483647]"},
      {" --tokenizer x.model --vocab-size -5", "error: --vocab-size -5: out of range; expected an integer in [259, 2147483647]"},
      {" --vocab-size 400 --val-fraction 1", "error: --val-fraction 1: out of range; expected a number in [0, 1)"},
      {" --vocab-size 400 --val-fraction x", "error: --val-fraction x: not a number; expected a number in [0, 1)"},
      {" --vocab-size 400 --max-bad-fraction 1.5", "error: --max-bad-fraction 1.5: out of range; expected a number in [0, 1]"},
      {" --vocab-size 400 --shard-tokens 0", "error: --shard-tokens 0: out of range; expected an integer >= 1"},
      {" --vocab-size 400 --train-sample-mb 0", "error: --train-sample-mb 0: out of range; expected an integer in [1, 1048576]"},
  };
  for (const auto& c : cases) {
    auto r = run_yocotron(base + c.args);
    INFO(c.args << "\n" << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring(c.line + "\n"));
  }
  CHECK(!std::filesystem::exists("/tmp/yt-never-written"));
}
