// A stop signal in the long loops outside training: `yocotron tokenize` and `yocotron export-hf` stop
// between records or tensors, leave nothing that looks complete, and exit 75. Real processes, real
// signals. (The trainer's side, which checkpoints, is in test_train.cpp.)
#include <csignal>
#include <filesystem>
#include <fstream>

#include "catch.hpp"
#include "helpers.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

// The names in `dir` that start with `prefix`.
std::vector<std::string> entries(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> out;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (starts_with(e.path().filename().string(), prefix)) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

TEST_CASE("SIGTERM while tokenizing: exit 75 at once and no dataset, partial or complete", "[preempt]") {
  fs::path dir = test::temp_dir("preempt-tok");
  const std::string brown = test::source_dir() + "/tests/data/brown_sample.txt";
  auto tok = test::run_yocotron("tokenize --input " + brown + " --txt-split blank-lines --vocab-size 512 --val-fraction 0 --out " +
                                (dir / "tok").string());
  INFO(tok.err);
  REQUIRE(tok.exit_code == 0);
  {  // a corpus that takes one thread many seconds: the sample 100 times over (20 MB)
    const std::string text = test::read_file(brown);
    std::ofstream big(dir / "big.txt", std::ios::binary);
    for (int i = 0; i < 100; ++i) big << text << "\n\n";
  }
  const fs::path out = dir / "ds";
  test::Background job("'" + test::yocotron_bin() + "' tokenize --input " + (dir / "big.txt").string() +
                       " --txt-split blank-lines --tokenizer " + (dir / "tok" / "tokenizer.model").string() +
                       " --threads 1 --shard-tokens 20000 --out " + out.string());
  // Wait until shards are being written, then stop it.
  const fs::path first_shard = cat(out.string(), ".partial-", job.pid()) + "/train/shard_00000.bin";
  REQUIRE(test::wait_until([&] { return fs::exists(first_shard); }, 120));
  job.signal(SIGTERM);
  int code = job.wait(20);
  INFO(job.err());
  CHECK(code == 75);
  CHECK(job.err() == "yocotron: stopped by signal 15 while tokenizing into " + out.string() + "; nothing was written\n");
  CHECK(!fs::exists(out));
  CHECK(entries(dir, "ds").empty());  // no ds.partial-<pid> left either
}

TEST_CASE("SIGTERM during export-hf: exit 75 between tensors, no export directory left", "[preempt]") {
  fs::path dir = test::temp_dir("preempt-export");
  test::write_file(dir / "r.yaml", "model:\n  arch: transformer\n  n_layers: 2\n  d_model: 32\n  n_heads: 4\n  n_kv_heads: 2\n"
                                   "  d_ffn: 64\n  vocab_size: 64\n  max_seq_len: 32\ndata:\n  seq_len: 16\n");
  const fs::path out = dir / "hf";
  // 21 tensors, each write made 0.5 s longer: about 10 s of writing.
  test::Background job("env YOCOTRON_TEST_EXPORT_TENSOR_SECS=0.5 '" + test::yocotron_bin() + "' export-hf " +
                       (dir / "r.yaml").string() + " --out " + out.string());
  // The export is staged in DIR's sibling .hf.tmp-export-<pid> until it is complete.
  const fs::path staging = dir / cat(".hf.tmp-export-", job.pid());
  REQUIRE(test::wait_until([&] { return !entries(staging, "model.safetensors.tmp-").empty(); }, 120));
  job.signal(SIGTERM);
  int code = job.wait(5);
  INFO(job.err());
  CHECK(code == 75);
  CHECK(job.err() == "yocotron: stopped by signal 15 while exporting to " + out.string() + "; nothing was written\n");
  CHECK(!fs::exists(out));
  CHECK(entries(dir, ".hf").empty());  // the staging directory went with the stop
  // Left alone, the same export completes.
  auto whole = test::run_yocotron("export-hf " + (dir / "r.yaml").string() + " --out " + out.string());
  INFO(whole.err);
  CHECK(whole.exit_code == 0);
  CHECK(fs::exists(out / "model.safetensors"));
  CHECK(fs::exists(out / "config.json"));
}
