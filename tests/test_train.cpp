// `yocotron train` as a user runs it: real processes, real files, real signals.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/dataset.h"
#include "yocotron/fileio.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string markov_dataset(const fs::path& dir) {
  std::vector<uint32_t> toks = test::markov_tokens(6000, 64, 12345);
  std::string train = test::make_dataset(dir, "train", {std::vector<uint32_t>(toks.begin(), toks.begin() + 5000)}, 64);
  test::make_dataset(dir, "val", {std::vector<uint32_t>(toks.begin() + 5000, toks.end())}, 64);
  return train;
}

std::string tiny_recipe(const fs::path& dir, const std::string& train, const std::string& val, const std::string& extra = "") {
  std::string text = "model:\n  arch: yocopp\n  n_layers: 2\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                     "  d_ffn: 64\n  vocab_size: 64\n  max_seq_len: 32\n"
                     "data:\n  train: " + train + "\n  val: " + val + "\n  seq_len: 16\n"
                     "train:\n  steps: 12\n  micro_batch: 4\n  global_batch: 8\n  lr: 0.01\n  min_lr: 0.001\n"
                     "  warmup_steps: 2\n  eval_every: 4\n  eval_batches: 2\n"
                     "checkpoint:\n  every: 100\n  keep_last: 3\nlog:\n  every: 1\n" + extra;
  fs::path p = dir / "recipe.yaml";
  test::write_file(p, text);
  return p.string();
}

std::vector<json> metrics(const fs::path& run) {
  std::vector<json> rows;
  std::istringstream in(test::read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
  return rows;
}

// Every logged value that must repeat exactly, as the text written (shortest round-trip form).
std::vector<std::string> curve(const fs::path& run) {
  std::vector<std::string> out;
  for (const auto& r : metrics(run)) {
    if (r.contains("loss")) out.push_back(std::to_string(r["step"].get<int>()) + " loss " + r["loss"].dump() +
                                          " lr " + r["lr"].dump() + " gn " + r["grad_norm"].dump());
    else out.push_back(std::to_string(r["step"].get<int>()) + " val " + r["val_loss"].dump());
  }
  return out;
}

test::ProcResult train(const std::string& recipe, const fs::path& run, const std::string& args = "", const std::string& env = "") {
  return test::run_shell(env + " '" + test::yocotron_bin() + "' train --config " + recipe + " --run-dir " + run.string() + " " + args);
}

struct Fixture {
  fs::path dir = test::temp_dir("train");
  std::string data = markov_dataset(dir / "data");
  std::string recipe = tiny_recipe(dir, data, (dir / "data" / "val").string());
  std::vector<std::string> reference;  // the uninterrupted 12-step curve

  Fixture() {
    auto r = train(recipe, dir / "ref");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    reference = curve(dir / "ref");
    REQUIRE(reference.size() == 15);  // 12 train rows + 3 evaluations
  }
};

}  // namespace

TEST_CASE("exact resume: 6 steps, stop, resume, 6 more == 12 in one go (bitwise, CPU)", "[train]") {
  Fixture f;
  auto first = train(f.recipe, f.dir / "split", "--set train.exit_after_steps=6");
  REQUIRE(first.exit_code == 0);
  CHECK(fs::exists(f.dir / "split" / "checkpoints" / "step_00000006"));
  CHECK(metrics(f.dir / "split").back()["step"] == 6);
  auto second = train(f.recipe, f.dir / "split");
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  CHECK_THAT(second.err, ContainsSubstring("resumed from"));
  CHECK(curve(f.dir / "split") == f.reference);
  for (const char* file : {"config.yaml", "metrics.csv", "logs/rank0.log", "checkpoints/latest"}) CHECK(fs::exists(f.dir / "split" / file));
  // A finished run resumed again has nothing left to do and changes nothing.
  auto again = train(f.recipe, f.dir / "split");
  CHECK(again.exit_code == 0);
  CHECK(curve(f.dir / "split") == f.reference);
}

TEST_CASE("train.recompute=selective and full train the same curve bit for bit (CPU)", "[train]") {
  Fixture f;
  for (const char* mode : {"selective", "full"}) {
    INFO(mode);
    auto r = train(f.recipe, f.dir / mode, std::string("--set train.recompute=") + mode);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(curve(f.dir / mode) == f.reference);
  }
}

TEST_CASE("kill -9 while a checkpoint is written: the previous one survives and the run resumes", "[train]") {
  Fixture f;
  fs::path run = f.dir / "crash";
  std::string cmd = "YOCOTRON_TEST_CHECKPOINT_PAUSE=8:60 '" + test::yocotron_bin() + "' train --config " + f.recipe +
                    " --run-dir " + run.string() + " --set checkpoint.every=4 >/dev/null 2>&1 & echo $! > " +
                    (f.dir / "pid").string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  // Wait until step 8's checkpoint is fully written into its temporary directory, then kill.
  bool paused = false;
  for (int i = 0; i < 600 && !paused; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (fs::exists(run / "checkpoints"))
      for (const auto& e : fs::directory_iterator(run / "checkpoints"))
        paused = paused || (starts_with(e.path().filename().string(), ".tmp-step_00000008") && fs::exists(e.path() / "manifest.json"));
  }
  REQUIRE(paused);
  std::string pid = test::read_file(f.dir / "pid");
  REQUIRE(std::system(("kill -9 " + pid).c_str()) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(!fs::exists(run / "checkpoints" / "step_00000008"));
  CHECK_NOTHROW(verify_checkpoint((run / "checkpoints" / "step_00000004").string()));
  CHECK(test::read_file(run / "checkpoints" / "latest") == "step_00000004\n");
  auto resumed = train(f.recipe, run, "--set checkpoint.every=4");
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, ContainsSubstring("step_00000004 at step 4"));
  CHECK(curve(run) == f.reference);
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))  // the dead writer's temporary is gone
    CHECK(!starts_with(e.path().filename().string(), ".tmp-"));
}

TEST_CASE("corrupt or incomplete checkpoints are skipped with a warning naming them, or refused", "[train]") {
  Fixture f;
  fs::path run = f.dir / "corrupt";
  REQUIRE(train(f.recipe, run, "--set checkpoint.every=4 --set train.exit_after_steps=8").exit_code == 0);
  fs::path newest = run / "checkpoints" / "step_00000008";
  std::string raw = test::read_file(newest / "model-tp00-of-01.safetensors");
  raw[raw.size() / 2] ^= 0x20;
  test::write_file(newest / "model-tp00-of-01.safetensors", raw);
  auto r = train(f.recipe, run, "--set checkpoint.every=4");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, ContainsSubstring("skipping checkpoint: " + (newest / "model-tp00-of-01.safetensors").string() + ": checksum mismatch"));
  CHECK_THAT(r.err, ContainsSubstring("step_00000004 at step 4"));
  CHECK(curve(run) == f.reference);

  fs::remove(run / "checkpoints" / "step_00000012" / "optimizer-tp00-of-01.safetensors");
  auto explicit_path = train(f.recipe, run, "--resume " + (run / "checkpoints" / "step_00000012").string());
  CHECK(explicit_path.exit_code == 1);
  CHECK_THAT(explicit_path.err, ContainsSubstring("step_00000012/optimizer-tp00-of-01.safetensors: missing"));
  auto fresh = train(f.recipe, run, "--resume none");
  CHECK(fresh.exit_code == 2);  // the flag contradicts the run directory: bad input
  CHECK_THAT(fresh.err, ContainsSubstring("holds checkpoints"));
  auto shape = train(f.recipe, run, "--set model.d_ffn=96");
  CHECK(shape.exit_code == 2);
  CHECK_THAT(shape.err, ContainsSubstring("model.d_ffn=96 but the checkpoint was trained with model.d_ffn=64"));
}

TEST_CASE("SIGTERM: finish the step, checkpoint, exit 75; the resumed run continues the curve", "[train]") {
  Fixture f;
  fs::path run = f.dir / "sigterm";
  auto r = train(f.recipe, run, "", "YOCOTRON_TEST_SIGNAL_AFTER_STEP=5");
  INFO(r.err);
  REQUIRE(r.exit_code == 75);
  CHECK_THAT(r.err, ContainsSubstring("stopped by a signal at step 5 (signal 15 here): checkpoint step_00000005 holds it; "
                                      "exit status 75, resume with --resume auto"));
  CHECK(fs::exists(run / "checkpoints" / "step_00000005"));
  REQUIRE(train(f.recipe, run).exit_code == 0);
  CHECK(curve(run) == f.reference);
}

TEST_CASE("a non-finite loss is skipped and counted; too many in a row abort without a checkpoint", "[train]") {
  Fixture f;
  fs::path once = f.dir / "nan-once";
  auto r = train(f.recipe, once, "", "YOCOTRON_TEST_NAN_AT_STEPS=3");
  REQUIRE(r.exit_code == 0);
  auto rows = metrics(once);
  for (const auto& row : rows) {
    if (!row.contains("loss")) continue;
    int step = row["step"];
    CHECK(row["skipped"] == (step >= 3 ? 1 : 0));
    if (step != 3) CHECK(std::isfinite(row["loss"].get<double>()));
    else CHECK(row["loss"].is_null());
  }
  fs::path many = f.dir / "nan-many";
  auto bad = train(f.recipe, many, "--set checkpoint.every=4 --set train.max_skipped_in_a_row=3",
                   "YOCOTRON_TEST_NAN_AT_STEPS=6,7,8,9");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, ContainsSubstring("aborting at step 8"));
  auto kept = list_checkpoints((many / "checkpoints").string());
  REQUIRE(kept.size() == 1);
  CHECK(fs::path(kept[0]).filename() == "step_00000004");
}

TEST_CASE("learning works: real text well below the unigram entropy; a repeated sequence memorised", "[train]") {
  fs::path dir = test::temp_dir("learn");
  auto ds = TokenDataset::open((test::tokenized_brown(dir, 512) / "train").string());
  std::vector<int64_t> all(ds->n_tokens());
  ds->copy_tokens(0, ds->n_tokens(), all.data());
  std::map<int64_t, double> counts;
  for (auto t : all) counts[t] += 1;
  double unigram = 0;
  for (auto& [t, c] : counts) unigram -= c / all.size() * std::log(c / all.size());
  std::string recipe = tiny_recipe(dir, (dir / "brown" / "train").string(), (dir / "brown" / "val").string(),
                                   "");
  auto r = train(recipe, dir / "run",
                 "--set model.arch=transformer --set model.vocab_size=512 --set model.d_model=64 --set model.d_ffn=176"
                 " --set model.max_seq_len=64 --set data.seq_len=64 --set train.steps=300 --set train.micro_batch=16"
                 " --set train.global_batch=16 --set train.lr=3e-3 --set train.min_lr=3e-4 --set train.warmup_steps=30"
                 " --set train.eval_every=300 --set train.eval_batches=8 --set log.every=25");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto rows = metrics(dir / "run");
  double final_loss = 0, val = 0;
  for (const auto& row : rows) {
    if (row.contains("loss")) final_loss = row["loss"];
    if (row.contains("val_loss")) val = row["val_loss"];
  }
  INFO("unigram entropy " << unigram << " nats, final train loss " << final_loss << ", val " << val);
  CHECK(final_loss < unigram - 0.5);
  CHECK(val < unigram - 0.3);

  // A 40-token sequence repeated: the model learns it by heart.
  std::vector<uint32_t> seq, toks;
  for (int i = 0; i < 40; ++i) seq.push_back(static_cast<uint32_t>((i * 37 + 11) % 64));
  for (int k = 0; k < 150; ++k) toks.insert(toks.end(), seq.begin(), seq.end());
  std::string rep = test::make_dataset(dir / "rep", "train", {toks}, 64);
  std::string rrecipe = tiny_recipe(dir, rep, "", "");
  auto m = train(rrecipe, dir / "rep-run", "--set train.steps=150 --set train.lr=0.01 --set train.warmup_steps=10 --set log.every=10");
  REQUIRE(m.exit_code == 0);
  CHECK(metrics(dir / "rep-run").back()["loss"].get<double>() < 0.05);
}

namespace {

// The rows of a curve() after `step`.
std::vector<std::string> after_step(const std::vector<std::string>& rows, int step) {
  std::vector<std::string> out;
  for (const auto& r : rows)
    if (std::stoi(r) > step) out.push_back(r);
  return out;
}

// True once RUN/metrics.jsonl holds a training row of `step` (a line being written does not count).
bool logged(const fs::path& run, int step) {
  std::istringstream in(test::read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("loss") && j["step"] == step) return true;
  }
  return false;
}

std::string train_command(const std::string& recipe, const fs::path& run, const std::string& args = "") {
  return "'" + test::yocotron_bin() + "' train --config " + recipe + " --run-dir " + run.string() + " " + args;
}

std::string hostname() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

TEST_CASE("--resume RUN_DIR continues from that run's newest checkpoint that verifies", "[train]") {
  Fixture f;
  fs::path a = f.dir / "a";
  REQUIRE(train(f.recipe, a, "--set checkpoint.every=4 --set train.exit_after_steps=8").exit_code == 0);
  fs::path newest = a / "checkpoints" / "step_00000008" / "state.json";
  test::write_file(newest, test::read_file(newest) + " ");  // no longer matches its manifest
  auto r = train(f.recipe, f.dir / "b", "--resume " + a.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, ContainsSubstring("skipping checkpoint: " + newest.string()));
  CHECK_THAT(r.err, ContainsSubstring("resumed from " + (a / "checkpoints" / "step_00000004").string() + " at step 4"));
  CHECK(curve(f.dir / "b") == after_step(f.reference, 4));

  fs::path empty = f.dir / "empty-run";
  fs::create_directories(empty / "checkpoints");
  auto none = train(f.recipe, f.dir / "c", "--resume " + empty.string());
  CHECK(none.exit_code == 2);
  CHECK(none.err == "error: --resume " + empty.string() + ": a run directory without checkpoints\n");
  auto missing = train(f.recipe, f.dir / "c", "--resume " + (f.dir / "nowhere").string());
  CHECK(missing.exit_code == 2);
  CHECK(missing.err == "error: --resume " + (f.dir / "nowhere").string() + ": no such checkpoint or run directory\n");
  // A damaged run directory is found at startup, not at the first checkpoint.
  test::write_file(f.dir / "d" / "checkpoints", "not a directory");
  auto damaged = train(f.recipe, f.dir / "d");
  CHECK(damaged.exit_code == 2);
  CHECK(damaged.err == "error: " + (f.dir / "d" / "checkpoints").string() +
                           ": exists and is not a directory (the run directory is damaged; move it aside)\n");
  CHECK_FALSE(fs::exists(f.dir / "d" / "metrics.jsonl"));
  // A STOP left behind that cannot be removed would stop every later run at once: refused, named.
  test::write_file(f.dir / "e" / "STOP" / "notes", "x");
  auto stop_dir = train(f.recipe, f.dir / "e");
  CHECK(stop_dir.exit_code == 2);
  CHECK(stop_dir.err == "error: " + (f.dir / "e" / "STOP").string() +
                            " was left by an earlier stop and cannot be removed (a non-empty directory); remove it, or it "
                            "would stop every run at once\n");
  CHECK(fs::exists(f.dir / "e" / "STOP" / "notes"));
  // A crafted state.json (its checksum recomputed) whose sample count would wrap the token count of
  // later checkpoints: refused at resume, naming the file, not written into a checkpoint that cannot load.
  const fs::path ck = a / "checkpoints" / "step_00000004";
  auto st = json::parse(test::read_file(ck / "state.json"));
  st["consumed_samples"] = 1ull << 62;
  st["tokens"] = INT64_MAX;
  const std::string text = st.dump(2) + "\n";
  test::write_file(ck / "state.json", text);
  auto manifest = json::parse(test::read_file(ck / "manifest.json"));
  manifest["files"]["state.json"] = {{"bytes", text.size()}, {"crc32c", crc32c(text.data(), text.size())}};
  test::write_file(ck / "manifest.json", manifest.dump(2));
  auto wrapped = train(f.recipe, f.dir / "g", "--resume " + ck.string());
  CHECK(wrapped.exit_code == 1);
  CHECK(ends_with(wrapped.err, "\nerror: " + ck.string() + "/state.json: consumed_samples 4611686018427387904 at step 4 would "
                                                           "overflow the token count before train.steps=12\n"));  // after resume's warnings
}

TEST_CASE("one trainer per run directory: a second is refused naming the first, which finishes untouched; kill -9 frees it", "[train]") {
  Fixture f;
  fs::path run = f.dir / "shared";
  {
    // The first trainer pauses after step 3 (YOCOTRON_TEST_STALL), holding the lock.
    test::Background first("env YOCOTRON_TEST_STALL=0:3:8 " + train_command(f.recipe, run));
    REQUIRE(test::wait_until([&] { return logged(run, 2); }, 120));
    auto second = train(f.recipe, run);
    INFO(second.err);
    CHECK(second.exit_code == 2);
    const std::string head = cat("error: ", run.string(), ": in use by another trainer (host ", hostname(), ", pid ", first.pid(), ", since ");
    CHECK(starts_with(second.err, head));
    CHECK(ends_with(second.err, cat(", as ", (run / ".lock").string(), " says); wait for it to end, or train into another --run-dir\n")));
    CHECK(std::count(second.err.begin(), second.err.end(), '\n') == 1);
    CHECK(first.wait(120) == 0);
    INFO(first.err());
    CHECK(curve(run) == f.reference);  // every row of the first run, none rewritten by the second
    CHECK_THAT(test::read_file(run / ".lock"), ContainsSubstring(cat(", pid ", first.pid(), ", since ")));
  }
  // The kernel drops the lock with its process: after kill -9 the next trainer takes it and resumes.
  fs::path killed = f.dir / "killed";
  test::Background victim("env YOCOTRON_TEST_STALL=0:5:60 " + train_command(f.recipe, killed, "--set checkpoint.every=4"));
  REQUIRE(test::wait_until([&] { return test::read_file(killed / "checkpoints" / "latest") == "step_00000004\n"; }, 120));
  victim.signal(SIGKILL);
  REQUIRE(victim.wait(30) == 128 + SIGKILL);
  auto next = train(f.recipe, killed, "--set checkpoint.every=4");
  INFO(next.err);
  REQUIRE(next.exit_code == 0);
  CHECK_THAT(next.err, ContainsSubstring("step_00000004 at step 4"));
  CHECK(curve(killed) == f.reference);
}

TEST_CASE("a split too small for a step or for evaluation: one line naming it and the keys, exit 2, before any step", "[train]") {
  Fixture f;
  std::string tiny_val = test::make_dataset(f.dir / "tiny-val", "val", {test::markov_tokens(10, 64, 3)}, 64);
  std::string tiny_train = test::make_dataset(f.dir / "tiny-train", "train", {test::markov_tokens(100, 64, 4)}, 64);
  struct Case {
    std::string run, set, line;
  };
  for (const auto& c : {Case{"v", "data.val=" + tiny_val,
                             "error: data.val=" + tiny_val + " holds 10 tokens: 0 samples of data.seq_len+1 = 17 tokens, and evaluation "
                             "needs one (use a larger validation split, a smaller data.seq_len, or train.eval_every=0)\n"},
                        Case{"t", "data.train=" + tiny_train,
                             "error: data.train=" + tiny_train + " holds 100 tokens: 6 samples of data.seq_len+1 = 17 tokens, and one "
                             "step takes train.global_batch=8 of them (use more data or a smaller data.seq_len or train.global_batch)\n"}}) {
    INFO(c.set);
    auto r = train(f.recipe, f.dir / c.run, "--set " + c.set);
    CHECK(r.exit_code == 2);
    CHECK(r.err == c.line);
    CHECK(!fs::exists(f.dir / c.run / "metrics.jsonl"));
  }
  // The same val split serves a shorter sequence, or no evaluation.
  CHECK(train(f.recipe, f.dir / "v8", "--set data.val=" + tiny_val + " --set data.seq_len=8 --set train.steps=4").exit_code == 0);
  CHECK(train(f.recipe, f.dir / "v0", "--set data.val=" + tiny_val + " --set train.eval_every=0 --set train.steps=2").exit_code == 0);
}

TEST_CASE("SIGTERM during a long evaluation: 75 within seconds, a checkpoint, and the resumed run gives the same curve", "[train]") {
  Fixture f;
  // 50 evaluation batches; the interrupted run takes 0.4 s more per batch (20 s per evaluation).
  const std::string evals = "--set train.eval_batches=50";
  REQUIRE(train(f.recipe, f.dir / "ref50", evals).exit_code == 0);
  const auto reference = curve(f.dir / "ref50");
  REQUIRE(reference.size() == 15);
  fs::path run = f.dir / "stopped";
  test::Background t("env YOCOTRON_TEST_EVAL_BATCH_SECS=0.4 " + train_command(f.recipe, run, evals));
  REQUIRE(test::wait_until([&] { return logged(run, 4); }, 120));  // the evaluation of step 4 starts now
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto t0 = std::chrono::steady_clock::now();
  t.signal(SIGTERM);
  int code = t.wait(60);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(t.err());
  CHECK(code == 75);
  CHECK(secs < 8);  // the evaluation had about 19 s left
  CHECK_THAT(t.err(), ContainsSubstring("stopped by a signal at step 4, during its evaluation (signal 15 here): checkpoint step_00000004"));
  CHECK_NOTHROW(verify_checkpoint((run / "checkpoints" / "step_00000004").string()));
  CHECK(json::parse(test::read_file(run / "checkpoints" / "step_00000004" / "state.json"))["eval_pending"] == true);
  // The resumed run evaluates step 4 first, then goes on as if never stopped.
  auto resumed = train(f.recipe, run, evals);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(curve(run) == reference);
  CHECK(json::parse(test::read_file(run / "checkpoints" / "step_00000012" / "state.json"))["eval_pending"] == false);
}

TEST_CASE("launch/slurm.sbatch: SIGTERM to the batch shell checkpoints through mpirun, exits 75 and requeues", "[train]") {
  Fixture f;
  fs::path run = f.dir / "slurm", fake = f.dir / "fake-bin";
  // SLURM's scontrol is not here: a stand-in records how the script calls it.
  test::write_file(fake / "scontrol", "#!/bin/sh\necho \"$@\" >> " + (f.dir / "scontrol.calls").string() + "\n");
  fs::permissions(fake / "scontrol", fs::perms::owner_all);
  const std::string job =
      cat("env PATH=", fake.string(), ":", fs::path(YT_MPIEXEC).parent_path().string(), ":/usr/bin:/bin SLURM_JOB_ID=4242 ",
          "SLURM_NTASKS_PER_NODE=1 SLURM_CPUS_PER_TASK=1 RECIPE=", f.recipe, " RUN_DIR=", run.string(), " YOCOTRON=", test::yocotron_bin(),
          " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none ");
  {
    test::Background batch(job + "YOCOTRON_TEST_STALL=0:5:3 bash " + test::source_dir() + "/launch/slurm.sbatch");
    REQUIRE(test::wait_until([&] { return logged(run, 4); }, 120));
    batch.signal(SIGTERM);  // what --signal=B:TERM@120 does
    INFO(batch.out() + batch.err());
    CHECK(batch.wait(60) == 75);
    CHECK_THAT(batch.out(), ContainsSubstring("requeueing job 4242"));
  }
  CHECK(test::read_file(f.dir / "scontrol.calls") == "requeue 4242\n");
  CHECK_FALSE(fs::exists(run / "STOP"));  // the script's stop file was served and removed
  REQUIRE(fs::exists(run / "checkpoints" / "latest"));
  // The requeued job: the same script resumes and finishes, and does not requeue again.
  auto again = test::run_shell(job + "bash " + test::source_dir() + "/launch/slurm.sbatch");
  INFO(again.out + again.err);
  CHECK(again.exit_code == 0);
  CHECK(test::read_file(f.dir / "scontrol.calls") == "requeue 4242\n");
  CHECK(curve(run) == f.reference);
}
