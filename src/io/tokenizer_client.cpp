#include "yocotron/tokenizer_client.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "yocotron/str.h"
#include "yocotron/tokenizer_protocol.h"

extern char** environ;

namespace yt {
namespace {

std::string how_it_ended(int status) {
  if (WIFEXITED(status)) return cat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return cat("was killed by signal ", WTERMSIG(status), " (", ::strsignal(WTERMSIG(status)), ")");
  return "ended";
}

// What the (ended) child wrote to stderr: its "error: " lines without the prefix, else its last
// line, as one line.
std::string child_message(int fd) {
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || text.size() > 65536) break;
    text.append(buf, static_cast<size_t>(r));
  }
  std::vector<std::string> errors;
  std::string last;
  for (const auto& line : split(text, '\n')) {
    if (line.empty()) continue;
    last = line;
    if (starts_with(line, "error: ")) errors.push_back(line.substr(7));
  }
  return errors.empty() ? last : join(errors, "; ");
}

}  // namespace

std::string tokenizer_tool_path() {
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  std::string tool = (self.parent_path() / "yocotron-tokenize").string();
  if (::access(tool.c_str(), X_OK) != 0)
    throw std::runtime_error(cat(tool, ": not found; this build has no tokenizer (install libsentencepiece-dev and "
                                       "libzstd-dev, then reconfigure)"));
  return tool;
}

TokenizerClient::TokenizerClient(const std::string& model_path, const Options& o)
    : model_(model_path), timeout_ms_(o.timeout_ms) {
  const std::string tool = o.tool.empty() ? tokenizer_tool_path() : o.tool;
  // One socket is the child's stdin and stdout: writes to a dead child then fail with EPIPE
  // (MSG_NOSIGNAL) instead of raising SIGPIPE in this process. CLOEXEC keeps our ends out of it.
  int sv[2], ep[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::runtime_error(cat("tokenizer service for ", model_, ": socketpair: ", std::strerror(errno)));
  if (::pipe2(ep, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    throw std::runtime_error(cat("tokenizer service for ", model_, ": pipe: ", std::strerror(e)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, sv[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, ep[1], STDERR_FILENO);
  std::vector<std::string> args = {tool, "serve", "--model", model_path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, tool.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(sv[1]);
  ::close(ep[1]);
  sock_ = sv[0];
  err_ = ep[0];
  if (rc != 0) {
    pid_ = -1;
    stop_child();
    throw std::runtime_error(cat(tool, ": cannot run: ", std::strerror(rc)));
  }
  ::fcntl(err_, F_SETFL, ::fcntl(err_, F_GETFL) | O_NONBLOCK);

  tokproto::Frame hello;
  try {
    if (!tokproto::read_frame(sock_, hello, timeout_ms_)) fail("it ended before its handshake");
  } catch (const tokproto::StreamError& e) {
    fail(e.what());
  }
  if (hello.type != tokproto::Hello) fail("its first frame is not a handshake");
  tokproto::HelloInfo h;
  try {
    h = tokproto::unpack_hello(hello.payload);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  if (h.version != tokproto::kVersion)
    fail(cat("it speaks protocol version ", h.version, ", this client ", tokproto::kVersion));
  if (h.vocab_size <= 0) fail(cat("it reports a vocabulary of ", h.vocab_size, " pieces"));
  vocab_size_ = h.vocab_size;
  bos_id_ = h.bos_id;
  eos_id_ = h.eos_id;
  fingerprint_ = h.fingerprint;
}

TokenizerClient::~TokenizerClient() { stop_child(); }

void TokenizerClient::stop_child() {
  if (sock_ >= 0) ::close(sock_);
  sock_ = -1;
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
  if (err_ >= 0) ::close(err_);
  err_ = -1;
}

void TokenizerClient::fail(const std::string& what) {
  // With its input closed a healthy service exits at once; one that died has its status waiting.
  // Give it a moment to end by itself, so the report says how it ended; then kill it.
  ::close(sock_);
  sock_ = -1;
  int status = 0;
  bool ended_itself = false;
  for (int i = 0; i < 100 && !ended_itself; ++i) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) ended_itself = true;
    else if (r < 0 && errno != EINTR) break;  // already reaped elsewhere: its status is unknown
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (ended_itself) pid_ = -1;
  std::string said = ended_itself ? child_message(err_) : "";
  stop_child();
  const bool abnormal = ended_itself && !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Exit status 2 before the handshake: the service refused the model file (its message names it).
  if (abnormal && vocab_size_ == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 2 && !said.empty()) {
    broken_ = said;
    throw std::invalid_argument(said);
  }
  broken_ = abnormal ? cat("tokenizer service for ", model_, " ", how_it_ended(status), said.empty() ? "" : ": " + said)
                     : cat("tokenizer service for ", model_, ": ", what);
  throw std::runtime_error(broken_);
}

std::string TokenizerClient::call(char type, std::string_view payload, char want) {
  if (!broken_.empty()) throw std::runtime_error(broken_);
  tokproto::Frame f;
  try {
    tokproto::write_frame(sock_, type, payload);
    if (!tokproto::read_frame(sock_, f, timeout_ms_)) fail("it closed its output");
  } catch (const tokproto::StreamError& e) {
    fail(e.what());
  }
  if (f.type == tokproto::Error) throw std::runtime_error(cat("tokenizer service for ", model_, ": ", f.payload));
  if (f.type != want)
    fail(cat("it answered with a frame of type ", static_cast<int>(static_cast<unsigned char>(f.type)), " where '",
             want, "' was due"));
  return f.payload;
}

std::vector<int64_t> TokenizerClient::encode(std::string_view text) {
  std::string answer = call(tokproto::Encode, text, tokproto::Ids);
  std::vector<uint32_t> ids;
  try {
    ids = tokproto::unpack_ids(answer);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  return std::vector<int64_t>(ids.begin(), ids.end());
}

std::string TokenizerClient::decode(const std::vector<int64_t>& ids) {
  std::vector<uint32_t> wire;
  wire.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size_)
      throw std::invalid_argument(cat("tokenizer ", model_, ": cannot decode id ", id, ": the vocabulary has ",
                                      vocab_size_, " pieces"));
    wire.push_back(static_cast<uint32_t>(id));
  }
  return call(tokproto::Decode, tokproto::pack_ids(wire), tokproto::Text);
}

}  // namespace yt
