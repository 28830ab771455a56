// [reliability]: every reader of a file we did not just write, fed damaged and crafted files. A seeded
// fuzzer flips bytes, truncates, appends and overwrites fields of shards, datasets, safetensors files,
// checkpoints, recipes, metrics and TensorBoard files; each case must load or fail with one clean
// std::runtime_error (ConfigError for recipes) whose one-line message names the file. A sample goes
// through the real binary under `timeout`: exit 1 or 2 and a one-line message, never a crash or a hang.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <typeinfo>

#include <sys/resource.h>
#include <sys/stat.h>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/compare.h"
#include "yocotron/config.h"
#include "yocotron/dataset.h"
#include "yocotron/fileio.h"
#include "yocotron/log.h"
#include "yocotron/metrics.h"
#include "yocotron/safetensors.h"
#include "yocotron/shard.h"
#include "yocotron/str.h"
#include "yocotron/tensorboard.h"

using namespace yt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// splitmix64: the same cases on every machine and every run.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// Values that break arithmetic: zero, small, powers of two around type limits, all ones.
const uint64_t kEdgeValues[] = {0,           1,           2,           3,           7,          8,
                                255,         65535,       65536,       0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu,
                                1ull << 32,  1ull << 62,  1ull << 63,  (1ull << 63) + 1, ~0ull, ~0ull - 7};

// One damaged copy of `good`. Byte-level damage lands in [lo, hi) (a header, say); truncation and
// appended bytes anywhere. `how` says what was done, for the failure report.
std::string damage(const std::string& good, Rng& rng, size_t lo, size_t hi, std::string* how) {
  std::string s = good;
  hi = std::min(hi, s.size());
  switch (rng.below(6)) {
    case 0: {
      size_t n = 1 + rng.below(4);
      *how = "flipped bytes at";
      for (size_t i = 0; i < n; ++i) {
        size_t at = lo + rng.below(hi - lo);
        s[at] = static_cast<char>(s[at] ^ static_cast<char>(1 + rng.below(255)));
        *how += cat(" ", at);
      }
      break;
    }
    case 1: {
      size_t len = rng.below(s.size());
      s.resize(len);
      *how = cat("truncated to ", len, " bytes");
      break;
    }
    case 2: {
      size_t n = 1 + rng.below(64);
      for (size_t i = 0; i < n; ++i) s += static_cast<char>(rng.below(256));
      *how = cat("appended ", n, " bytes");
      break;
    }
    case 3:
    case 4: {
      const size_t width = rng.below(2) ? 8 : 4;
      if (hi - lo < width) return damage(good, rng, 0, good.size(), how);
      size_t at = lo + rng.below((hi - lo) / width) * width;
      uint64_t v = kEdgeValues[rng.below(std::size(kEdgeValues))];
      std::memcpy(&s[at], &v, width);
      *how = cat("wrote ", v, " as ", width, " bytes at ", at);
      break;
    }
    default: {  // punctuation for text formats
      static const char kChars[] = "\"{}[],:-09e. \n\t\\#&*!|>'%@\x00\xff";
      size_t at = lo + rng.below(hi - lo);
      s[at] = kChars[rng.below(sizeof(kChars) - 1)];
      *how = cat("set byte ", at, " to ", static_cast<int>(static_cast<unsigned char>(s[at])));
      break;
    }
  }
  return s;
}

// A JSON document with one value replaced by a hostile one, at a random place in the tree.
json damage_json(json j, Rng& rng, std::string* how) {
  static const json kValues[] = {-1, -9223372036854775807LL - 1, 18446744073709551615ull, 9223372036854775808ull,
                                 4294967296ull, 0, 1.5, 1e300, "x", "", "../../etc/passwd", "/etc/passwd",
                                 "train/../../x", nullptr, true, json::array(), json::object(), json::array({-1, 4}),
                                 json::array({4611686018427387904ull, 4611686018427387904ull, 8}), "F8_E4M3"};
  json* node = &j;
  std::string path;
  while ((node->is_object() || node->is_array()) && !node->empty() && rng.below(4) != 0) {
    size_t i = rng.below(node->size());
    if (node->is_object()) {
      auto it = node->begin();
      std::advance(it, static_cast<std::ptrdiff_t>(i));
      path += "." + it.key();
      node = &it.value();
    } else {
      path += cat("[", i, "]");
      node = &(*node)[i];
    }
  }
  const json& v = kValues[rng.below(std::size(kValues))];
  *how = cat("set ", path.empty() ? "<root>" : path, " to ", v.dump());
  *node = v;
  return j;
}

// The tally of one fuzzed reader: how many cases loaded, how many were refused cleanly, and the
// first few that were not clean.
struct Tally {
  int cases = 0, loaded = 0, refused = 0;
  std::vector<std::string> unclean;
  bool config_errors = false;  // recipes: ConfigError, nothing else

  void bad(const std::string& how, const std::string& what) {
    if (unclean.size() < 8) unclean.push_back(how + ": " + what);
    else if (unclean.size() == 8) unclean.push_back("...");
  }
  // Runs one case. A refusal must be a plain std::runtime_error (or ConfigError) with a one-line
  // message naming one of `names` (the file or its directory).
  void run(const std::string& how, const std::vector<std::string>& names, const std::function<void()>& call) {
    ++cases;
    auto names_one = [&](const std::string& line) {
      for (const auto& n : names)
        if (line.find(n) != std::string::npos) return true;
      return false;
    };
    auto check_line = [&](const std::string& line) {
      if (line.empty() || line.find('\n') != std::string::npos) bad(how, "not one line: " + line);
      else if (!names_one(line)) bad(how, "does not name the file: " + line);
    };
    try {
      call();
      ++loaded;
    } catch (const ConfigError& e) {
      ++refused;
      for (const auto& p : e.problems()) check_line(p);
      if (e.problems().empty()) bad(how, "ConfigError without problems");
    } catch (const std::runtime_error& e) {
      ++refused;
      if (config_errors) bad(how, cat("std::runtime_error, not ConfigError: ", e.what()));
      else if (typeid(e) != typeid(std::runtime_error)) bad(how, cat(typeid(e).name(), ": ", e.what()));
      else check_line(e.what());
    } catch (const std::exception& e) {
      ++refused;
      bad(how, cat(typeid(e).name(), ": ", e.what()));
    }
  }
  std::string report() const { return cat(cases, " cases: ", loaded, " loaded, ", refused, " refused; unclean:\n  ", join(unclean, "\n  ")); }
};

#define CHECK_TALLY(t)      \
  do {                      \
    INFO((t).report());     \
    CHECK((t).unclean.empty()); \
  } while (0)

// Warnings of damaged files dropped by design would flood the test output.
struct QuietLogs {
  QuietLogs() { log::set_level(log::Level::Error); }
  ~QuietLogs() { log::set_level(log::Level::Warn); }  // main()'s level
};

// Writes the JSON text `good`, changed by `edit`, to `p`.
void write_edited(const fs::path& p, const std::string& good, const std::function<void(json&)>& edit) {
  json j = json::parse(good);
  edit(j);
  test::write_file(p, j.dump(1));
}

// The real binary under `timeout`, refusing: exit 1 or 2 (never a signal or the timeout), and one
// line on stderr that names `name`.
void expect_refused(const std::string& args, const std::string& name, const std::string& also = "") {
  auto r = test::run_shell("timeout 120 '" + test::yocotron_bin() + "' " + args);
  INFO("yocotron " << args << "\nexit " << r.exit_code << "\nstderr: " << r.err);
  CHECK((r.exit_code == 1 || r.exit_code == 2));
  // One "error: " line; anything else is a log line ("[12:00:00] [rank 0] warning: ..."), not a backtrace.
  std::vector<std::string> errors;
  for (const auto& l : split(r.err, '\n')) {
    if (starts_with(l, "error: ")) errors.push_back(l);
    else CHECK((l.empty() || starts_with(l, "[")));
  }
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], ContainsSubstring(name));
  if (!also.empty()) CHECK_THAT(errors[0], ContainsSubstring(also));
}

// A shard with its header checksum (and the payload's) recomputed after `edit`: damage that the
// checksums cannot catch, so the header's fields themselves must be checked.
std::string reheader(std::string bytes, const std::function<void(ShardHeader&)>& edit, bool payload_crc = true) {
  ShardHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  edit(h);
  if (payload_crc) h.payload_crc32c = crc32c(bytes.data() + 64, bytes.size() - 64);
  h.header_crc32c = crc32c(&h, 52);
  std::memcpy(&bytes[0], &h, sizeof(h));
  return bytes;
}

std::string good_shard(const fs::path& p, uint64_t vocab, size_t n, size_t doc_len, uint64_t seed) {
  auto toks = test::markov_tokens(n, static_cast<uint32_t>(std::min<uint64_t>(vocab, 1u << 30)), seed);
  std::vector<uint64_t> starts;
  for (size_t i = 0; i < n; i += doc_len) starts.push_back(i);
  write_shard(p.string(), toks, starts, vocab, 0xABCD);
  return test::read_file(p);
}

// Reads every token and document offset of an opened shard: a header that passed must keep every
// access inside the mapping.
void read_all(const Shard& s) {
  std::vector<int64_t> buf(s.n_tokens());
  s.copy_tokens(0, s.n_tokens(), buf.data());
  for (uint64_t d = 0; d <= s.n_docs(); ++d) (void)s.doc_start(d);
}

}  // namespace

TEST_CASE("shards: every damaged byte is refused naming the file; crafted headers with valid checksums too", "[reliability]") {
  fs::path d = test::temp_dir("rel-shard");
  Rng rng{1};
  Tally verified, header_only;
  for (auto [vocab, n] : {std::pair<uint64_t, size_t>{1000, 997}, {70000, 301}}) {  // uint16 (with padding), uint32
    const std::string good = good_shard(d / "good.bin", vocab, n, 100, vocab);
    const fs::path p = d / "fuzz.bin";
    for (int i = 0; i < 700; ++i) {
      std::string how;
      std::string bad = rng.below(2) ? damage(good, rng, 0, 64, &how) : damage(good, rng, 0, good.size(), &how);
      if (bad == good) continue;
      test::write_file(p, bad);
      // Every byte is covered by a checksum or a check: a verified open refuses all of them.
      verified.run(how, {p.string()}, [&] { Shard s(p.string(), true); });
      header_only.run(how, {p.string()}, [&] { read_all(Shard(p.string(), false)); });
    }
  }
  CHECK_TALLY(verified);
  CHECK_TALLY(header_only);
  CHECK(verified.loaded == 0);
  CHECK(verified.cases > 1300);
  CHECK(header_only.refused > header_only.cases / 4);

  // Counts that overflow the size arithmetic, with both checksums valid: 2^63 + n uint16 tokens take
  // 2n bytes modulo 2^64, and 2^64 - 1 documents take 0 offset bytes.
  const std::string good = good_shard(d / "good.bin", 1000, 997, 100, 7);
  const fs::path crafted = d / "crafted.bin";
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.n_tokens += 1ull << 63; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring(crafted.string() + ": truncated shard or corrupt header: n_tokens 9223372036854776805"));
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.n_tokens = 1ull << 63; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring("n_tokens 9223372036854775808 (2 bytes each) does not fit"));
  std::string no_offsets = good.substr(0, (64 + 997 * 2 + 7) / 8 * 8);
  test::write_file(crafted, reheader(no_offsets, [](ShardHeader& h) { h.n_docs = ~0ull; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring("n_docs 18446744073709551615"));
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.token_bytes = 3; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring("bad token width 3"));
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.vocab_size = 0; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring("vocab_size 0 is outside"));
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.reserved = 5; }));
  CHECK_THROWS_WITH(Shard(crafted.string()), ContainsSubstring("reserved field"));
  CHECK_THROWS_WITH(Shard(d.string()), ContainsSubstring(d.string() + ": not a token shard (a directory)"));

  // The same 2^63-token shard through the real binary (it used to segfault `inspect`).
  test::write_file(crafted, reheader(good, [](ShardHeader& h) { h.n_tokens += 1ull << 63; }));
  expect_refused("inspect " + crafted.string(), crafted.string(), "does not fit");
  for (int i = 0; i < 4; ++i) {
    std::string how, bad = good;
    while (bad == good) bad = damage(good, rng, 0, 64, &how);
    test::write_file(crafted, bad);
    INFO(how);
    expect_refused("inspect " + crafted.string(), crafted.string());
  }
}

TEST_CASE("datasets: damaged manifests and shards are refused naming the file", "[reliability]") {
  fs::path d = test::temp_dir("rel-dataset");
  const std::string train = test::make_dataset(d, "train", {test::markov_tokens(500, 300, 1), test::markov_tokens(300, 300, 2)}, 300);
  const fs::path manifest = d / "manifest.json";
  const std::string good = test::read_file(manifest);
  REQUIRE(TokenDataset::open(train)->n_tokens() == 800);
  Rng rng{2};
  Tally bytes, fields, shards;
  for (int i = 0; i < 500; ++i) {
    std::string how;
    test::write_file(manifest, damage(good, rng, 0, good.size(), &how));
    bytes.run(how, {manifest.string()}, [&] { TokenDataset::open(train); });
  }
  for (int i = 0; i < 700; ++i) {
    std::string how;
    test::write_file(manifest, damage_json(json::parse(good), rng, &how).dump(1));
    // A changed shard name is refused naming the shard it names, inside the dataset.
    fields.run(how, {d.string()}, [&] { TokenDataset::open(train); });
  }
  test::write_file(manifest, good);
  const fs::path shard = d / "train" / "shard_00001.bin";
  const std::string good_shard_bytes = test::read_file(shard);
  for (int i = 0; i < 200; ++i) {
    std::string how;
    std::string bad = damage(good_shard_bytes, rng, 0, 64, &how);
    if (bad == good_shard_bytes) continue;
    test::write_file(shard, bad);
    shards.run(how, {shard.string()}, [&] { TokenDataset::open(train); });
  }
  test::write_file(shard, good_shard_bytes);
  CHECK_TALLY(bytes);
  CHECK_TALLY(fields);
  CHECK_TALLY(shards);
  CHECK(shards.loaded == 0);
  CHECK(bytes.refused > bytes.cases / 2);
  CHECK(fields.refused > fields.cases / 2);

  // Crafted: paths out of the dataset, totals that disagree, a vocabulary out of range.
  auto with = [&](const std::function<void(json&)>& edit) { write_edited(manifest, good, edit); };
  with([](json& m) { m["splits"]["train"]["shards"][0]["file"] = "../../outside.bin"; });
  CHECK_THROWS_WITH(TokenDataset::open(train),
                    ContainsSubstring(manifest.string() + ": malformed manifest: splits.train.shards[0].file: '../../outside.bin' is not a relative path"));
  expect_refused("inspect " + d.string(), manifest.string(), "not a relative path inside the dataset directory");
  with([](json& m) { m["splits"]["train"]["shards"][1]["file"] = "/etc/passwd"; });
  CHECK_THROWS_WITH(TokenDataset::open(train), ContainsSubstring("'/etc/passwd' is not a relative path"));
  with([](json& m) { m["splits"]["train"]["tokens"] = 801; });
  CHECK_THROWS_WITH(TokenDataset::open(train), ContainsSubstring("splits.train.tokens: 801 differs from the sum over its shards, 800"));
  with([](json& m) { m["splits"]["train"]["shards"][0]["tokens"] = 18446744073709551615ull; });
  CHECK_THROWS_WITH(TokenDataset::open(train), ContainsSubstring("token counts add up past 2^64"));
  with([](json& m) { m["tokenizer"]["vocab_size"] = -300; });
  CHECK_THROWS_WITH(TokenDataset::open(train), ContainsSubstring("tokenizer.vocab_size: expected a non-negative integer, found -300"));
  test::write_file(manifest, good);
}

TEST_CASE("safetensors: damaged and crafted headers are refused naming the file, before allocating", "[reliability]") {
  fs::path d = test::temp_dir("rel-st");
  const fs::path p = d / "t.safetensors";
  torch::manual_seed(0);
  save_safetensors(p.string(),
                   {{"w", torch::randn({3, 4})}, {"b", torch::randn({5}).to(at::kBFloat16)}, {"i", torch::arange(4).view({2, 2})},
                    {"e", torch::zeros({0, 3})}, {"m", torch::ones({3}, at::kBool)}},
                   {{"format", "pt"}});
  const std::string good = test::read_file(p);
  uint64_t header_len;
  std::memcpy(&header_len, good.data(), 8);
  const json header = json::parse(good.substr(8, header_len));
  const std::string data = good.substr(8 + header_len);
  auto with_header = [&](const json& h) {
    std::string text = h.dump();
    uint64_t n = text.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + text + data;
  };
  Rng rng{3};
  Tally bytes, fields;
  auto load = [&] {
    auto f = load_safetensors(p.string());
    uint64_t total = 0;
    for (const auto& [name, t] : f.tensors) total += static_cast<uint64_t>(t.numel()) * t.element_size();
    if (total > good.size() + 64) throw std::logic_error("loaded more tensor bytes than the file holds");
  };
  for (int i = 0; i < 800; ++i) {
    std::string how;
    test::write_file(p, rng.below(4) ? damage(good, rng, 0, 8 + header_len, &how) : damage(good, rng, 0, good.size(), &how));
    bytes.run(how, {p.string()}, load);
  }
  for (int i = 0; i < 700; ++i) {
    std::string how;
    test::write_file(p, with_header(damage_json(header, rng, &how)));
    fields.run(how, {p.string()}, load);
  }
  CHECK_TALLY(bytes);
  CHECK_TALLY(fields);
  CHECK(bytes.refused > bytes.cases / 2);
  CHECK(fields.refused > fields.cases / 2);

  auto crafted = [&](const std::function<void(json&)>& edit) {
    json h = header;
    edit(h);
    test::write_file(p, with_header(h));
  };
  crafted([](json& h) { h["w"]["shape"] = {-1, 4}; });  // used to reach torch: a backtrace, no file name
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring(p.string() + ": tensor 'w': shape [-1,4] has a negative dimension"));
  crafted([](json& h) { h["w"]["shape"] = {4611686018427387904ull, 4611686018427387904ull}; });
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring("the element count overflows 64 bits"));
  crafted([](json& h) { h["w"]["shape"] = {2305843009213693952ull}; });  // 2^61 F32 elements: 2^63 bytes
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring("the byte size overflows 64 bits"));
  crafted([](json& h) { h["w"]["dtype"] = "F8_E4M3"; });
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring("tensor 'w': unknown dtype \"F8_E4M3\""));
  crafted([](json& h) { h["w"]["data_offsets"] = {0, 1ull << 40}; });
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring("end past the data section"));
  crafted([](json& h) { h["b"]["data_offsets"] = h["w"]["data_offsets"]; h["b"]["shape"] = {24}; });
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring("overlap tensor"));
  std::string huge = good;
  uint64_t big = ~0ull - 3;
  std::memcpy(&huge[0], &big, 8);
  test::write_file(p, huge);
  CHECK_THROWS_WITH(load_safetensors(p.string()), ContainsSubstring(p.string() + ": corrupt safetensors header length"));
  CHECK_THROWS_WITH(load_safetensors(d.string()), ContainsSubstring(d.string() + ": not a safetensors file (a directory)"));
}

namespace {

// A checkpoint written by write_checkpoint, small enough to fuzz: a TP-split matrix, a vector, Adam
// moments and the CPU generator's state.
// The state a run writes at `step`: 3 samples of 100 tokens per step, none skipped.
CheckpointState state_at(int64_t step) {
  CheckpointState st;
  st.step = step;
  st.tokens = 300 * step;
  st.consumed_samples = static_cast<uint64_t>(3 * step);
  st.adam_steps = static_cast<double>(step);
  st.config_yaml = to_yaml(Config{});
  return st;
}

std::string small_checkpoint(const fs::path& root) {
  torch::manual_seed(0);
  CheckpointState st = state_at(7);
  CheckpointTensors t;
  t.model = {{"a", torch::randn({4, 3})}, {"b", torch::randn({5})}};
  t.exp_avg = {{"a", torch::randn({4, 3})}, {"b", torch::randn({5})}};
  t.exp_avg_sq = {{"a", torch::rand({4, 3})}, {"b", torch::rand({5})}};
  t.rng["cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  CheckpointLayout layout;
  layout.specs["a"] = ShardSpec{0, {4, 3}};
  layout.specs["b"] = ShardSpec{-1, {5}};
  return write_checkpoint(root.string(), st, t, 1, layout);
}

}  // namespace

TEST_CASE("checkpoints: damaged manifests, state and tensor files are refused naming the file", "[reliability]") {
  fs::path d = test::temp_dir("rel-ckpt");
  const std::string dir = small_checkpoint(d / "checkpoints");
  const LoadedCheckpoint ref = load_checkpoint(dir);
  REQUIRE(ref.state.step == 7);
  torch::manual_seed(0);  // small_checkpoint's first draw
  REQUIRE(torch::equal(ref.tensors.model.at("a"), torch::randn({4, 3})));
  const fs::path manifest = fs::path(dir) / "manifest.json";
  const fs::path state = fs::path(dir) / "state.json";
  const fs::path model = fs::path(dir) / "model-tp00-of-01.safetensors";
  const std::string good_manifest = test::read_file(manifest), good_state = test::read_file(state),
                    good_model = test::read_file(model);
  Rng rng{4};
  Tally man_bytes, man_fields, state_fields, model_bytes;
  for (int i = 0; i < 300; ++i) {
    std::string how;
    test::write_file(manifest, damage(good_manifest, rng, 0, good_manifest.size(), &how));
    man_bytes.run(how, {dir}, [&] { load_checkpoint(dir); });
  }
  for (int i = 0; i < 500; ++i) {
    std::string how;
    test::write_file(manifest, damage_json(json::parse(good_manifest), rng, &how).dump(2));
    man_fields.run(how, {dir}, [&] { load_checkpoint(dir); });
  }
  test::write_file(manifest, good_manifest);
  // Without verification (the ranks other than 0 on resume): the readers' own checks are all there is.
  for (int i = 0; i < 300; ++i) {
    std::string how;
    test::write_file(state, damage_json(json::parse(good_state), rng, &how).dump(2));
    state_fields.run(how, {state.string()}, [&] { load_checkpoint(dir, /*verify=*/false); });
  }
  test::write_file(state, good_state);
  uint64_t header_len;
  std::memcpy(&header_len, good_model.data(), 8);
  for (int i = 0; i < 300; ++i) {
    std::string how;
    test::write_file(model, damage(good_model, rng, 0, 8 + header_len, &how));
    model_bytes.run(how, {model.string()}, [&] { load_checkpoint(dir, /*verify=*/false); });
  }
  test::write_file(model, good_model);
  CHECK_TALLY(man_bytes);
  CHECK_TALLY(man_fields);
  CHECK_TALLY(state_fields);
  CHECK_TALLY(model_bytes);
  CHECK(man_bytes.refused > man_bytes.cases / 2);
  CHECK(man_fields.refused > man_fields.cases / 3);
  CHECK(state_fields.refused > state_fields.cases / 2);
  CHECK(model_bytes.refused > model_bytes.cases / 2);

  auto crafted = [&](const std::function<void(json&)>& edit) { write_edited(manifest, good_manifest, edit); };
  crafted([](json& m) { m["files"]["../../escape"] = {{"bytes", 1}, {"crc32c", 1}}; });
  CHECK_THROWS_WITH(verify_checkpoint(dir), ContainsSubstring(manifest.string() + ": malformed: files: '../../escape' is not a plain file name"));
  crafted([](json& m) { m["tp"] = 1000000000; });
  CHECK_THROWS_WITH(verify_checkpoint(dir), ContainsSubstring("tp: expected a positive integer"));
  crafted([](json& m) { m["files"]["state.json"]["crc32c"] = 1ull << 40; });
  CHECK_THROWS_WITH(verify_checkpoint(dir), ContainsSubstring("files.state.json.crc32c: expected a 32-bit unsigned integer"));
  crafted([](json& m) { m["tensors"]["a"]["global_shape"] = {-4, 3}; });
  CHECK_THROWS_WITH(load_checkpoint(dir), ContainsSubstring("tensors.a.global_shape: expected non-negative integers"));
  crafted([](json& m) { m["tensors"]["a"]["global_shape"] = {40, 3}; });
  CHECK_THROWS_WITH(load_checkpoint(dir), ContainsSubstring(model.string() + ": tensor 'a': its 1 TP shard(s) hold 4 rows"));
  crafted([](json& m) { m["step"] = 8; });
  CHECK_THROWS_WITH(load_checkpoint(dir), ContainsSubstring(state.string() + ": step 7 differs from the manifest's 8"));
  {  // state and manifest agree on another step than the directory's name (--resume auto orders by name)
    write_edited(state, good_state, [](json& j) {
      j["step"] = 1000;
      j["adam_steps"] = 1000;
      j["consumed_samples"] = 3000;
      j["tokens"] = 300000;
    });
    crafted([](json& m) { m["step"] = 1000; });
    CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring(state.string() + ": step 1000, but the directory is step_00000007"));
    test::write_file(state, good_state);
  }
  crafted([](json& m) { m["tensors"] = json::object(); });  // one shard: every tensor is whole anyway
  CHECK(torch::equal(load_checkpoint(dir).tensors.model.at("a"), ref.tensors.model.at("a")));
  crafted([](json& m) { m["tensors"]["c"] = {{"global_shape", {2}}, {"split_dim", -1}}; });
  CHECK_THROWS_WITH(load_checkpoint(dir), ContainsSubstring(manifest.string() + ": tensors.c names no tensor of " + model.string()));
  test::write_file(manifest, good_manifest);
  // state.json fields that parse but cannot have been written by a run (the checksum would be
  // recomputed by whoever crafted them): read without verification, as ranks other than 0 do.
  auto crafted_state = [&](const std::function<void(json&)>& edit) { write_edited(state, good_state, edit); };
  crafted_state([](json& j) { j["adam_steps"] = 1e308; });
  CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring(state.string() + ": malformed: adam_steps: 1e+308, but step 7 minus skipped_total 0 is 7"));
  crafted_state([](json& j) { j["adam_steps"] = 6.5; });
  CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring("adam_steps: 6.5, but step 7"));
  crafted_state([](json& j) { j["skipped_total"] = 9; });
  CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring(state.string() + ": malformed: skipped_total: 9 steps skipped of 7"));
  crafted_state([](json& j) { j["consumed_samples"] = 1ull << 62; });
  CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring(state.string() + ": malformed: consumed_samples: 4611686018427387904 is not between step (7"));
  crafted_state([](json& j) { j["consumed_samples"] = 3; });
  CHECK_THROWS_WITH(load_checkpoint(dir, false), ContainsSubstring("consumed_samples: 3 is not between step (7"));
  test::write_file(state, good_state);
  CHECK_NOTHROW(load_checkpoint(dir));
}

TEST_CASE("checkpoints: a write that runs out of space leaves the previous checkpoint and no temporary", "[reliability]") {
  fs::path d = test::temp_dir("rel-full");
  const fs::path root = d / "checkpoints";
  const std::string first = small_checkpoint(root);
  // A file size limit stands in for a full disk: writes past it fail with EFBIG (SIGXFSZ ignored).
  CheckpointState st = state_at(8);
  CheckpointTensors t;
  t.model = {{"a", torch::randn({256, 1024})}};
  t.exp_avg = {{"a", torch::randn({256, 1024})}};
  t.exp_avg_sq = {{"a", torch::rand({256, 1024})}};
  CheckpointLayout layout;
  layout.specs["a"] = ShardSpec{-1, {256, 1024}};
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  bool threw = false;
  try {
    write_checkpoint(root.string(), st, t, 3, layout);
  } catch (const std::exception& e) {
    threw = true;
    CHECK_THAT(std::string(e.what()), ContainsSubstring(".safetensors"));
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  CHECK(threw);
  for (const auto& e : fs::directory_iterator(root)) {
    INFO(e.path());
    CHECK_FALSE(starts_with(e.path().filename().string(), ".tmp-"));
  }
  CHECK(list_checkpoints(root.string()) == std::vector<std::string>{first});
  CHECK_NOTHROW(verify_checkpoint(first));
}

TEST_CASE("recipes: damaged YAML is a ConfigError naming the file; directories, duplicate keys, second documents", "[reliability]") {
  fs::path d = test::temp_dir("rel-yaml");
  const std::string good =
      "# a small recipe\nmodel:\n  arch: yoco\n  n_layers: 4\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 2\n"
      "  d_ffn: 128\n  vocab_size: 256\n  max_seq_len: 64\ndata:\n  train: data/x/train\n  seq_len: 32\n"
      "train:\n  steps: 10\n  micro_batch: 2\n  global_batch: 4\n  lr: 0.001\n  warmup_steps: 2\n"
      "log:\n  profile_steps: [2, 3]\n";
  const fs::path p = d / "recipe.yaml";
  test::write_file(p, good);
  REQUIRE(load_config(p.string()).model.n_layers == 4);
  Rng rng{5};
  Tally bytes, lines;
  bytes.config_errors = lines.config_errors = true;
  for (int i = 0; i < 600; ++i) {
    std::string how;
    test::write_file(p, damage(good, rng, 0, good.size(), &how));
    bytes.run(how, {p.string()}, [&] { load_config(p.string()); });
  }
  const auto good_lines = split(good, '\n');
  for (int i = 0; i < 400; ++i) {
    auto ls = good_lines;
    size_t a = rng.below(ls.size() - 1), b = rng.below(ls.size() - 1);
    std::string how;
    switch (rng.below(5)) {
      case 0: ls.insert(ls.begin() + static_cast<std::ptrdiff_t>(b), ls[a]), how = cat("line ", a + 1, " repeated before line ", b + 1); break;
      case 1: ls.erase(ls.begin() + static_cast<std::ptrdiff_t>(a)), how = cat("line ", a + 1, " deleted"); break;
      case 2: std::swap(ls[a], ls[b]), how = cat("lines ", a + 1, " and ", b + 1, " swapped"); break;
      case 3: ls.insert(ls.begin() + static_cast<std::ptrdiff_t>(a), "---"), how = cat("'---' before line ", a + 1); break;
      default: ls[a] = "  " + ls[a], how = cat("line ", a + 1, " indented"); break;
    }
    test::write_file(p, join(ls, "\n"));
    lines.run(how, {p.string()}, [&] { load_config(p.string()); });
  }
  CHECK_TALLY(bytes);
  CHECK_TALLY(lines);
  CHECK(bytes.refused > bytes.cases / 4);
  CHECK(lines.refused > lines.cases / 4);

  // A directory is not a recipe; a key given twice and a second document are errors naming the line.
  fs::create_directories(d / "adir.yaml");
  CHECK_THROWS_WITH(load_config((d / "adir.yaml").string()), ContainsSubstring((d / "adir.yaml").string() + ": is a directory"));
  expect_refused("config --config " + (d / "adir.yaml").string(), (d / "adir.yaml").string(), "is a directory");
  test::write_file(p, "model:\n  arch: yoco\n  n_layers: 4\n  n_layers: 6\n");
  CHECK_THROWS_WITH(load_config(p.string()), ContainsSubstring(p.string() + ":4:3: duplicate key 'n_layers' (first at line 3)"));
  expect_refused("config --config " + p.string(), p.string() + ":4:3: duplicate key 'n_layers'");
  test::write_file(p, "model:\n  arch: yoco\ntrain:\n  steps: 3\nmodel:\n  n_layers: 2\n");
  CHECK_THROWS_WITH(load_config(p.string()), ContainsSubstring(p.string() + ":5:1: duplicate key 'model' (first at line 1)"));
  test::write_file(p, "model:\n  arch: yoco\n---\nmodel:\n  arch: yocopp\n");
  CHECK_THROWS_WITH(load_config(p.string()), ContainsSubstring(p.string() + ":4:1: a second YAML document"));
  expect_refused("config --config " + p.string(), p.string() + ":4:1: a second YAML document");
  for (int i = 0; i < 3; ++i) {
    std::string how;
    test::write_file(p, damage(good, rng, 0, good.size(), &how));
    auto r = test::run_shell("timeout 60 '" + test::yocotron_bin() + "' config --config " + p.string());
    INFO(how << "\n" << r.err);
    CHECK((r.exit_code == 0 || r.exit_code == 2));
    if (r.exit_code == 2) CHECK_THAT(r.err, ContainsSubstring("error: " + p.string()));
  }
}

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<int64_t> steps_of(const fs::path& p, bool csv) {
  std::vector<int64_t> out;
  for (const auto& l : lines_of(test::read_file(p))) {
    if (csv && starts_with(l, "step,")) continue;
    out.push_back(csv ? std::stoll(l.substr(0, l.find(','))) : json::parse(l).at("step").get<int64_t>());
  }
  return out;
}

}  // namespace

TEST_CASE("metrics and TensorBoard files: a torn or malformed last row is dropped, a bad middle row named", "[reliability]") {
  fs::path d = test::temp_dir("rel-metrics");
  QuietLogs quiet;
  {
    MetricsFiles m(d.string(), 0);
    for (int s = 1; s <= 10; ++s) {
      TrainRow r;
      r.step = s;
      r.loss = 4.0 / s;
      m.train(r);
      if (s % 5 == 0) m.eval({s, 0, 3.0});
    }
  }
  const std::string jsonl = test::read_file(d / "metrics.jsonl"), csv = test::read_file(d / "metrics.csv");
  // Cut both files anywhere: what survives is every whole row up to the cut with step <= 6; the torn
  // one is dropped with a warning, never an error.
  Rng rng{6};
  for (int i = 0; i < 200; ++i) {
    size_t cut_j = rng.below(jsonl.size() + 1), cut_c = rng.below(csv.size() + 1);
    test::write_file(d / "metrics.jsonl", jsonl.substr(0, cut_j));
    test::write_file(d / "metrics.csv", csv.substr(0, cut_c));
    INFO("cut at " << cut_j << " and " << cut_c);
    REQUIRE_NOTHROW(truncate_metrics(d.string(), 6));
    auto expect = [&](const std::string& whole, size_t cut, bool is_csv) {
      std::vector<int64_t> steps;
      std::string head = whole.substr(0, cut);
      head.resize(head.rfind('\n') == std::string::npos ? 0 : head.rfind('\n') + 1);  // whole lines only
      for (const auto& l : lines_of(head)) {
        if (is_csv && starts_with(l, "step,")) continue;
        int64_t s = is_csv ? std::stoll(l.substr(0, l.find(','))) : json::parse(l).at("step").get<int64_t>();
        if (s <= 6) steps.push_back(s);
      }
      return steps;
    };
    CHECK(steps_of(d / "metrics.jsonl", false) == expect(jsonl, cut_j, false));
    CHECK(steps_of(d / "metrics.csv", true) == expect(csv, cut_c, true));
    std::string out_csv = test::read_file(d / "metrics.csv");
    CHECK((out_csv.empty() || starts_with(out_csv, "step,tokens,loss")));
  }
  // A complete but malformed last row is dropped; a malformed row before it is an error naming the line.
  test::write_file(d / "metrics.jsonl", jsonl + "{\"step\": 11, \"loss\": }\n");
  test::write_file(d / "metrics.csv", csv + "11,0,3\n");
  REQUIRE_NOTHROW(truncate_metrics(d.string(), 100));
  CHECK(steps_of(d / "metrics.jsonl", false).size() == 12);
  CHECK(steps_of(d / "metrics.csv", true).size() == 12);
  auto jl = lines_of(jsonl);
  jl[3] = "{\"step\": \"four\"}";
  test::write_file(d / "metrics.jsonl", join(jl, "\n") + "\n");
  CHECK_THROWS_WITH(truncate_metrics(d.string(), 100), ContainsSubstring((d / "metrics.jsonl").string() + ":4: malformed row"));
  auto cl = lines_of(csv);
  cl[2] = "x,y";
  test::write_file(d / "metrics.jsonl", jsonl);
  test::write_file(d / "metrics.csv", join(cl, "\n") + "\n");
  CHECK_THROWS_WITH(truncate_metrics(d.string(), 100), ContainsSubstring((d / "metrics.csv").string() + ":3: malformed row (2 fields"));

  // compare names the file and line of a bad row; a torn last line (a run still writing) is fine.
  fs::path run = d / "run";
  test::write_file(run / "config.yaml", to_yaml(Config{}));
  jl = lines_of(jsonl);
  test::write_file(run / "metrics.jsonl", jsonl + "{\"step\": 11, \"lo");
  CompareOptions o;
  o.out_dir = (d / "cmp").string();
  CHECK_NOTHROW(compare_runs({run.string()}, o));
  jl[2] = "{\"step\": 3, \"loss\": \"low\"}";
  test::write_file(run / "metrics.jsonl", join(jl, "\n") + "\n");
  CHECK_THROWS_WITH(compare_runs({run.string()}, o), ContainsSubstring((run / "metrics.jsonl").string() + ":3: malformed metrics line (\"loss\" is not a number)"));
  expect_refused("compare " + run.string() + " --out " + (d / "cmp2").string(), (run / "metrics.jsonl").string() + ":3: malformed metrics line");

  // TensorBoard files reopened on resume: whatever the damage, the intact records before it are kept
  // (those up to the checkpoint's step), the rest dropped with a warning; the writer never throws.
  fs::path tb_run = d / "tb-run";
  std::vector<std::string> events = {tb_file_version_event(1.0)};
  for (int s = 1; s <= 10; ++s) events.push_back(tb_scalar_event(1.0 + s, s, {{"loss", 4.0f / static_cast<float>(s)}}));
  std::string stream;
  std::vector<size_t> ends;  // where each record ends
  for (const auto& e : events) ends.push_back((stream += tfrecord(e)).size());
  for (int i = 0; i < 200; ++i) {
    remove_tree(tb_run.string());
    std::string how;
    std::string bad = damage(stream, rng, 0, stream.size(), &how);
    const fs::path f = tb_run / "tb" / "events.out.tfevents.1.host.1";
    test::write_file(f, bad);
    INFO(how);
    REQUIRE_NOTHROW(TensorBoardWriter(tb_run.string(), 6));
    std::vector<std::string> kept;
    REQUIRE_NOTHROW(kept = read_tfrecords(f.string()));
    // Independent expectation: the records untouched by the damage (those ending before the first
    // changed byte), with step <= 6.
    size_t first_diff = 0;
    while (first_diff < std::min(bad.size(), stream.size()) && bad[first_diff] == stream[first_diff]) ++first_diff;
    if (bad.size() > stream.size() && first_diff == stream.size()) first_diff = bad.size();  // bytes appended
    std::vector<std::string> want;
    for (size_t r = 0; r < events.size() && ends[r] <= first_diff; ++r)
      if (r == 0 || static_cast<int>(r) <= 6) want.push_back(events[r]);
    CHECK(kept == want);
  }
}

// A tiny dataset under DIR/data and a recipe DIR/recipe.yaml of `arch` training on it.
fs::path tiny_run_recipe(const fs::path& d, const std::string& arch, const std::string& train_line, const std::string& checkpoint) {
  const std::string train = test::make_dataset(d / "data", "train", {test::markov_tokens(3000, 64, 9)}, 64);
  const fs::path recipe = d / "recipe.yaml";
  test::write_file(recipe,
                   "model: {arch: " + arch + ", n_layers: 2, d_model: 32, n_heads: 4, n_kv_heads: 2, d_ffn: 64, vocab_size: 64, max_seq_len: 16}\n"
                   "data: {train: " + train + ", seq_len: 16}\n"
                   "train: {" + train_line + ", micro_batch: 4, global_batch: 4, lr: 0.01, warmup_steps: 1}\n"
                   "checkpoint: {" + checkpoint + "}\nlog: {every: 1}\n");
  return recipe;
}

TEST_CASE("the real binary: resume past torn metrics rows, crafted checkpoints, an empty corpus", "[reliability]") {
  fs::path d = test::temp_dir("rel-bin");
  const fs::path recipe = tiny_run_recipe(d, "transformer", "steps: 8", "every: 4, keep_last: 3");
  auto train_cmd = [&](const fs::path& run, const std::string& extra = "") {
    return test::run_shell("timeout 300 '" + test::yocotron_bin() + "' train --config " + recipe.string() + " --run-dir " +
                           run.string() + " " + extra);
  };
  // Six steps (checkpoints at 4 and 6), then the run "crashes" while writing the row of step 6:
  // its checkpoint is gone and both metrics files end in half a row.
  const fs::path run = d / "run";
  auto first = train_cmd(run, "--set train.exit_after_steps=6");
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  remove_tree((run / "checkpoints" / "step_00000006").string());
  for (const char* name : {"metrics.jsonl", "metrics.csv"}) {
    std::string text = test::read_file(run / name);
    REQUIRE(text.size() > 20);
    test::write_file(run / name, text.substr(0, text.size() - 9));
  }
  auto resumed = train_cmd(run);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, ContainsSubstring((run / "metrics.jsonl").string() + ":6: torn last row"));
  CHECK_THAT(resumed.err, ContainsSubstring((run / "metrics.csv").string() + ":7: torn last row"));
  const std::vector<int64_t> one_to_eight = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(steps_of(run / "metrics.jsonl", false) == one_to_eight);
  CHECK(steps_of(run / "metrics.csv", true) == one_to_eight);
  CHECK(starts_with(test::read_file(run / "metrics.csv"), "step,tokens,loss"));

  // A checkpoint whose model file declares a negative shape, its digest in the manifest updated so
  // that only the safetensors reader can catch it.
  const fs::path ckpt = run / "checkpoints" / "step_00000008";
  const fs::path model = ckpt / "model-tp00-of-01.safetensors";
  std::string bytes = test::read_file(model);
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  json h = json::parse(bytes.substr(8, header_len));
  auto two_d = std::find_if(h.begin(), h.end(), [](const json& e) { return e.contains("shape") && e["shape"].size() == 2; });
  REQUIRE(two_d != h.end());
  (*two_d)["shape"][0] = -1;
  std::string text = h.dump();
  REQUIRE(text.size() <= header_len);
  text.resize(header_len, ' ');
  bytes.replace(8, header_len, text);
  test::write_file(model, bytes);
  json m = json::parse(test::read_file(ckpt / "manifest.json"));
  m["files"]["model-tp00-of-01.safetensors"] = {{"bytes", bytes.size()}, {"crc32c", crc32c(bytes.data(), bytes.size())}};
  test::write_file(ckpt / "manifest.json", m.dump(2));
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "r2").string() + " --resume " + ckpt.string(),
                 model.string(), "has a negative dimension");
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "r3").string() +
                     " --set model.init_from=checkpoint:" + ckpt.string(),
                 model.string(), "has a negative dimension");
  m["files"]["../../../recipe.yaml"] = {{"bytes", 1}, {"crc32c", 0}};
  test::write_file(ckpt / "manifest.json", m.dump(2));
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "r4").string() +
                     " --set model.init_from=checkpoint:" + ckpt.string(),
                 (ckpt / "manifest.json").string(), "is not a plain file name");
  CHECK(fs::exists(run / "checkpoints" / "step_00000004" / "manifest.json"));  // the last good one, untouched
  CHECK_NOTHROW(verify_checkpoint((run / "checkpoints" / "step_00000004").string()));

  // `yocotron tokenize` with an empty corpus names the file.
  if (fs::exists(fs::path(test::yocotron_bin()).parent_path() / "yocotron-tokenize")) {
    test::write_file(d / "empty.txt", "");
    expect_refused("tokenize --input " + (d / "empty.txt").string() + " --out " + (d / "ds").string() + " --vocab-size 300",
                   (d / "empty.txt").string(), "no usable");
    CHECK(!fs::exists(d / "ds"));
  } else {
    WARN("no yocotron-tokenize in this build: the empty-corpus case is not run");
  }
}

TEST_CASE("a second hostile pass: lock symlinks, --overwrite of a non-dataset, FIFOs, crafted HF configs, huge bench lengths, empty sections",
          "[reliability]") {
  fs::path d = test::temp_dir("rel-pass2");
  const fs::path recipe = tiny_run_recipe(d, "yocopp", "steps: 2", "every: 0");
  const std::string train = (d / "data" / "train").string();

  // RUN/.lock planted as a symlink: refused, and the file it points at is untouched.
  test::write_file(d / "precious.txt", "PRECIOUS\n");
  fs::create_directories(d / "run-link");
  fs::create_symlink(d / "precious.txt", d / "run-link" / ".lock");
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "run-link").string(),
                 (d / "run-link" / ".lock").string(), "is a symbolic link");
  CHECK(test::read_file(d / "precious.txt") == "PRECIOUS\n");

  // A FIFO where a shard should be: refused at once instead of waiting for a writer.
  fs::path shard;
  for (const auto& e : fs::directory_iterator(train))
    if (e.path().extension() == ".bin") shard = e.path();
  REQUIRE(!shard.empty());
  fs::copy(fs::path(train).parent_path(), d / "fifo-data", fs::copy_options::recursive);
  const std::string fifo_split = (d / "fifo-data" / fs::path(train).filename()).string();
  fs::remove(fs::path(fifo_split) / shard.filename());
  REQUIRE(::mkfifo((fs::path(fifo_split) / shard.filename()).c_str(), 0644) == 0);
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "run-fifo").string() + " --set data.train=" + fifo_split,
                 (fs::path(fifo_split) / shard.filename()).string(), "not a token shard");

  // An empty section under base: changes nothing (the base's keys stay).
  test::write_file(d / "child.yaml", "base: " + recipe.string() + "\nmodel:\n  # n_layers: 4\n");
  auto shown = test::run_yocotron("config --config " + (d / "child.yaml").string());
  INFO(shown.err);
  REQUIRE(shown.exit_code == 0);
  CHECK_THAT(shown.out, ContainsSubstring("arch: yocopp"));

  // bench with lengths whose attention cannot fit (CPU, or fp32 on a GPU): one line, exit 2, before anything runs.
  expect_refused("bench --config " + recipe.string() + " --part prefill --lengths 10000000 --batch 1", "bench: 10000001 positions",
                 "use shorter --lengths");

  // A Hugging Face directory whose Llama fields make no model, and an index pointing out of it.
  auto export_run = test::run_yocotron("export-hf " + recipe.string() + " --out " + (d / "hf").string());
  INFO(export_run.err);
  REQUIRE(export_run.exit_code == 0);
  json cfg = json::parse(test::read_file(d / "hf" / "config.json"));
  cfg.erase("yocotron");
  cfg["model_type"] = "llama";
  cfg["num_attention_heads"] = 0;
  fs::copy(d / "hf", d / "hf0", fs::copy_options::recursive);
  test::write_file(d / "hf0" / "config.json", cfg.dump(1));
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "r-hf0").string() + " --set model.arch=transformer" +
                     " --set model.init_from=hf:" + (d / "hf0").string(),
                 (d / "hf0" / "config.json").string(), "model.n_heads=0 must be > 0");
  cfg["num_attention_heads"] = 4;
  fs::copy(d / "hf", d / "hfx", fs::copy_options::recursive);
  test::write_file(d / "hfx" / "config.json", cfg.dump(1));
  fs::rename(d / "hfx" / "model.safetensors", d / "outside.safetensors");
  test::write_file(d / "hfx" / "model.safetensors.index.json", R"({"weight_map": {"embed_tokens.weight": "../outside.safetensors"}})");
  expect_refused("train --config " + recipe.string() + " --run-dir " + (d / "r-hfx").string() + " --set model.arch=transformer" +
                     " --set model.init_from=hf:" + (d / "hfx").string(),
                 (d / "hfx" / "model.safetensors.index.json").string(), "is not a file name in");

  if (fs::exists(fs::path(test::yocotron_bin()).parent_path() / "yocotron-tokenize")) {
    // --overwrite replaces datasets only: not a directory of notes, not the directory holding its input.
    test::write_file(d / "notes" / "thesis.tex", "x\n");
    test::write_file(d / "g.txt", "hello there, a line of text for the tokenizer\n");
    expect_refused("tokenize --vocab-size 300 --input " + (d / "g.txt").string() + " --out " + (d / "notes").string() + " --overwrite",
                   (d / "notes").string(), "is not a yocotron dataset");
    CHECK(fs::exists(d / "notes" / "thesis.tex"));
    test::write_file(d / "corpus" / "a.txt", "some text to tokenize\n");
    expect_refused("tokenize --vocab-size 300 --input " + (d / "corpus").string() + " --out " + (d / "corpus").string() + " --overwrite",
                   (d / "corpus").string(), "lies inside it");
    CHECK(fs::exists(d / "corpus" / "a.txt"));
  }
}
