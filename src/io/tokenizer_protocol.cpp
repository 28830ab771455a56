#include "yocotron/tokenizer_protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "yocotron/str.h"

namespace yt::tokproto {
namespace {

using Clock = std::chrono::steady_clock;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t get_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

// Reads exactly n bytes unless the stream ends first (returns the count read). Waits no later than
// `deadline` when `timed`.
size_t read_fully(int fd, char* buf, size_t n, bool timed, Clock::time_point deadline, int timeout_ms) {
  size_t got = 0;
  while (got < n) {
    if (timed) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left < 0) left = 0;
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw StreamError(cat("poll failed: ", std::strerror(errno)));
      if (r == 0) throw StreamError(cat("no answer within ", timeout_ms / 1000.0, " s"));
    }
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw StreamError(cat("read failed: ", std::strerror(errno)));
    if (r == 0) return got;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace

bool read_frame(int fd, Frame& f, int timeout_ms) {
  const bool timed = timeout_ms >= 0;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timed ? timeout_ms : 0);
  char head[5];
  size_t got = read_fully(fd, head, 5, timed, deadline, timeout_ms);
  if (got == 0) return false;
  if (got < 5) throw StreamError("the stream ended inside a frame header");
  const uint64_t len = get_le(std::string(head + 1, 4), 0, 4);
  if (len > kMaxPayload) throw StreamError(cat("a frame of ", len, " bytes (the limit is ", kMaxPayload, ")"));
  f.type = head[0];
  f.payload.resize(len);
  if (read_fully(fd, f.payload.data(), len, timed, deadline, timeout_ms) < len)
    throw StreamError("the stream ended inside a frame");
  return true;
}

void write_frame(int fd, char type, std::string_view payload) {
  if (payload.size() > kMaxPayload) throw StreamError(cat("a frame of ", payload.size(), " bytes exceeds the limit"));
  std::string buf(1, type);
  put_u32(buf, static_cast<uint32_t>(payload.size()));
  buf.append(payload);
  bool socket = true;
  for (size_t sent = 0; sent < buf.size();) {
    ssize_t r = socket ? ::send(fd, buf.data() + sent, buf.size() - sent, MSG_NOSIGNAL) : -1;
    if (r < 0 && socket && errno == ENOTSOCK) {
      socket = false;
      continue;
    }
    if (!socket) r = ::write(fd, buf.data() + sent, buf.size() - sent);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw StreamError(cat("write failed: ", std::strerror(errno)));
    sent += static_cast<size_t>(r);
  }
}

std::string pack_hello(const HelloInfo& h) {
  std::string out(kMagic, sizeof(kMagic));
  put_u32(out, h.version);
  put_u32(out, static_cast<uint32_t>(h.vocab_size));
  put_u32(out, static_cast<uint32_t>(h.bos_id));
  put_u32(out, static_cast<uint32_t>(h.eos_id));
  put_u32(out, static_cast<uint32_t>(h.fingerprint & 0xFFFFFFFFu));
  put_u32(out, static_cast<uint32_t>(h.fingerprint >> 32));
  return out;
}

HelloInfo unpack_hello(const std::string& p) {
  if (p.size() != sizeof(kMagic) + 24 || std::memcmp(p.data(), kMagic, sizeof(kMagic)) != 0)
    throw std::runtime_error("its handshake is not a yocotron tokenizer service's");
  HelloInfo h;
  const size_t o = sizeof(kMagic);
  h.version = static_cast<uint32_t>(get_le(p, o, 4));
  h.vocab_size = static_cast<int32_t>(get_le(p, o + 4, 4));
  h.bos_id = static_cast<int32_t>(get_le(p, o + 8, 4));
  h.eos_id = static_cast<int32_t>(get_le(p, o + 12, 4));
  h.fingerprint = get_le(p, o + 16, 8);
  return h;
}

std::string pack_ids(const std::vector<uint32_t>& ids) {
  std::string out;
  out.reserve(ids.size() * 4);
  for (uint32_t id : ids) put_u32(out, id);
  return out;
}

std::vector<uint32_t> unpack_ids(const std::string& p) {
  if (p.size() % 4 != 0) throw std::runtime_error(cat("a list of ids of ", p.size(), " bytes (not a multiple of 4)"));
  std::vector<uint32_t> ids(p.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint32_t>(get_le(p, 4 * i, 4));
  return ids;
}

}  // namespace yt::tokproto
