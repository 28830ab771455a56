// The wire format of the tokenizer service (`yocotron-tokenize serve`, spoken over its stdin and
// stdout): frames of a one-byte type, a 4-byte little-endian payload length and the payload. The
// service (data_pipeline/tokenizer_service.cpp) and TokenizerClient both read and write frames
// through these functions, so the two sides cannot disagree. docs/formats.md describes the frames.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace yt::tokproto {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxPayload = 256u << 20;  // a longer frame is a broken peer, not a big request
constexpr char kMagic[8] = {'Y', 'T', 'T', 'O', 'K', 'S', 'V', 'C'};

// Frame types. Service -> client: Hello (once, first), Ids, Text, Error. Client -> service: Encode, Decode.
enum FrameType : char { Hello = 'H', Encode = 'E', Decode = 'D', Ids = 'I', Text = 'T', Error = 'X' };

struct Frame {
  char type = 0;
  std::string payload;
};

// A broken stream: a frame cut short, an oversized length, a read or write error, or a timeout.
class StreamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads one frame. false: the stream ended cleanly before a frame began. timeout_ms >= 0 bounds the
// wait for the whole frame (StreamError when it passes).
bool read_frame(int fd, Frame& f, int timeout_ms = -1);
// Writes one frame whole. On a socket it is sent with MSG_NOSIGNAL, so a dead peer is a
// StreamError (EPIPE) rather than SIGPIPE.
void write_frame(int fd, char type, std::string_view payload);

struct HelloInfo {
  uint32_t version = kVersion;
  int32_t vocab_size = 0, bos_id = -1, eos_id = -1;  // -1: the model has no such piece
  uint64_t fingerprint = 0;                           // FNV-1a 64 of the .model bytes
};
std::string pack_hello(const HelloInfo& h);
HelloInfo unpack_hello(const std::string& payload);  // std::runtime_error: wrong size or magic

// Token ids as 4-byte little-endian unsigned integers.
std::string pack_ids(const std::vector<uint32_t>& ids);
std::vector<uint32_t> unpack_ids(const std::string& payload);  // std::runtime_error: not a multiple of 4 bytes

}  // namespace yt::tokproto
