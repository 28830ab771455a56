#include "yocotron/agreement.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "yocotron/dataset.h"  // fnv1a64
#include "yocotron/mpi_env.h"
#include "yocotron/str.h"
#include "yocotron/version.h"

namespace yt {
namespace {

constexpr int kTagLength = 7301, kTagBytes = 7302;

// key \0 value \0, item after item: the bytes hashed and, on a mismatch, sent.
std::string serialize(const AgreementItems& items) {
  std::string s;
  for (const auto& [k, v] : items) {
    s += k;
    s += '\0';
    s += v;
    s += '\0';
  }
  return s;
}

AgreementItems deserialize(const std::string& s) {
  AgreementItems out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t k_end = s.find('\0', pos);
    if (k_end == std::string::npos) break;
    size_t v_end = s.find('\0', k_end + 1);
    if (v_end == std::string::npos) break;
    out.emplace_back(s.substr(pos, k_end - pos), s.substr(k_end + 1, v_end - k_end - 1));
    pos = v_end + 1;
  }
  return out;
}

// "rank 3", "ranks 0-3, 8"
std::string ranks_text(const std::vector<int>& ranks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    parts.push_back(j == i ? std::to_string(ranks[i]) : cat(ranks[i], j == i + 1 ? ", " : "-", ranks[j]));
    i = j + 1;
  }
  return (ranks.size() == 1 ? "rank " : "ranks ") + join(parts, ", ");
}

std::string value_text(const std::string& v) { return v.empty() ? "\"\"" : v; }

std::string hint(const std::string& key) {
  if (key == "yocotron version") return "run the same yocotron build on every node";
  if (key == "run directory") return "give every rank the same --run-dir";
  if (key == "--resume") return "give every rank the same --resume";
  if (ends_with(key, " contents"))
    return "every rank must read the same files: copy the dataset identically to every node, or use a shared filesystem";
  return "launch every rank with the same recipe and --set options";
}

// Rank 0: the message, from its own items, the first differing rank's items and every rank's hash.
std::string describe(const AgreementItems& mine, const AgreementItems& theirs, int other,
                     const std::vector<uint64_t>& hashes) {
  std::string key, a, b;
  const size_t n = std::max(mine.size(), theirs.size());
  for (size_t i = 0; i < n; ++i) {
    if (i < mine.size() && i < theirs.size() && mine[i] == theirs[i]) continue;
    if (i < mine.size() && i < theirs.size() && mine[i].first == theirs[i].first) {
      key = mine[i].first, a = value_text(mine[i].second), b = value_text(theirs[i].second);
    } else if (i < mine.size()) {
      key = mine[i].first, a = value_text(mine[i].second), b = "no such key";
    } else {
      key = theirs[i].first, a = "no such key", b = value_text(theirs[i].second);
    }
    break;
  }
  std::vector<int> with0, with_other, rest;
  for (int r = 0; r < static_cast<int>(hashes.size()); ++r) {
    if (hashes[r] == hashes[0]) with0.push_back(r);
    else if (hashes[r] == hashes[other]) with_other.push_back(r);
    else rest.push_back(r);
  }
  auto has = [](const std::vector<int>& r) { return r.size() == 1 ? " has " : " have "; };
  if (key.empty()) return cat("ranks disagree: rank 0 and rank ", other, " hold different settings");  // not reached
  std::string msg = cat("ranks disagree on ", key, ": ", ranks_text(with0), has(with0), a, ", ", ranks_text(with_other),
                        has(with_other), b);
  if (!rest.empty()) msg += cat(" (", ranks_text(rest), " differ from both)");
  return msg + " (" + hint(key) + ")";
}

}  // namespace

bool may_differ_between_ranks(const std::string& key) { return key == "log.level"; }

AgreementItems config_agreement_items(const Config& cfg, const std::string& extra_version) {
  AgreementItems items;
  std::string version = cat(YOCOTRON_VERSION, " (", YOCOTRON_GIT_REVISION, ")");
  if (!extra_version.empty()) version += ", " + extra_version;
  items.emplace_back("yocotron version", version);
  for (auto& kv : flatten(cfg))
    if (!may_differ_between_ranks(kv.first)) items.push_back(std::move(kv));
  return items;
}

std::string rank_disagreement(const AgreementItems& mine) {
  const int rank = MpiEnv::get().rank(), size = MpiEnv::get().size();
  if (size == 1) return "";
  const std::string bytes = serialize(mine);
  if (bytes.size() > static_cast<size_t>(INT_MAX)) throw std::runtime_error("rank agreement: the settings to compare exceed 2 GB");
  // 1. Fixed size: every rank's (hash, length) to rank 0.
  uint64_t digest[2] = {fnv1a64(bytes.data(), bytes.size()), static_cast<uint64_t>(bytes.size())};
  std::vector<uint64_t> all(rank == 0 ? 2 * static_cast<size_t>(size) : 0);
  MPI_Gather(digest, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  // 2. Fixed size: which rank differs first (-1: none).
  int other = -1;
  std::vector<uint64_t> hashes;
  if (rank == 0) {
    for (int r = 0; r < size; ++r) hashes.push_back(all[2 * r] ^ (all[2 * r + 1] * 0x9E3779B97F4A7C15ull));
    for (int r = 1; r < size && other < 0; ++r)
      if (hashes[r] != hashes[0]) other = r;
  }
  MPI_Bcast(&other, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (other < 0) return "";
  // 3. That rank sends its items: the length (fixed size), then exactly that many bytes.
  std::string message;
  if (rank == other) {
    uint64_t len = bytes.size();
    MPI_Send(&len, 1, MPI_UINT64_T, 0, kTagLength, MPI_COMM_WORLD);
    MPI_Send(bytes.data(), static_cast<int>(len), MPI_CHAR, 0, kTagBytes, MPI_COMM_WORLD);
  } else if (rank == 0) {
    uint64_t len = 0;
    MPI_Recv(&len, 1, MPI_UINT64_T, other, kTagLength, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    std::string theirs(static_cast<size_t>(len), '\0');
    MPI_Recv(theirs.data(), static_cast<int>(len), MPI_CHAR, other, kTagBytes, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    message = describe(mine, deserialize(theirs), other, hashes);
  }
  // 4. The message to every rank: length, then bytes.
  return broadcast_from_rank0(message);
}

std::string broadcast_from_rank0(std::string text) {
  if (MpiEnv::get().size() == 1) return text;
  if (text.size() > static_cast<size_t>(INT_MAX)) throw std::runtime_error("broadcast: a message over 2 GB");
  int len = static_cast<int>(text.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(static_cast<size_t>(len));
  MPI_Bcast(text.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

int fail_together(const std::string& message, bool print, int code) {
  if (print) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
  }
  if (MpiEnv::get().size() > 1) MPI_Barrier(MPI_COMM_WORLD);
  return code;
}

}  // namespace yt
