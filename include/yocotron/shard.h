// Token shards: the on-disk format (docs/formats.md) and its reader and writer.
// A shard is a 64-byte little-endian header, the tokens (uint16 when the vocabulary fits, else
// uint32), padding to 8 bytes, and n_docs + 1 uint64 document start offsets. The reader memory-maps
// the file and validates it when opened; every problem is an error naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace yt {

constexpr char kShardMagic[8] = {'Y', 'T', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kShardVersion = 1;

struct ShardHeader {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;  // 2 or 4
  uint64_t n_tokens;
  uint64_t n_docs;
  uint64_t vocab_size;
  uint64_t tokenizer_fingerprint;
  uint32_t payload_crc32c;  // tokens, padding and document offsets
  uint32_t header_crc32c;   // of header bytes [0, 52): everything before this field
  uint64_t reserved;
};
static_assert(sizeof(ShardHeader) == 64, "the shard header is 64 bytes on disk");

uint64_t shard_file_size(uint64_t n_tokens, uint64_t n_docs, uint32_t token_bytes);

// Writes one shard atomically. `doc_starts` has one entry per document (token index where it starts).
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, const std::vector<uint64_t>& doc_starts,
                 uint64_t vocab_size, uint64_t tokenizer_fingerprint);

class Shard {
 public:
  // Maps and validates: header, file size, and (when `verify_payload`) the payload checksum,
  // token ids < vocab_size and document offsets. Throws std::runtime_error naming the file.
  explicit Shard(std::string path, bool verify_payload = true);
  ~Shard();
  Shard(Shard&&) noexcept;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  Shard& operator=(Shard&&) = delete;

  const std::string& path() const { return path_; }
  const ShardHeader& header() const { return header_; }
  uint64_t n_tokens() const { return header_.n_tokens; }
  uint64_t n_docs() const { return header_.n_docs; }
  // Copies tokens [begin, begin + count) into `out` as int64.
  void copy_tokens(uint64_t begin, uint64_t count, int64_t* out) const;
  uint64_t doc_start(uint64_t doc) const;  // doc in [0, n_docs]; doc_start(n_docs) == n_tokens

 private:
  std::string path_;
  ShardHeader header_{};
  const unsigned char* map_ = nullptr;
  uint64_t map_size_ = 0;
};

}  // namespace yt
