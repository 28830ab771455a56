// The corpus -> tokenizer -> shard -> dataset path, with the real SentencePiece library, real zstd
// files and real files on disk. Torch-free (its own test binary; see data_pipeline/tokenize_main.cpp).
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/corpus.h"
#include "yocotron/dataset.h"
#include "yocotron/sample_order.h"
#include "yocotron/shard.h"
#include "yocotron/tokenize_job.h"
#include "yocotron/tokenizer.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

void write_zst(const fs::path& p, const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  test::write_file(p, out);
}

std::string jsonl_of(const std::vector<std::string>& docs, const std::string& field = "text") {
  std::string s;
  for (const auto& d : docs) s += nlohmann::json({{field, d}}).dump() + "\n";
  return s;
}

// A tokenizer trained once for the whole test binary.
const std::string& trained_model() {
  static std::string path = [] {
    auto dir = test::temp_dir("tok-model");
    std::vector<std::string> lines;
    for (const auto& d : test::synthetic_documents(400, 1)) lines.push_back(d);
    std::string p = (dir / "t.model").string();
    Tokenizer::train(lines, {400, "bpe", 2}, p);
    return p;
  }();
  return path;
}

std::vector<uint32_t> read_all(const TokenDataset& ds) {
  std::vector<int64_t> v(ds.n_tokens());
  ds.copy_tokens(0, ds.n_tokens(), v.data());
  return std::vector<uint32_t>(v.begin(), v.end());
}

TokenizeOptions job(const fs::path& out, std::vector<std::string> inputs) {
  TokenizeOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = out.string();
  o.tokenizer_model = trained_model();
  o.threads = 2;
  o.progress = false;
  o.val_fraction = 0.2;
  return o;
}

}  // namespace

TEST_CASE("SentencePiece: trained tokenizer round-trips text; Llama-style special ids", "[data]") {
  Tokenizer tok = Tokenizer::load(trained_model());
  CHECK(tok.vocab_size() == 400);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  for (const auto& d : test::synthetic_documents(50, 9)) {
    auto ids = tok.encode(d);
    CHECK(ids.size() < d.size());  // it compresses
    CHECK(tok.decode(ids) == d);
  }
  std::string odd = "  leading spaces, tabs\tand unseen bytes: ünïcødé ✓ 12345\n";
  CHECK(tok.decode(tok.encode(odd)) == odd);  // byte fallback covers characters it never saw
  CHECK(tok.fingerprint() == fnv1a64(test::read_file(trained_model()).data(), test::read_file(trained_model()).size()));
  CHECK_THROWS_WITH(Tokenizer::load((test::temp_dir("nomodel") / "x.model").string()), ContainsSubstring("x.model"));
}

TEST_CASE("shard write -> read: header, tokens, document offsets", "[data]") {
  auto dir = test::temp_dir("shard");
  std::vector<uint32_t> toks(1001);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint32_t>((i * 7919) % 500);
  write_shard((dir / "a.bin").string(), toks, {0, 10, 400}, 500, 0xABCDEF);
  Shard s((dir / "a.bin").string());
  CHECK(s.n_tokens() == 1001);
  CHECK(s.n_docs() == 3);
  CHECK(s.header().token_bytes == 2);
  CHECK(s.header().tokenizer_fingerprint == 0xABCDEF);
  CHECK(s.doc_start(1) == 10);
  CHECK(s.doc_start(3) == 1001);
  std::vector<int64_t> out(5);
  s.copy_tokens(996, 5, out.data());
  for (int i = 0; i < 5; ++i) CHECK(out[i] == toks[996 + i]);
  CHECK(fs::file_size(dir / "a.bin") == shard_file_size(1001, 3, 2));
  // A vocabulary beyond uint16 switches to 4-byte tokens.
  write_shard((dir / "b.bin").string(), {70000, 3, 65536}, {0}, 80000, 1);
  Shard b((dir / "b.bin").string());
  CHECK(b.header().token_bytes == 4);
  b.copy_tokens(0, 3, out.data());
  CHECK(out[0] == 70000);
  CHECK(out[2] == 65536);
}

TEST_CASE("bad shards are rejected with a message naming the file and the problem", "[data]") {
  auto dir = test::temp_dir("badshard");
  std::vector<uint32_t> toks(300, 7);
  write_shard((dir / "good.bin").string(), toks, {0}, 100, 1);
  std::string raw = test::read_file(dir / "good.bin");
  auto variant = [&](const std::string& name, std::string bytes) {
    test::write_file(dir / name, bytes);
    return (dir / name).string();
  };
  CHECK_THROWS_WITH(Shard(variant("trunc.bin", raw.substr(0, raw.size() - 9))),
                    ContainsSubstring("trunc.bin: truncated shard"));
  CHECK_THROWS_WITH(Shard(variant("tiny.bin", raw.substr(0, 20))), ContainsSubstring("tiny.bin: truncated shard"));
  std::string flipped = raw;
  flipped[64 + 100] ^= 0x01;
  CHECK_THROWS_WITH(Shard(variant("flip.bin", flipped)), ContainsSubstring("flip.bin: checksum mismatch"));
  std::string magic = raw;
  magic[0] = 'X';
  CHECK_THROWS_WITH(Shard(variant("magic.bin", magic)), ContainsSubstring("magic.bin: bad magic"));
  std::string version = raw;
  version[8] = 9;
  CHECK_THROWS_WITH(Shard(variant("ver.bin", version)), ContainsSubstring("ver.bin: unsupported shard version 9"));
  std::string header = raw;
  header[20] ^= 0x40;  // n_tokens
  CHECK_THROWS_WITH(Shard(variant("hdr.bin", header)), ContainsSubstring("hdr.bin: header checksum mismatch"));
  CHECK_THROWS_WITH(Shard(variant("extra.bin", raw + "xx")), ContainsSubstring("extra.bin: shard has trailing bytes"));
  write_shard((dir / "vocab.bin").string(), {1, 2, 150, 3}, {0}, 100, 1);  // id 150 >= vocab 100
  CHECK_THROWS_WITH(Shard((dir / "vocab.bin").string()),
                    ContainsSubstring("vocab.bin: token id 150 at position 2 >= vocab_size 100"));
  CHECK_THROWS_WITH(Shard((dir / "absent.bin").string()), ContainsSubstring("absent.bin: cannot open shard"));
}

TEST_CASE("datasets: shards are one stream; a shard from another tokenizer is named", "[data]") {
  auto dir = test::temp_dir("ds");
  std::vector<uint32_t> a(130), b(70);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint32_t>(i % 100);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint32_t>(50 + i % 40);
  auto split = test::make_dataset(dir, "train", {a, b}, 100, 77);
  auto ds = TokenDataset::open(split);
  CHECK(ds->n_tokens() == 200);
  CHECK(ds->shards().size() == 2);
  std::vector<int64_t> out(20);
  ds->copy_tokens(120, 20, out.data());  // across the shard boundary
  for (int i = 0; i < 10; ++i) CHECK(out[i] == a[120 + i]);
  for (int i = 0; i < 10; ++i) CHECK(out[10 + i] == b[i]);
  CHECK(ds->n_samples(10) == 19);

  // Replace the second shard by one written with another tokenizer fingerprint.
  write_shard((dir / "train" / "shard_00001.bin").string(), b, {0}, 100, 78);
  CHECK_THROWS_WITH(TokenDataset::open(split), ContainsSubstring("shard_00001.bin: made by a different tokenizer"));
  CHECK_THROWS_WITH(TokenDataset::open((dir / "nosplit").string()), ContainsSubstring("no such dataset split"));
  auto lonely = test::temp_dir("lonely");
  fs::create_directories(lonely / "train");
  CHECK_THROWS_WITH(TokenDataset::open((lonely / "train").string()), ContainsSubstring("manifest.json: missing"));
}

TEST_CASE("tokenize: txt, jsonl and jsonl.zst inputs, EOS per document, manifest", "[data]") {
  auto dir = test::temp_dir("tok");
  auto docs = test::synthetic_documents(120, 4);
  test::write_file(dir / "in" / "a.txt", docs[0]);
  test::write_file(dir / "in" / "b.txt", docs[1] + "\n\n" + docs[2]);
  test::write_file(dir / "in" / "c.jsonl", jsonl_of({docs.begin() + 3, docs.begin() + 60}));
  write_zst(dir / "in" / "d.jsonl.zst", jsonl_of({docs.begin() + 60, docs.end()}));
  auto o = job(dir / "ds", {(dir / "in").string()});
  o.val_fraction = 0;
  auto rep = tokenize_corpus(o);
  CHECK(rep.docs[0] == 119);  // b.txt is one document unless split on blank lines
  CHECK(rep.bad_records == 0);
  auto ds = TokenDataset::open((dir / "ds" / "train").string());
  Tokenizer tok = Tokenizer::load((dir / "ds" / "tokenizer.model").string());
  CHECK(ds->tokenizer_fingerprint() == tok.fingerprint());
  CHECK(ds->n_docs() == 119);
  // The stream is each input document's tokens followed by EOS, in input order.
  std::vector<uint32_t> want;
  std::vector<std::string> in_order = {docs[0], docs[1] + "\n\n" + docs[2]};
  in_order.insert(in_order.end(), docs.begin() + 3, docs.end());
  for (const auto& d : in_order) {
    auto ids = tok.encode(d);
    want.insert(want.end(), ids.begin(), ids.end());
    want.push_back(2);
  }
  CHECK(read_all(*ds) == want);
  auto m = nlohmann::json::parse(test::read_file(dir / "ds" / "manifest.json"));
  CHECK(m["splits"]["train"]["docs"] == 119);
  CHECK(m["tokenizer"]["vocab_size"] == 400);
  CHECK(!m["splits"].contains("val"));

  auto o2 = job(dir / "ds2", {(dir / "in" / "b.txt").string()});
  o2.corpus.txt_split_blank_lines = true;
  o2.val_fraction = 0;
  o2.add_bos = true;
  CHECK(tokenize_corpus(o2).docs[0] == 2);
  auto ds2 = TokenDataset::open((dir / "ds2" / "train").string());
  auto s2 = read_all(*ds2);
  CHECK(s2.front() == 1);  // BOS
  CHECK(std::count(s2.begin(), s2.end(), 2u) == 2);
}

TEST_CASE("tokenize: the train/val split is stable when input files are reordered", "[data]") {
  auto dir = test::temp_dir("split");
  auto docs = test::synthetic_documents(300, 6);
  test::write_file(dir / "x.jsonl", jsonl_of({docs.begin(), docs.begin() + 150}));
  test::write_file(dir / "y.jsonl", jsonl_of({docs.begin() + 150, docs.end()}));
  auto r1 = tokenize_corpus(job(dir / "xy", {(dir / "x.jsonl").string(), (dir / "y.jsonl").string()}));
  auto r2 = tokenize_corpus(job(dir / "yx", {(dir / "y.jsonl").string(), (dir / "x.jsonl").string()}));
  CHECK(r1.docs[1] == r2.docs[1]);
  CHECK(r1.docs[1] > 30);  // ~20% of 300
  CHECK(r1.docs[1] < 90);
  auto docs_of = [](const std::string& split) {  // the multiset of documents (as token lists)
    auto ds = TokenDataset::open(split);
    std::multiset<std::vector<uint32_t>> out;
    auto all = read_all(*ds);
    std::vector<uint32_t> cur;
    for (auto t : all) {
      cur.push_back(t);
      if (t == 2) out.insert(cur), cur.clear();
    }
    return out;
  };
  CHECK(docs_of((dir / "xy" / "val").string()) == docs_of((dir / "yx" / "val").string()));
  CHECK(docs_of((dir / "xy" / "train").string()) == docs_of((dir / "yx" / "train").string()));
  int in_val = 0;
  for (const auto& d : docs) in_val += is_validation_doc(d, 0.2);
  CHECK(static_cast<uint64_t>(in_val) == r1.docs[1]);
}

TEST_CASE("tokenize: bad input gets one clear error naming the file; nothing is left behind", "[data]") {
  auto dir = test::temp_dir("badin");
  auto docs = test::synthetic_documents(200, 2);
  CHECK_THROWS_WITH(tokenize_corpus(job(dir / "o1", {(dir / "missing.jsonl").string()})),
                    ContainsSubstring("missing.jsonl: no such file or directory"));
  CHECK_THROWS_WITH(tokenize_corpus(job(dir / "o1", {(dir / "*.nothing").string()})),
                    ContainsSubstring("matches no file"));
  test::write_file(dir / "empty.jsonl", "\n\n");
  CHECK_THROWS_WITH(tokenize_corpus(job(dir / "o2", {(dir / "empty.jsonl").string()})),
                    ContainsSubstring("no usable documents"));

  // A few bad lines among many are skipped and counted; too many fail the run.
  std::string some_bad = jsonl_of(docs) + "{not json\n" + R"({"title": "no text field"})" + "\n";
  test::write_file(dir / "some_bad.jsonl", some_bad);
  auto o = job(dir / "o3", {(dir / "some_bad.jsonl").string()});
  auto rep = tokenize_corpus(o);
  CHECK(rep.bad_records == 2);
  CHECK(rep.docs[0] + rep.docs[1] == 200);
  o.out_dir = (dir / "o4").string();
  o.max_bad_fraction = 0.001;
  CHECK_THROWS_WITH(tokenize_corpus(o), ContainsSubstring("2 of 202 records are unusable"));
  CHECK_THROWS_WITH(tokenize_corpus(o), ContainsSubstring("some_bad.jsonl:201: not JSON"));
  CHECK(!fs::exists(dir / "o4"));

  std::string bad_utf8 = jsonl_of({docs[0]});
  test::write_file(dir / "utf8.txt", std::string("ok text \xC3\x28 broken"));
  auto u = job(dir / "o5", {(dir / "utf8.txt").string()});
  CHECK_THROWS_WITH(tokenize_corpus(u), ContainsSubstring("utf8.txt: invalid UTF-8"));

  std::string full = jsonl_of(docs);
  std::string z(ZSTD_compressBound(full.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), full.data(), full.size(), 3));
  test::write_file(dir / "cut.jsonl.zst", z.substr(0, z.size() / 2));
  CHECK_THROWS_WITH(tokenize_corpus(job(dir / "o6", {(dir / "cut.jsonl.zst").string()})),
                    ContainsSubstring("cut.jsonl.zst: truncated zstd stream"));
  test::write_file(dir / "garbage.jsonl.zst", "this is not zstd at all");
  CHECK_THROWS_WITH(tokenize_corpus(job(dir / "o7", {(dir / "garbage.jsonl.zst").string()})),
                    ContainsSubstring("garbage.jsonl.zst: corrupt zstd data"));
  CHECK(!fs::exists(dir / "o6"));
  // An existing output is never replaced by a failed run.
  fs::create_directories(dir / "keep");
  test::write_file(dir / "keep" / "marker", "x");
  auto k = job(dir / "keep", {(dir / "some_bad.jsonl").string()});
  CHECK_THROWS_WITH(tokenize_corpus(k), ContainsSubstring("already exists"));
  CHECK(fs::exists(dir / "keep" / "marker"));
}

TEST_CASE("yocotron tokenize on the command line", "[data]") {
  auto dir = test::temp_dir("cli-tok");
  test::write_file(dir / "c.jsonl", jsonl_of(test::synthetic_documents(100, 3)));
  auto ok = test::run_yocotron("tokenize --input " + (dir / "c.jsonl").string() + " --out " + (dir / "ds").string() +
                               " --tokenizer " + trained_model() + " --val-fraction 0.1");
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, ContainsSubstring("MB/s"));
  auto insp = test::run_yocotron("inspect " + (dir / "ds").string() + " --json");
  REQUIRE(insp.exit_code == 0);
  auto j = nlohmann::json::parse(insp.out);
  CHECK(j["splits"]["train"]["shards"][0]["verified"] == true);
  std::string raw = test::read_file(dir / "ds" / "train" / "shard_00000.bin");
  raw[200] ^= 0x10;
  test::write_file(dir / "ds" / "train" / "shard_00000.bin", raw);
  auto bad = test::run_yocotron("inspect " + (dir / "ds").string());
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, ContainsSubstring("shard_00000.bin: checksum mismatch"));
  auto usage = test::run_yocotron("tokenize --input x.jsonl --out y");
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.err, ContainsSubstring("give exactly one of --tokenizer FILE.model and --vocab-size N"));
}

TEST_CASE("sample order: a bijection per epoch, seeded, with DP slices of one global batch", "[data]") {
  for (uint64_t n : {1ull, 2ull, 7ull, 100ull, 1000ull, 4097ull}) {
    SamplePermutation p(n, 42, 3);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) seen.insert(p(i));
    CHECK(seen.size() == n);
    CHECK(*seen.rbegin() == n - 1);
  }
  SamplePermutation a(1000, 1, 0), b(1000, 2, 0), c(1000, 1, 1);
  int same_seed = 0, same_epoch = 0;
  for (uint64_t i = 0; i < 1000; ++i) same_seed += a(i) == b(i), same_epoch += a(i) == c(i);
  CHECK(same_seed < 20);
  CHECK(same_epoch < 20);
  // Every global batch is the same whatever the DP size; ranks' slices are disjoint and cover it.
  const uint64_t n = 999;
  for (int64_t step : {0, 1, 30, 61}) {  // 999 / 32 = 31 batches per epoch: steps cross epochs
    BatchLayout one{32, 8, 0, 1};
    std::vector<uint64_t> global;
    for (int64_t m = 0; m < one.accum_steps(); ++m)
      for (auto s : micro_batch_samples(step * 32, m, one, n, 5)) global.push_back(s);
    for (int64_t dp : {2, 4}) {
      std::vector<uint64_t> joined;
      for (int64_t r = 0; r < dp; ++r) {
        BatchLayout l{32, 4, r, dp};
        for (int64_t m = 0; m < l.accum_steps(); ++m)
          for (auto s : micro_batch_samples(step * 32, m, l, n, 5)) joined.push_back(s);
      }
      CHECK(joined == global);
    }
    CHECK(std::set<uint64_t>(global.begin(), global.end()).size() == global.size());
  }
}
