#include "yocotron/dataset.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "yocotron/reader_checks.h"
#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

uint64_t fnv1a64(const void* data, size_t bytes, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t parse_hex64(const std::string& s) {
  size_t used = 0;
  uint64_t v = std::stoull(s, &used, 16);
  if (used != s.size()) throw std::invalid_argument("not a hex number: " + s);
  return v;
}

namespace {

using nlohmann::json;


uint64_t unsigned_field(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) throw std::runtime_error(cat(where, key, ": missing"));
  const json& v = obj.at(key);
  if (!v.is_number_unsigned()) throw std::runtime_error(cat(where, key, ": expected a non-negative integer, found ", json_excerpt(v)));
  return v.get<uint64_t>();
}

std::optional<uint64_t> optional_unsigned(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) return std::nullopt;
  return unsigned_field(obj, key, where);
}

std::string string_field(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) throw std::runtime_error(cat(where, key, ": missing"));
  const json& v = obj.at(key);
  if (!v.is_string()) throw std::runtime_error(cat(where, key, ": expected a string, found ", json_excerpt(v)));
  return v.get<std::string>();
}

std::string contained_path(const json& obj, const std::string& key, const std::string& where) {
  std::string p = string_field(obj, key, where);
  if (!is_contained_path(p))
    throw std::runtime_error(cat(where, key, ": '", printable(p), "' is not a relative path inside the dataset directory"));
  return p;
}

}  // namespace

DatasetManifest read_dataset_manifest(const std::string& path) {
  DatasetManifest out;
  out.path = path;
  const json m = read_json_file(path);
  try {
    if (!m.is_object()) throw std::runtime_error("expected a JSON object");
    if (m.contains("format") && m["format"] != "yocotron-dataset")
      throw std::runtime_error(cat("format: expected \"yocotron-dataset\", found ", json_excerpt(m["format"])));
    if (m.contains("version") && m["version"] != 1)
      throw std::runtime_error(cat("version ", json_excerpt(m["version"]), " is not supported (this build reads version 1)"));
    if (!m.contains("tokenizer") || !m["tokenizer"].is_object()) throw std::runtime_error("tokenizer: missing or not an object");
    const json& tok = m["tokenizer"];
    out.tokenizer_json = tok.dump();
    std::string fp = string_field(tok, "fingerprint", "tokenizer.");
    if (fp.empty() || fp.size() > 16 || fp.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw std::runtime_error(cat("tokenizer.fingerprint: expected up to 16 hex digits, found '", printable(fp), "'"));
    out.fingerprint = parse_hex64(fp);
    out.vocab_size = unsigned_field(tok, "vocab_size", "tokenizer.");
    if (out.vocab_size == 0 || out.vocab_size > (uint64_t{1} << 32))
      throw std::runtime_error(cat("tokenizer.vocab_size: ", out.vocab_size, " is outside 1..2^32"));
    out.tokenizer_file = contained_path(tok, "file", "tokenizer.");
    if (!m.contains("splits") || !m["splits"].is_object()) throw std::runtime_error("splits: missing or not an object");
    for (auto it = m["splits"].begin(); it != m["splits"].end(); ++it) {
      const std::string where = cat("splits.", printable(it.key()), ".");
      if (!is_plain_file_name(it.key())) throw std::runtime_error(cat(where.substr(0, where.size() - 1), ": not a directory name"));
      const json& split = it.value();
      if (!split.is_object()) throw std::runtime_error(cat(where.substr(0, where.size() - 1), ": expected an object, found ", json_excerpt(split)));
      if (!split.contains("shards") || !split["shards"].is_array()) throw std::runtime_error(cat(where, "shards: missing or not a list"));
      auto& entries = out.splits[it.key()];
      uint64_t tokens = 0, docs = 0;
      bool all_docs = true;
      for (size_t i = 0; i < split["shards"].size(); ++i) {
        const json& s = split["shards"][i];
        const std::string w = cat(where, "shards[", i, "].");
        if (!s.is_object()) throw std::runtime_error(cat(w.substr(0, w.size() - 1), ": expected an object, found ", json_excerpt(s)));
        DatasetManifest::ShardEntry e;
        e.file = contained_path(s, "file", w);
        e.tokens = unsigned_field(s, "tokens", w);
        e.docs = optional_unsigned(s, "docs", w);
        e.bytes = optional_unsigned(s, "bytes", w);
        if (!add_ok(tokens, e.tokens, &tokens)) throw std::runtime_error(cat(where, "shards: token counts add up past 2^64"));
        if (e.docs && !add_ok(docs, *e.docs, &docs)) throw std::runtime_error(cat(where, "shards: document counts add up past 2^64"));
        all_docs = all_docs && e.docs.has_value();
        entries.push_back(std::move(e));
      }
      auto total = optional_unsigned(split, "tokens", where);
      if (total && *total != tokens)
        throw std::runtime_error(cat(where, "tokens: ", *total, " differs from the sum over its shards, ", tokens));
      auto total_docs = optional_unsigned(split, "docs", where);
      if (total_docs && all_docs && *total_docs != docs)
        throw std::runtime_error(cat(where, "docs: ", *total_docs, " differs from the sum over its shards, ", docs));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(cat(path, ": malformed manifest: ", e.what()));
  }
  return out;
}

std::shared_ptr<const TokenDataset> TokenDataset::open(const std::string& split_dir, bool verify) {
  auto ds = std::make_shared<TokenDataset>();
  fs::path dir = fs::path(split_dir);
  if (dir.filename().empty()) dir = dir.parent_path();  // tolerate a trailing slash
  ds->split_dir_ = dir.string();
  if (!fs::is_directory(dir)) throw std::runtime_error(cat(split_dir, ": no such dataset split directory"));
  std::string split = dir.filename().string();
  fs::path root = dir.parent_path();
  ds->manifest_path_ = (root / "manifest.json").string();
  if (!fs::exists(ds->manifest_path_))
    throw std::runtime_error(cat(ds->manifest_path_, ": missing (is ", split_dir,
                                 " a split directory made by `yocotron tokenize`?)"));
  DatasetManifest m = read_dataset_manifest(ds->manifest_path_);
  ds->fingerprint_ = m.fingerprint;
  ds->vocab_size_ = m.vocab_size;
  ds->tokenizer_path_ = (root / m.tokenizer_file).string();
  if (!m.splits.count(split)) throw std::runtime_error(cat(ds->manifest_path_, ": has no split '", split, "'"));
  std::vector<std::pair<std::string, DatasetManifest::ShardEntry>> entries;
  for (const auto& s : m.splits.at(split)) entries.emplace_back((root / s.file).string(), s);
  if (entries.empty()) throw std::runtime_error(cat(split_dir, ": the split has no shards (", ds->manifest_path_, ")"));
  for (const auto& e : entries)  // a name the manifest got wrong: say where it comes from
    if (!fs::exists(e.first)) throw std::runtime_error(cat(e.first, ": missing (listed in ", ds->manifest_path_, ")"));

  // Open and verify shards in parallel: checksumming is the cost of opening a large dataset.
  std::vector<std::unique_ptr<Shard>> opened(entries.size());
  std::vector<std::string> errors(entries.size());
  size_t workers = std::min<size_t>(entries.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  std::atomic<size_t> next{0};
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < entries.size(); i = next++) {
        try {
          opened[i] = std::make_unique<Shard>(entries[i].first, verify);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!errors[i].empty()) throw std::runtime_error(errors[i]);
    const ShardHeader& h = opened[i]->header();
    const auto& e = entries[i];
    if (h.tokenizer_fingerprint != ds->fingerprint_)
      throw std::runtime_error(cat(e.first, ": made by a different tokenizer (fingerprint ", hex64(h.tokenizer_fingerprint),
                                   ", the dataset's is ", hex64(ds->fingerprint_), " in ", ds->manifest_path_, ")"));
    if (h.vocab_size != ds->vocab_size_)
      throw std::runtime_error(cat(e.first, ": vocab_size ", h.vocab_size, " differs from the manifest's ", ds->vocab_size_));
    if (e.second.tokens != h.n_tokens)
      throw std::runtime_error(cat(e.first, ": holds ", h.n_tokens, " tokens, the manifest lists ", e.second.tokens, " (",
                                   ds->manifest_path_, ")"));
    if (e.second.docs && *e.second.docs != h.n_docs)
      throw std::runtime_error(cat(e.first, ": holds ", h.n_docs, " documents, the manifest lists ", *e.second.docs, " (",
                                   ds->manifest_path_, ")"));
    if (e.second.bytes && *e.second.bytes != fs::file_size(e.first))
      throw std::runtime_error(cat(e.first, ": ", fs::file_size(e.first), " bytes, the manifest lists ", *e.second.bytes, " (",
                                   ds->manifest_path_, ")"));
    ds->starts_.push_back(ds->n_tokens_);
    if (!add_ok(ds->n_tokens_, h.n_tokens, &ds->n_tokens_) || !add_ok(ds->n_docs_, h.n_docs, &ds->n_docs_))
      throw std::runtime_error(cat(split_dir, ": the shards' token counts add up past 2^64"));
    ds->shards_.push_back(std::move(*opened[i]));
  }
  return ds;
}

void TokenDataset::copy_tokens(uint64_t begin, uint64_t count, int64_t* out) const {
  if (begin > n_tokens_ || count > n_tokens_ - begin) throw std::out_of_range(cat(split_dir_, ": token range past the end of the split"));
  size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin()) - 1;
  while (count > 0) {
    uint64_t local = begin - starts_[s];
    uint64_t take = std::min(count, shards_[s].n_tokens() - local);
    shards_[s].copy_tokens(local, take, out);
    out += take;
    begin += take;
    count -= take;
    ++s;
  }
}

}  // namespace yt
