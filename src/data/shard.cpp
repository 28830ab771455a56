#include "yocotron/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace {

uint64_t align8(uint64_t v) { return (v + 7) / 8 * 8; }

uint64_t tokens_end(const ShardHeader& h) { return sizeof(ShardHeader) + h.n_tokens * h.token_bytes; }

}  // namespace

uint64_t shard_file_size(uint64_t n_tokens, uint64_t n_docs, uint32_t token_bytes) {
  return align8(sizeof(ShardHeader) + n_tokens * token_bytes) + (n_docs + 1) * 8;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, const std::vector<uint64_t>& doc_starts,
                 uint64_t vocab_size, uint64_t tokenizer_fingerprint) {
  ShardHeader h{};
  std::memcpy(h.magic, kShardMagic, 8);
  h.version = kShardVersion;
  h.token_bytes = vocab_size <= 65536 ? 2 : 4;
  h.n_tokens = tokens.size();
  h.n_docs = doc_starts.size();
  h.vocab_size = vocab_size;
  h.tokenizer_fingerprint = tokenizer_fingerprint;

  std::string payload;
  payload.resize(shard_file_size(h.n_tokens, h.n_docs, h.token_bytes) - sizeof(ShardHeader), '\0');
  char* p = payload.data();
  if (h.token_bytes == 2) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      uint16_t t = static_cast<uint16_t>(tokens[i]);
      std::memcpy(p + 2 * i, &t, 2);
    }
  } else {
    std::memcpy(p, tokens.data(), tokens.size() * 4);
  }
  char* offsets = p + (align8(tokens_end(h)) - sizeof(ShardHeader));
  for (size_t d = 0; d < doc_starts.size(); ++d) std::memcpy(offsets + 8 * d, &doc_starts[d], 8);
  std::memcpy(offsets + 8 * doc_starts.size(), &h.n_tokens, 8);
  h.payload_crc32c = crc32c(payload.data(), payload.size());
  h.header_crc32c = crc32c(&h, 52);

  AtomicFile f(path);
  f.write(&h, sizeof(h));
  f.write(payload);
  f.commit();
}

Shard::Shard(std::string path, bool verify_payload) : path_(std::move(path)) {
  // O_NONBLOCK: opening a FIFO planted as a shard must not wait for a writer (fstat then refuses it).
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw std::runtime_error(cat(path_, ": cannot open shard: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(cat(path_, ": cannot stat shard: ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(cat(path_, ": not a token shard (", S_ISDIR(st.st_mode) ? "a directory" : "not a regular file", ")"));
  }
  map_size_ = static_cast<uint64_t>(st.st_size);
  if (map_size_ < sizeof(ShardHeader)) {
    ::close(fd);
    throw std::runtime_error(cat(path_, ": truncated shard: ", map_size_, " bytes, shorter than its 64-byte header"));
  }
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw std::runtime_error(cat(path_, ": cannot map shard: ", std::strerror(errno)));
  map_ = static_cast<const unsigned char*>(m);
  ::madvise(m, map_size_, MADV_RANDOM);
  std::memcpy(&header_, map_, sizeof(header_));
  auto fail = [&](const std::string& what) {
    ::munmap(const_cast<unsigned char*>(map_), map_size_);
    map_ = nullptr;
    throw std::runtime_error(cat(path_, ": ", what));
  };
  if (std::memcmp(header_.magic, kShardMagic, 8) != 0) fail("bad magic: not a yocotron token shard");
  if (header_.version != kShardVersion)
    fail(cat("unsupported shard version ", header_.version, " (this build reads version ", kShardVersion, ")"));
  if (crc32c(&header_, 52) != header_.header_crc32c) fail("header checksum mismatch: the header is corrupt");
  if (header_.token_bytes != 2 && header_.token_bytes != 4) fail(cat("bad token width ", header_.token_bytes));
  if (header_.reserved != 0) fail(cat("corrupt header: the reserved field is ", header_.reserved, ", not 0"));
  if (header_.vocab_size == 0 || header_.vocab_size > (uint64_t{1} << 32))
    fail(cat("corrupt header: vocab_size ", header_.vocab_size, " is outside 1..2^32"));
  // Counts are checked against the file size before any arithmetic with them, so that no product
  // or sum below can wrap around (a header claiming 2^63 tokens must not pass as a small file).
  const uint64_t body = map_size_ - sizeof(ShardHeader);
  if (header_.n_tokens > body / header_.token_bytes)
    fail(cat("truncated shard or corrupt header: n_tokens ", header_.n_tokens, " (", header_.token_bytes,
             " bytes each) does not fit in the file's ", map_size_, " bytes"));
  if (header_.n_docs >= body / 8)
    fail(cat("truncated shard or corrupt header: n_docs ", header_.n_docs, " (", header_.n_docs, " + 1 offsets of 8 bytes) ",
             "does not fit in the file's ", map_size_, " bytes"));
  uint64_t want = shard_file_size(header_.n_tokens, header_.n_docs, header_.token_bytes);
  if (map_size_ != want)
    fail(cat(map_size_ < want ? "truncated shard: " : "shard has trailing bytes: ", map_size_, " bytes, the header says ", want));
  if (!verify_payload) return;
  uint32_t crc = crc32c(map_ + sizeof(ShardHeader), map_size_ - sizeof(ShardHeader));
  if (crc != header_.payload_crc32c)
    fail(cat("checksum mismatch (payload crc32c ", crc, ", header says ", header_.payload_crc32c, "): the file is corrupt"));
  const unsigned char* t = map_ + sizeof(ShardHeader);
  for (uint64_t i = 0; i < header_.n_tokens; ++i) {
    uint32_t id = 0;
    std::memcpy(&id, t + i * header_.token_bytes, header_.token_bytes);
    if (id >= header_.vocab_size) fail(cat("token id ", id, " at position ", i, " >= vocab_size ", header_.vocab_size));
  }
  uint64_t prev = 0;
  for (uint64_t d = 0; d <= header_.n_docs; ++d) {
    uint64_t s = doc_start(d);
    if (d == 0 && header_.n_docs > 0 && s != 0) fail(cat("document 0 starts at token ", s, ", not 0"));
    if (s < prev || s > header_.n_tokens || (d == header_.n_docs && s != header_.n_tokens))
      fail(cat("document offsets are not increasing at document ", d));
    prev = s;
  }
}

Shard::~Shard() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
}

Shard::Shard(Shard&& o) noexcept : path_(std::move(o.path_)), header_(o.header_), map_(o.map_), map_size_(o.map_size_) {
  o.map_ = nullptr;
}

void Shard::copy_tokens(uint64_t begin, uint64_t count, int64_t* out) const {
  if (begin > header_.n_tokens || count > header_.n_tokens - begin)
    throw std::out_of_range(cat(path_, ": tokens [", begin, ", ", begin, " + ", count, ") past its ", header_.n_tokens, " tokens"));
  const unsigned char* t = map_ + sizeof(ShardHeader) + begin * header_.token_bytes;
  if (header_.token_bytes == 2) {
    for (uint64_t i = 0; i < count; ++i) {
      uint16_t v;
      std::memcpy(&v, t + 2 * i, 2);
      out[i] = v;
    }
  } else {
    for (uint64_t i = 0; i < count; ++i) {
      uint32_t v;
      std::memcpy(&v, t + 4 * i, 4);
      out[i] = v;
    }
  }
}

uint64_t Shard::doc_start(uint64_t doc) const {
  if (doc > header_.n_docs) throw std::out_of_range(cat(path_, ": document ", doc, " past its ", header_.n_docs, " documents"));
  uint64_t v;
  std::memcpy(&v, map_ + align8(tokens_end(header_)) + 8 * doc, 8);
  return v;
}

}  // namespace yt
