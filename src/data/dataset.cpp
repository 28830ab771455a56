#include "yocotron/dataset.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

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
  nlohmann::json m;
  std::vector<std::pair<std::string, nlohmann::json>> entries;
  try {
    m = nlohmann::json::parse(read_text_file(ds->manifest_path_));
    const auto& tok = m.at("tokenizer");
    ds->fingerprint_ = parse_hex64(tok.at("fingerprint").get<std::string>());
    ds->vocab_size_ = tok.at("vocab_size").get<uint64_t>();
    ds->tokenizer_path_ = (root / tok.at("file").get<std::string>()).string();
    if (!m.at("splits").contains(split))
      throw std::runtime_error(cat("has no split '", split, "'"));
    for (const auto& s : m.at("splits").at(split).at("shards"))
      entries.emplace_back((root / s.at("file").get<std::string>()).string(), s);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(cat(ds->manifest_path_, ": malformed manifest: ", e.what()));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(cat(ds->manifest_path_, ": malformed manifest: ", e.what()));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(cat(ds->manifest_path_, ": ", e.what()));
  }
  if (entries.empty()) throw std::runtime_error(cat(split_dir, ": the split has no shards (", ds->manifest_path_, ")"));

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
    if (e.second.value("tokens", h.n_tokens) != h.n_tokens)
      throw std::runtime_error(cat(e.first, ": holds ", h.n_tokens, " tokens, the manifest lists ",
                                   e.second.value("tokens", uint64_t{0})));
    ds->starts_.push_back(ds->n_tokens_);
    ds->n_tokens_ += h.n_tokens;
    ds->n_docs_ += h.n_docs;
    ds->shards_.push_back(std::move(*opened[i]));
  }
  return ds;
}

void TokenDataset::copy_tokens(uint64_t begin, uint64_t count, int64_t* out) const {
  if (begin + count > n_tokens_) throw std::out_of_range(cat(split_dir_, ": token range past the end of the split"));
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
