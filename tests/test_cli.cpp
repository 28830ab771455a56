// The real `yocotron` executable: help, usage errors and exit codes, `config`, `--version`.
#include "catch.hpp"
#include "helpers.h"

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
