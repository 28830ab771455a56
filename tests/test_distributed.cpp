// `mpirun -np N yocotron train` against one process: data parallel, tensor parallel, both, ZeRO-1,
// resuming on another mesh, and ranks that die or stall. Real processes, real files.
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using test::mpirun;

struct Setup {
  fs::path dir = test::temp_dir("dist");
  std::string recipe;
  Setup() {
    std::string train = test::make_dataset(dir / "data", "train", {test::markov_tokens(8000, 61, 99)}, 61);
    // vocab 61 (padded under TP), GQA, a YOCO++ model with its mixing scalars learning.
    test::write_file(dir / "r.yaml",
                     "model:\n  arch: yocopp\n  n_layers: 4\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n  d_ffn: 64\n"
                     "  vocab_size: 61\n  max_seq_len: 32\n  yocopp:\n    scaling_factor: 4.0\n"
                     "data:\n  train: " + train + "\n  seq_len: 16\n"
                     "train:\n  steps: 12\n  micro_batch: 2\n  global_batch: 8\n  lr: 0.01\n  min_lr: 0.001\n  warmup_steps: 2\n"
                     "  device: cpu\n"  // MPI collectives on the CPU backend, also in a CUDA build on a one-GPU node
                     "parallel:\n  bucket_mb: 0.004\n  timeout_s: 60\n"  // several buckets even for this tiny model
                     "checkpoint:\n  every: 100\nlog:\n  every: 1\n");
    recipe = (dir / "r.yaml").string();
  }
  test::ProcResult train(int np, const std::string& run, const std::string& args = "", const std::string& env = "") const {
    std::string launcher = np > 0 ? mpirun(np) : "";
    return test::run_shell(env + " " + launcher + "'" + test::yocotron_bin() + "' train --config " + recipe +
                           " --run-dir " + (dir / run).string() + " " + args);
  }
  std::vector<double> losses(const std::string& run) const {
    std::vector<double> out;
    std::istringstream in(test::read_file(dir / run / "metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line);
      if (j.contains("loss")) out.push_back(j["loss"].get<double>());
    }
    return out;
  }
};

void same_curve(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-5) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("step " << i + 1 << ": " << got[i] << " vs " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol * std::abs(want[i]));
  }
}

}  // namespace

TEST_CASE("data parallel: DP=2 and DP=4 give the one-process curve", "[dist]") {
  Setup s;
  REQUIRE(s.train(0, "one").exit_code == 0);
  auto one = s.losses("one");
  REQUIRE(one.size() == 12);
  CHECK(one.back() < one.front());
  for (int np : {2, 4}) {
    auto r = s.train(np, cat("dp", np));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.err, ContainsSubstring(cat("dp=", np, " x tp=1")));
    same_curve(s.losses(cat("dp", np)), one);
  }
  auto no_overlap = s.train(2, "dp2-sync", "--set parallel.overlap=false");
  REQUIRE(no_overlap.exit_code == 0);
  same_curve(s.losses("dp2-sync"), one);
}

TEST_CASE("tensor and data parallel: TP=2, DP=2 x TP=2, ZeRO-1", "[dist]") {
  Setup s;
  REQUIRE(s.train(0, "one").exit_code == 0);
  auto one = s.losses("one");
  auto tp2 = s.train(2, "tp2", "--set parallel.tp=2");
  INFO(tp2.err);
  REQUIRE(tp2.exit_code == 0);
  same_curve(s.losses("tp2"), one);
  auto mesh = s.train(4, "dp2tp2", "--set parallel.tp=2");
  INFO(mesh.err);
  REQUIRE(mesh.exit_code == 0);
  CHECK_THAT(mesh.err, ContainsSubstring("dp=2 x tp=2"));
  same_curve(s.losses("dp2tp2"), one);
  auto zero = s.train(2, "zero", "--set parallel.zero1=true");
  INFO(zero.err);
  REQUIRE(zero.exit_code == 0);
  CHECK_THAT(zero.err, ContainsSubstring("ZeRO-1"));
  auto plain = s.train(2, "plain");
  REQUIRE(plain.exit_code == 0);
  same_curve(s.losses("zero"), s.losses("plain"));
  auto zero_mesh = s.train(4, "zero-dp2tp2", "--set parallel.tp=2 --set parallel.zero1=true");
  REQUIRE(zero_mesh.exit_code == 0);
  same_curve(s.losses("zero-dp2tp2"), one);
}

TEST_CASE("a checkpoint from DP=2 x TP=2 (ZeRO-1) resumes at 1 x 1 and at DP=4 on the same curve", "[dist]") {
  Setup s;
  REQUIRE(s.train(0, "one").exit_code == 0);
  auto one = s.losses("one");
  for (int np : {0, 4}) {
    std::string run = cat("mesh-", np);
    auto first = s.train(4, run, "--set parallel.tp=2 --set parallel.zero1=true --set train.exit_after_steps=6");
    INFO(first.err);
    REQUIRE(first.exit_code == 0);
    CHECK(fs::exists(s.dir / run / "checkpoints" / "step_00000006" / "model-tp01-of-02.safetensors"));
    auto second = s.train(np, run, "");
    INFO(second.err);
    REQUIRE(second.exit_code == 0);
    CHECK_THAT(second.err, ContainsSubstring("resumed from"));
    same_curve(s.losses(run), one);
  }
}

TEST_CASE("sequence parallelism: TP=2 and DP=2 x TP=2 give the one-process curve; a run resumes with it switched on or off", "[dist]") {
  Setup s;
  REQUIRE(s.train(0, "one").exit_code == 0);
  auto one = s.losses("one");
  const std::string sp = " --set parallel.tp=2 --set parallel.sequence_parallel=true";
  auto tp2 = s.train(2, "sp-tp2", sp);
  INFO(tp2.err);
  REQUIRE(tp2.exit_code == 0);
  CHECK_THAT(tp2.err, ContainsSubstring("dp=1 x tp=2, sequence parallel"));
  same_curve(s.losses("sp-tp2"), one);
  auto mesh = s.train(4, "sp-dp2tp2", sp + " --set parallel.zero1=true");
  INFO(mesh.err);
  REQUIRE(mesh.exit_code == 0);
  CHECK_THAT(mesh.err, ContainsSubstring("dp=2 x tp=2, sequence parallel, ZeRO-1"));
  same_curve(s.losses("sp-dp2tp2"), one);
  for (bool sp_first : {true, false}) {
    const std::string run = sp_first ? "sp-then-plain" : "plain-then-sp";
    auto first = s.train(2, run, (sp_first ? sp : std::string(" --set parallel.tp=2")) + " --set train.exit_after_steps=6");
    INFO(first.err);
    REQUIRE(first.exit_code == 0);
    auto second = s.train(2, run, sp_first ? std::string(" --set parallel.tp=2") : sp);
    INFO(second.err);
    REQUIRE(second.exit_code == 0);
    CHECK_THAT(second.err, ContainsSubstring("resumed from"));
    same_curve(s.losses(run), one);
  }
  auto odd = s.train(2, "sp-odd", sp + " --set data.seq_len=15");
  CHECK(odd.exit_code == 2);
  CHECK_THAT(odd.err, ContainsSubstring("data.seq_len=15 is not a multiple of it"));
}

TEST_CASE("a rank that dies or stalls ends every rank with a message naming it", "[dist]") {
  Setup s;
  auto died = s.train(2, "died", "--set train.steps=50", "YOCOTRON_TEST_DIE=1:3");
  CHECK(died.exit_code != 0);
  CHECK_THAT(died.out + died.err, ContainsSubstring("rank 1"));
  auto stuck = s.train(2, "stuck", "--set train.steps=50 --set parallel.timeout_s=3", "YOCOTRON_TEST_STALL=1:3:120");
  CHECK(stuck.exit_code != 0);
  CHECK_THAT(stuck.err, ContainsSubstring("rank 0: collective"));
  CHECK_THAT(stuck.err, ContainsSubstring("has not finished after"));
}

TEST_CASE("mesh errors: TP not dividing the heads or the world, a batch that does not split", "[dist]") {
  Setup s;
  auto heads = s.train(0, "e1", "--set parallel.tp=3");
  CHECK(heads.exit_code == 2);
  CHECK_THAT(heads.err, ContainsSubstring("parallel.tp=3 does not divide model.n_heads=4"));
  auto world = s.train(3, "e2", "--set parallel.tp=2");
  CHECK(world.exit_code != 0);
  CHECK_THAT(world.out + world.err, ContainsSubstring("parallel.tp=2 does not divide the number of processes (3)"));
  auto batch = s.train(4, "e3", "--set train.global_batch=4 --set train.micro_batch=2");
  CHECK(batch.exit_code != 0);
  CHECK_THAT(batch.out + batch.err, ContainsSubstring("train.global_batch=4 is not a multiple of train.micro_batch x data-parallel size = 2 x 4"));
}

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("ranks launched with different settings end at once, each with one line naming the first difference", "[dist]") {
  Setup s;
  std::string other_data = test::make_dataset(s.dir / "other", "train", {test::markov_tokens(8000, 61, 7)}, 61);
  // An MPMD launch: the first `first_np` ranks as given, the last one with `last_args` added and
  // (train) its --run-dir `last_run`, when given.
  auto mpmd = [&](const std::string& run, int first_np, const std::string& last_args, const std::string& command = "train",
                  const std::string& last_run = "") {
    std::string bin = "'" + test::yocotron_bin() + "' " + command + " --config " + s.recipe;
    auto dir = [&](const std::string& r) { return command == "train" ? " --run-dir " + (s.dir / r).string() : ""; };
    return test::run_shell(mpirun(first_np) + bin + dir(run) + " : -np 1 " + bin + dir(last_run.empty() ? run : last_run) + " " +
                           last_args);
  };
  struct Case {
    std::string args, line, last_run;
  };
  const std::string recipe_hint = " (launch every rank with the same recipe and --set options)";
  std::vector<Case> cases = {
      {"--set train.lr=0.5", "error: ranks disagree on train.lr: rank 0 has 0.01, rank 1 has 0.5" + recipe_hint, ""},
      {"--set model.d_model=64", "error: ranks disagree on model.d_model: rank 0 has 32, rank 1 has 64" + recipe_hint, ""},
      {"--set train.seed=7", "error: ranks disagree on train.seed: rank 0 has 1234, rank 1 has 7" + recipe_hint, ""},
      {"--set data.train=" + other_data, cat("error: ranks disagree on data.train: rank 0 has ", (s.dir / "data" / "train").string(),
                                             ", rank 1 has ", other_data, recipe_hint), ""},
      {"", cat("error: ranks disagree on run directory: rank 0 has ", (s.dir / "mismatch").string(), ", rank 1 has ",
               (s.dir / "elsewhere").string(), " (give every rank the same --run-dir)"),
       "elsewhere"},
      {"--resume none", "error: ranks disagree on --resume: rank 0 has auto, rank 1 has none (give every rank the same --resume)", ""},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    auto t0 = std::chrono::steady_clock::now();
    auto r = mpmd("mismatch", 1, c.args, "train", c.last_run);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO(r.out + r.err);
    CHECK(r.exit_code == 2);
    CHECK(count(r.err, c.line + "\n") == 2);  // one line from each rank
    CHECK(count(r.err, "error:") == 2);
    CHECK(secs < 60);
    CHECK(!fs::exists(s.dir / "mismatch"));  // nothing written
    CHECK(!fs::exists(s.dir / "elsewhere"));
  }
  // Four ranks, the last one different: the ranks are grouped by what they hold.
  auto four = mpmd("mismatch", 3, "--set train.lr=0.5");
  INFO(four.err);
  CHECK(four.exit_code == 2);
  CHECK(count(four.err, "error: ranks disagree on train.lr: ranks 0-2 have 0.01, rank 3 has 0.5" + recipe_hint + "\n") == 4);
  // bench under mpirun compares the same way (its options too).
  auto bench = mpmd("", 1, "--steps 1", "bench");
  INFO(bench.err);
  CHECK(bench.exit_code == 2);
  CHECK(count(bench.err, "error: ranks disagree on bench --steps: rank 0 has 20, rank 1 has 1" + recipe_hint + "\n") == 2);
  // log.level may differ; the same recipe trains as usual.
  auto ok = mpmd("same", 1, "--set log.level=debug");
  INFO(ok.err);
  REQUIRE(ok.exit_code == 0);
  CHECK_THAT(ok.err, ContainsSubstring("dp=2 x tp=1"));
}

TEST_CASE("ranks whose data differ behind the same path end with one line naming the split", "[dist]") {
  Setup s;
  // The same relative data.train, resolved in two working directories holding different datasets.
  test::make_dataset(s.dir / "a" / "data", "train", {test::markov_tokens(8000, 61, 1)}, 61);
  test::make_dataset(s.dir / "b" / "data", "train", {test::markov_tokens(7000, 61, 2)}, 61);
  std::string bin = "'" + test::yocotron_bin() + "' train --config " + s.recipe + " --set data.train=data/train --run-dir " +
                    (s.dir / "run").string();
  auto r = test::run_shell(mpirun(1) + "-wdir " + (s.dir / "a").string() + " " + bin + " : -np 1 -wdir " +
                           (s.dir / "b").string() + " " + bin);
  INFO(r.out + r.err);
  CHECK(r.exit_code == 2);
  CHECK(count(r.err, "error: ranks disagree on data.train contents: rank 0 has ") == 2);
  CHECK_THAT(r.err, ContainsSubstring(" (8000 tokens in 1 shard), rank 1 has "));
  CHECK_THAT(r.err, ContainsSubstring(" (7000 tokens in 1 shard) (every rank must read the same files"));
}

namespace {

// True once RUN/metrics.jsonl has begun the training row of `step`.
bool logged(const fs::path& run, int step) {
  return test::read_file(run / "metrics.jsonl").find(cat("{\"step\":", step, ",\"tokens\"")) != std::string::npos;
}

}  // namespace

TEST_CASE("a run directory in use: a second trainer under mpirun ends on every rank with rank 0's one line", "[dist]") {
  Setup s;
  fs::path run = s.dir / "shared";
  // One process holds the run directory (paused after step 3); a 2-rank job then asks for it.
  test::Background first("env YOCOTRON_TEST_STALL=0:3:8 '" + test::yocotron_bin() + "' train --config " + s.recipe +
                         " --run-dir " + run.string());
  REQUIRE(test::wait_until([&] { return logged(run, 2); }, 120));
  auto second = s.train(2, "shared");
  INFO(second.out + second.err);
  CHECK(second.exit_code == 2);
  CHECK(count(second.err, "error: ") == 1);
  CHECK(count(second.err, cat("error: ", run.string(), ": in use by another trainer (host ")) == 1);
  CHECK_THAT(second.err, ContainsSubstring(cat(", pid ", first.pid(), ", since ")));
  CHECK(first.wait(120) == 0);
  CHECK(s.losses("shared").size() == 12);
}

TEST_CASE("a val split short of one sample per data-parallel rank: every rank ends with rank 0's one line", "[dist]") {
  Setup s;
  // 20 tokens: one sample of 17, for two data-parallel ranks.
  std::string val = test::make_dataset(s.dir / "small", "val", {test::markov_tokens(20, 61, 5)}, 61);
  auto short_val = s.train(2, "short-val", "--set data.val=" + val + " --set train.eval_every=4");
  INFO(short_val.out + short_val.err);
  CHECK(short_val.exit_code == 2);
  CHECK(count(short_val.err, "error: ") == 1);
  CHECK(count(short_val.err, "error: data.val=" + val + " holds 20 tokens: 1 sample of data.seq_len+1 = 17 tokens, and evaluation "
                             "needs one for each of the 2 data-parallel ranks (") == 1);
  CHECK(s.train(1, "one-rank-val", "--set data.val=" + val + " --set train.eval_every=4").exit_code == 0);
}

namespace {

// Whether this machine's mpirun passes SIGUSR1 on to its ranks (Debian's does; one started with
// OMPI_MCA_plm=isolated, as on the GPU nodes, does not).
bool mpirun_forwards_sigusr1(const fs::path& dir) {
  fs::path ready = dir / "probe.ready", got = dir / "probe.got";
  test::Background probe(mpirun(1) + "sh -c 'trap \"touch " + got.string() + "; exit 0\" USR1; touch " + ready.string() +
                         "; for i in $(seq 100); do sleep 0.1; done'");
  if (!test::wait_until([&] { return fs::exists(ready); }, 60)) return false;
  probe.signal(SIGUSR1);
  probe.wait(30);
  return fs::exists(got);
}

// One stop under mpirun, by `request` (a signal to mpirun or RUN/STOP): every rank stops at the same
// step, one checkpoint, exit 75, and the resumed job keeps the one-process curve.
void stop_and_resume(Setup& s, const std::string& name, const std::function<void(test::Background&, const fs::path&)>& request,
                     const std::string& stopped_by) {
  const std::string steps = " --set train.steps=20";
  REQUIRE(s.train(0, "one", steps).exit_code == 0);
  auto one = s.losses("one");
  fs::path run = s.dir / name;
  // Rank 0 pauses 3 s after step 3 (YOCOTRON_TEST_STALL), so that the request lands mid-run.
  test::Background job("env YOCOTRON_TEST_STALL=0:3:3 " + mpirun(2) + "'" + test::yocotron_bin() + "' train --config " + s.recipe +
                       " --run-dir " + run.string() + steps);
  REQUIRE(test::wait_until([&] { return logged(run, 2); }, 120));
  request(job, run);
  INFO(job.err());
  CHECK(job.wait(60) == 75);
  CHECK(count(job.err(), stopped_by) == 1);
  CHECK_FALSE(fs::exists(fs::symlink_status(run / "STOP")));  // served, so the requeued job runs
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))
    if (starts_with(e.path().filename().string(), "step_")) ckpts.push_back(e.path().filename().string());
  REQUIRE(ckpts.size() == 1);
  CHECK(ckpts[0] < "step_00000020");
  auto resumed = s.train(2, name, steps);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, ContainsSubstring("resumed from"));
  same_curve(s.losses(name), one);
}

}  // namespace

TEST_CASE("SIGUSR1 to mpirun: every rank stops at one step, one checkpoint, exit 75; the resumed job keeps the curve", "[dist]") {
  Setup s;
  if (!mpirun_forwards_sigusr1(s.dir)) {
    WARN("skipped: this machine's mpirun does not forward SIGUSR1 to its ranks (the RUN/STOP test covers it)");
    return;
  }
  stop_and_resume(s, "usr1", [](test::Background& job, const fs::path&) { job.signal(SIGUSR1); }, "stopped by a signal at step ");
}

TEST_CASE("RUN/STOP under mpirun: every rank stops at one step, exit 75, the file is consumed; resume keeps the curve", "[dist]") {
  Setup s;
  // A dangling symbolic link counts (`ln -s anything RUN/STOP`); slurm.sbatch's regular file is tested in [train].
  stop_and_resume(s, "stopfile", [](test::Background&, const fs::path& run) { fs::create_symlink("nowhere", run / "STOP"); },
                  "stopped by request at step ");
}

TEST_CASE("a RUN/STOP left from an earlier stop is removed with a warning and does not stop the run", "[dist]") {
  Setup s;
  fs::path run = s.dir / "stale";
  test::write_file(run / "STOP", "");
  auto r = s.train(2, "stale", "--set train.steps=6");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(count(r.err, (run / "STOP").string() + " was left by an earlier stop; removed it") == 1);
  CHECK_FALSE(fs::exists(run / "STOP"));
  CHECK(s.losses("stale").size() == 6);
}
