// A SentencePiece tokenizer for processes that link LibTorch: it runs `yocotron-tokenize serve
// --model FILE.model` as a child and talks to it over a socket (tokenizer_protocol.h), because
// Debian's libsentencepiece cannot be loaded next to LibTorch's libprotobuf. A child that dies,
// hangs or answers nonsense becomes one error line naming the model file; the child is killed and
// reaped when the client goes away, so none is left behind. Not thread-safe.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace yt {

// `yocotron-tokenize` beside the running executable (where the build puts both); throws saying so
// when this build has none.
std::string tokenizer_tool_path();

class TokenizerClient {
 public:
  struct Options {
    std::string tool;         // the service executable; "" = tokenizer_tool_path()
    int timeout_ms = 60000;   // the longest wait for the handshake or any answer
  };

  // Starts the service and checks its handshake. std::invalid_argument when the service rejects the
  // model file (missing, unreadable, not a SentencePiece model); std::runtime_error for anything else.
  explicit TokenizerClient(const std::string& model_path, const Options& o);
  explicit TokenizerClient(const std::string& model_path) : TokenizerClient(model_path, Options()) {}
  ~TokenizerClient();
  TokenizerClient(const TokenizerClient&) = delete;
  TokenizerClient& operator=(const TokenizerClient&) = delete;

  // The pieces of `text`, with no BOS or EOS added.
  std::vector<int64_t> encode(std::string_view text);
  // The text of any ids in [0, vocab_size()) (control pieces such as BOS and EOS decode to nothing);
  // std::invalid_argument naming an id outside it.
  std::string decode(const std::vector<int64_t>& ids);

  int vocab_size() const { return vocab_size_; }
  int bos_id() const { return bos_id_; }  // -1: the model has none
  int eos_id() const { return eos_id_; }
  uint64_t fingerprint() const { return fingerprint_; }
  const std::string& model_path() const { return model_; }
  pid_t pid() const { return pid_; }

 private:
  // One request and its answer of type `want`; a failing service becomes an exception.
  std::string call(char type, std::string_view payload, char want);
  // Stops the service for good and throws the error for `what`, with how the child ended and what it said.
  [[noreturn]] void fail(const std::string& what);
  void stop_child();

  std::string model_;
  int timeout_ms_ = 0;
  pid_t pid_ = -1;
  int sock_ = -1, err_ = -1;  // the service's stdin/stdout (one socket) and its stderr (a pipe)
  std::string broken_;        // the error once the service has failed; every later call repeats it
  int vocab_size_ = 0, bos_id_ = -1, eos_id_ = -1;
  uint64_t fingerprint_ = 0;
};

}  // namespace yt
