#include "yocotron/tokenize_job.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "yocotron/dataset.h"
#include "yocotron/fileio.h"
#include "yocotron/log.h"
#include "yocotron/shard.h"
#include "yocotron/stop_signal.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
const char* kSplitName[2] = {"train", "val"};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Batch {
  uint64_t seq = 0;
  std::vector<Record> records;
};

struct TokenizedDoc {
  int split = 0;
  std::vector<uint32_t> tokens;
};

struct Result {
  std::vector<TokenizedDoc> docs;
  uint64_t bad = 0;
  std::string first_bad;  // "FILE:LINE: why"
};

class ShardWriter {
 public:
  ShardWriter(fs::path dir, std::string split, uint64_t vocab, uint64_t fingerprint, int64_t shard_tokens)
      : dir_(std::move(dir)), split_(std::move(split)), vocab_(vocab), fp_(fingerprint), limit_(shard_tokens) {}

  void add(const std::vector<uint32_t>& doc) {
    doc_starts_.push_back(tokens_.size());
    tokens_.insert(tokens_.end(), doc.begin(), doc.end());
    if (static_cast<int64_t>(tokens_.size()) >= limit_) flush();
  }

  void flush() {
    if (tokens_.empty()) return;
    fs::create_directories(dir_ / split_);
    char name_buf[64];
    std::snprintf(name_buf, sizeof(name_buf), "%s/shard_%05zu.bin", split_.c_str(), entries_.size());
    std::string name = name_buf;
    write_shard((dir_ / name).string(), tokens_, doc_starts_, vocab_, fp_);
    entries_.push_back({{"file", name}, {"tokens", tokens_.size()}, {"docs", doc_starts_.size()},
                        {"bytes", fs::file_size(dir_ / name)}});
    total_tokens_ += tokens_.size();
    total_docs_ += doc_starts_.size();
    tokens_.clear();
    doc_starts_.clear();
  }

  nlohmann::json manifest() const {
    return {{"tokens", total_tokens_}, {"docs", total_docs_}, {"shards", entries_}};
  }
  size_t n_shards() const { return entries_.size(); }

 private:
  fs::path dir_;
  std::string split_;
  uint64_t vocab_, fp_;
  int64_t limit_;
  std::vector<uint32_t> tokens_;
  std::vector<uint64_t> doc_starts_;
  nlohmann::json entries_ = nlohmann::json::array();
  uint64_t total_tokens_ = 0, total_docs_ = 0;
};

uint64_t estimated_text_bytes(const std::vector<std::string>& files) {
  uint64_t total = 0;
  for (const auto& f : files) total += fs::file_size(f) * (ends_with(f, ".zst") ? 4 : 1);  // zstd: ~4x on text
  return std::max<uint64_t>(total, 1);
}

// A bounded, evenly spread sample of lines to train the tokenizer on.
std::vector<std::string> tokenizer_sample(const std::vector<std::string>& files, const TokenizeOptions& o) {
  const uint64_t budget = static_cast<uint64_t>(o.train_sample_mb) << 20;
  const double keep = std::min(1.0, static_cast<double>(budget) / static_cast<double>(estimated_text_bytes(files)));
  std::vector<std::string> lines;
  uint64_t taken = 0;
  CorpusReader reader(files, o.corpus);
  Record r;
  std::string text, why;
  while (taken < budget && reader.next(r)) {
    throw_if_stop_requested("sampling text for the tokenizer");
    if (!record_text(r, o.corpus, text, why)) continue;
    uint64_t h = fnv1a64(text.data(), text.size(), 0x5EED5EED5EEDull);
    if (static_cast<double>(h >> 11) * 0x1.0p-53 >= keep) continue;
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      if (nl > start) {
        lines.emplace_back(text, start, nl - start);
        taken += nl - start;
      }
      start = nl + 1;
    }
  }
  return lines;
}

// The input files, for a message about all of them: "a.txt", or "a.txt, b.txt, c.txt and 4 more files".
std::string files_text(const std::vector<std::string>& files) {
  std::vector<std::string> shown(files.begin(), files.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(files.size(), 3)));
  std::string s = join(shown, ", ");
  if (files.size() > 3) s += cat(" and ", files.size() - 3, " more files");
  return s;
}

}  // namespace

bool is_validation_doc(const std::string& text, double val_fraction) {
  if (val_fraction <= 0) return false;
  uint64_t h = fnv1a64(text.data(), text.size());
  return static_cast<double>(h >> 11) * 0x1.0p-53 < val_fraction;
}

namespace {

// --overwrite replaces a dataset, never anything else: an existing OUT must be an empty directory or
// hold a yocotron dataset manifest, and no input may lie inside it.
void check_replaceable(const std::string& out_dir, const std::vector<std::string>& inputs) {
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(out_dir, ec);
  if (!fs::is_directory(out_dir) || fs::is_symlink(out_dir))
    throw std::runtime_error(cat(out_dir, ": exists and is not a dataset directory; --overwrite replaces datasets only"));
  for (const auto& f : inputs) {
    const fs::path in = fs::weakly_canonical(f, ec);
    auto rel = in.lexically_relative(out);
    if (!rel.empty() && *rel.begin() != "..")
      throw std::runtime_error(cat(out_dir, ": the input ", f, " lies inside it; --overwrite would delete it"));
  }
  if (fs::is_empty(out_dir, ec)) return;
  const fs::path manifest = fs::path(out_dir) / "manifest.json";
  bool dataset = false;
  try {
    dataset = fs::is_regular_file(manifest) &&
              nlohmann::json::parse(read_text_file(manifest.string())).value("format", std::string()) == "yocotron-dataset";
  } catch (const std::exception&) {
  }
  if (!dataset)
    throw std::runtime_error(cat(out_dir, ": exists and is not a yocotron dataset (no manifest.json of one); --overwrite "
                                 "replaces datasets only, so remove it yourself or choose another --out"));
}

}  // namespace

TokenizeReport tokenize_corpus(const TokenizeOptions& o) {
  auto t0 = Clock::now();
  if (o.out_dir.empty()) throw std::runtime_error("tokenize: missing --out DATASET_DIR");
  if (o.tokenizer_model.empty() == (o.vocab_size <= 0))
    throw std::runtime_error("tokenize: give exactly one of --tokenizer FILE.model and --vocab-size N");
  if (o.val_fraction < 0 || o.val_fraction >= 1) throw std::runtime_error("tokenize: --val-fraction must be in [0, 1)");
  if (fs::exists(o.out_dir) && !o.overwrite)
    throw std::runtime_error(cat(o.out_dir, ": already exists (pass --overwrite to replace it)"));
  std::vector<std::string> files = expand_inputs(o.inputs);
  if (fs::exists(o.out_dir)) check_replaceable(o.out_dir, files);
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // A failed or stopped run leaves nothing behind; a finished one replaces OUT whole.
  StagedDirectory staged(o.out_dir, o.out_dir + ".partial-" + std::to_string(::getpid()));
  const fs::path partial(staged.path());

  std::string model_path = (partial / "tokenizer.model").string();
  if (!o.tokenizer_model.empty()) {
    AtomicFile f(model_path);
    f.write(read_text_file(o.tokenizer_model));
    f.commit();
  } else {
    auto sample = tokenizer_sample(files, o);
    if (sample.empty())
      throw std::runtime_error(cat(files_text(files), ": no usable text to train a tokenizer on (no document in them has any text)"));
    log::info("training a ", o.tokenizer_type, " tokenizer (vocab ", o.vocab_size, ") on ", sample.size(), " lines");
    Tokenizer::train(sample, {o.vocab_size, o.tokenizer_type, threads}, model_path);
  }
  const Tokenizer tok = Tokenizer::load(model_path);
  const double tokenizer_seconds = seconds_since(t0);
  const auto t_encode = Clock::now();
  const uint64_t vocab = static_cast<uint64_t>(tok.vocab_size());

  // Reader (this thread) -> workers (tokenize) -> writer (in input order).
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Batch> work;
  std::map<uint64_t, Result> done;
  bool reading_done = false;
  std::exception_ptr failure;
  const size_t max_queued = static_cast<size_t>(threads) * 4;

  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&] {
      std::string text, why;
      while (true) {
        Batch b;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return !work.empty() || reading_done || failure; });
          if (failure || (work.empty() && reading_done)) return;
          b = std::move(work.front());
          work.pop_front();
        }
        cv.notify_all();
        Result res;
        try {
          for (const auto& r : b.records) {
            if (!record_text(r, o.corpus, text, why)) {
              if (res.bad++ == 0) res.first_bad = cat(files[r.file_index], r.line ? cat(":", r.line) : "", ": ", why);
              continue;
            }
            TokenizedDoc d;
            d.split = is_validation_doc(text, o.val_fraction) ? 1 : 0;
            if (o.add_bos) d.tokens.push_back(static_cast<uint32_t>(tok.bos_id()));
            auto ids = tok.encode(text);
            d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
            d.tokens.push_back(static_cast<uint32_t>(tok.eos_id()));
            res.docs.push_back(std::move(d));
          }
        } catch (...) {
          std::lock_guard<std::mutex> g(mu);
          if (!failure) failure = std::current_exception();
          cv.notify_all();
          return;
        }
        {
          std::lock_guard<std::mutex> g(mu);
          done.emplace(b.seq, std::move(res));
        }
        cv.notify_all();
      }
    });
  }

  TokenizeReport rep;
  std::string first_bad;
  ShardWriter writers[2] = {ShardWriter(partial, "train", vocab, tok.fingerprint(), o.shard_tokens),
                            ShardWriter(partial, "val", vocab, tok.fingerprint(), o.shard_tokens)};
  uint64_t n_batches = 0;
  std::atomic<bool> writer_stop{false};
  std::thread writer([&] {
    uint64_t want = 0;
    try {
      while (true) {
        Result res;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return done.count(want) || failure || (writer_stop && want >= n_batches); });
          if (failure) return;
          if (!done.count(want)) return;  // all batches written
          res = std::move(done.at(want));
          done.erase(want);
        }
        cv.notify_all();
        rep.bad_records += res.bad;
        if (first_bad.empty()) first_bad = res.first_bad;
        for (auto& d : res.docs) {
          rep.docs[d.split]++;
          rep.tokens[d.split] += d.tokens.size();
          writers[d.split].add(d.tokens);
        }
        ++want;
      }
    } catch (...) {
      std::lock_guard<std::mutex> g(mu);
      if (!failure) failure = std::current_exception();
      cv.notify_all();
    }
  });

  auto stop_all = [&] {
    {
      std::lock_guard<std::mutex> g(mu);
      reading_done = true;
      writer_stop = true;
    }
    cv.notify_all();
    for (auto& w : workers) w.join();
    writer.join();
  };

  auto last_report = Clock::now();
  try {
    CorpusReader reader(files, o.corpus);
    Batch b;
    size_t batch_bytes = 0;
    Record r;
    auto push = [&] {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return work.size() < max_queued || failure; });
      if (failure) std::rethrow_exception(failure);
      b.seq = n_batches++;
      work.push_back(std::move(b));
      b = Batch();
      batch_bytes = 0;
      lk.unlock();
      cv.notify_all();
    };
    while (reader.next(r)) {
      // A stop leaves no dataset: the partial directory goes with the exception (StagedDirectory above).
      throw_if_stop_requested(cat("tokenizing into ", o.out_dir));
      ++rep.records;
      batch_bytes += r.data.size();
      b.records.push_back(std::move(r));
      if (batch_bytes >= (1u << 20) || b.records.size() >= 4096) push();
      if (o.progress && seconds_since(last_report) > 5.0) {
        last_report = Clock::now();
        double s = seconds_since(t_encode);
        log::info("tokenize: ", reader.bytes_read() >> 20, " MB read, ", rep.tokens[0] + rep.tokens[1], " tokens, ",
                  static_cast<int>(static_cast<double>(reader.bytes_read()) / 1048576.0 / s), " MB/s");
      }
    }
    if (!b.records.empty()) push();
    rep.input_bytes = reader.bytes_read();
  } catch (...) {
    {
      std::lock_guard<std::mutex> g(mu);
      if (!failure) failure = std::current_exception();
    }
    stop_all();
    std::rethrow_exception(failure);
  }
  stop_all();
  if (failure) std::rethrow_exception(failure);

  uint64_t good = rep.docs[0] + rep.docs[1];
  if (good == 0)
    throw std::runtime_error(cat(files_text(files), ": no usable documents",
                                 rep.bad_records ? cat(" (", rep.bad_records, " bad records; first: ", first_bad, ")") : " (no document in them has any text)"));
  double bad_frac = static_cast<double>(rep.bad_records) / static_cast<double>(rep.records);
  if (bad_frac > o.max_bad_fraction)
    throw std::runtime_error(cat("tokenize: ", rep.bad_records, " of ", rep.records, " records are unusable (",
                                 bad_frac * 100, "% > --max-bad-fraction ", o.max_bad_fraction * 100, "%); first: ", first_bad));
  if (rep.bad_records) log::warn("tokenize: skipped ", rep.bad_records, " unusable records; first: ", first_bad);
  for (auto& w : writers) w.flush();
  rep.shards[0] = writers[0].n_shards();
  rep.shards[1] = writers[1].n_shards();
  if (o.val_fraction > 0 && rep.docs[1] == 0)
    log::warn("tokenize: no document fell into the validation split (--val-fraction ", o.val_fraction, ")");

  nlohmann::json splits = nlohmann::json::object();
  for (int s = 0; s < 2; ++s)
    if (writers[s].n_shards()) splits[kSplitName[s]] = writers[s].manifest();
  nlohmann::json manifest = {
      {"format", "yocotron-dataset"},
      {"version", 1},
      {"tokenizer", {{"file", "tokenizer.model"}, {"fingerprint", hex64(tok.fingerprint())}, {"vocab_size", vocab},
                     {"bos_id", tok.bos_id()}, {"eos_id", tok.eos_id()}, {"add_bos", o.add_bos},
                     {"trained_here", o.tokenizer_model.empty()}, {"type", o.tokenizer_model.empty() ? o.tokenizer_type : "loaded"}}},
      {"splits", splits},
      {"source", {{"inputs", files}, {"val_fraction", o.val_fraction}, {"records", rep.records},
                  {"bad_records_skipped", rep.bad_records}, {"input_bytes", rep.input_bytes}}}};
  write_text_file_atomic((partial / "manifest.json").string(), manifest.dump(2) + "\n");

  staged.commit();
  rep.seconds = seconds_since(t0);
  rep.tokenizer_seconds = o.tokenizer_model.empty() ? tokenizer_seconds : 0;
  rep.encode_seconds = seconds_since(t_encode);
  rep.vocab_size = static_cast<int>(vocab);
  return rep;
}

}  // namespace yt
