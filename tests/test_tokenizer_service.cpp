// The tokenizer service (`yocotron-tokenize serve`) and TokenizerClient: the real executable and a
// SentencePiece model trained by the real `yocotron tokenize`. The service's answers are checked
// against the library in this process (test binary without torch) and against bytes laid out by
// hand; dead, silent and babbling children must become one error, never a hang or a zombie.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/tokenizer.h"
#include "yocotron/tokenizer_client.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

// One tokenizer for the whole binary: trained once by `yocotron tokenize` on the Brown sample.
const std::string& model_file() {
  static const std::string path = (test::tokenized_brown(test::temp_dir("service"), 512) / "tokenizer.model").string();
  return path;
}

std::string service_tool() { return (fs::path(test::yocotron_bin()).parent_path() / "yocotron-tokenize").string(); }

std::string le32(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}

uint32_t read_le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

bool process_gone(pid_t pid) {  // reaped: neither running nor a zombie
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// A fake service: a shell script standing in for yocotron-tokenize.
std::string fake_tool(const fs::path& dir, const std::string& name, const std::string& body) {
  fs::path p = dir / name;
  test::write_file(p, "#!/bin/sh\n" + body + "\n");
  fs::permissions(p, fs::perms::owner_all);
  return p.string();
}

// What starting a client on `model` throws: whether it is std::invalid_argument, and its message.
std::pair<bool, std::string> start_error(const std::string& model) {
  try {
    TokenizerClient c(model);
  } catch (const std::invalid_argument& e) {
    return {true, e.what()};
  } catch (const std::exception& e) {
    return {false, e.what()};
  }
  return {false, "no error"};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("tokenizer service: the client encodes and decodes as the library does", "[tokenizer_service]") {
  Tokenizer lib = Tokenizer::load(model_file());
  TokenizerClient client(model_file());
  CHECK(client.vocab_size() == 512);
  CHECK(client.vocab_size() == lib.vocab_size());
  CHECK(client.bos_id() == 1);
  CHECK(client.eos_id() == 2);
  CHECK(client.fingerprint() == lib.fingerprint());

  std::vector<std::string> texts = test::synthetic_documents(20, 3);
  texts.push_back("The jury said it did find that \"many of Atlanta's registration practices\" were outmoded.");
  texts.push_back("naïve café — 東京 🙂 tabs\tand  double  spaces");
  for (const auto& t : texts) {
    INFO(t);
    std::vector<uint32_t> want = lib.encode(t);
    std::vector<int64_t> got = client.encode(t);
    CHECK(got == std::vector<int64_t>(want.begin(), want.end()));
    CHECK(client.decode(got) == t);  // identity normalisation: text round-trips exactly
    // BOS and EOS are control pieces: they decode to nothing.
    got.insert(got.begin(), 1);
    got.push_back(2);
    CHECK(client.decode(got) == t);
  }
  CHECK(client.encode("").empty());
  CHECK(client.decode({}).empty());
  // Byte fallback: <0x00>..<0xFF> follow <unk>, <s>, </s>, so "é" (C3 A9) is ids 3 + 0xC3, 3 + 0xA9.
  CHECK(client.decode({3 + 0xC3, 3 + 0xA9}) == "\xC3\xA9");
  CHECK(client.decode({3 + 'A'}) == "A");

  CHECK_THROWS_WITH(client.decode({5, 512}), ContainsSubstring("cannot decode id 512: the vocabulary has 512 pieces"));
  CHECK_THROWS_AS(client.decode({-1}), std::invalid_argument);
  CHECK(client.decode({3 + 'o', 3 + 'k'}) == "ok");  // still usable
}

TEST_CASE("tokenizer service: the wire format, read and written by hand", "[tokenizer_service]") {
  Tokenizer lib = Tokenizer::load(model_file());
  fs::path dir = test::temp_dir("wire");
  std::string text = "the river and the mountain";
  std::string req = "E" + le32(static_cast<uint32_t>(text.size())) + text;       // encode
  req += "D" + le32(8) + le32(512) + le32(7);                                     // decode: 512 is out of range
  req += "D" + le32(8) + le32(3 + 'h') + le32(3 + 'i');                           // decode "hi"
  req += "Q" + le32(0);                                                           // no such request
  test::write_file(dir / "req", req);
  auto r = test::run_shell("'" + service_tool() + "' serve --model '" + model_file() + "' < '" + (dir / "req").string() +
                           "' > '" + (dir / "resp").string() + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);  // the input ended: the service exits cleanly
  std::string resp = test::read_file(dir / "resp");
  size_t at = 0;
  auto frame = [&](char& type) {
    REQUIRE(at + 5 <= resp.size());
    type = resp[at];
    uint32_t len = read_le32(resp, at + 1);
    REQUIRE(at + 5 + len <= resp.size());
    std::string payload = resp.substr(at + 5, len);
    at += 5 + len;
    return payload;
  };
  char type = 0;
  std::string hello = frame(type);
  CHECK(type == 'H');
  REQUIRE(hello.size() == 32);
  CHECK(hello.substr(0, 8) == "YTTOKSVC");
  CHECK(read_le32(hello, 8) == 1);     // protocol version
  CHECK(read_le32(hello, 12) == 512);  // vocabulary
  CHECK(read_le32(hello, 16) == 1);    // BOS
  CHECK(read_le32(hello, 20) == 2);    // EOS
  CHECK((static_cast<uint64_t>(read_le32(hello, 28)) << 32 | read_le32(hello, 24)) == lib.fingerprint());

  std::string ids = frame(type);
  CHECK(type == 'I');
  std::vector<uint32_t> got;
  for (size_t i = 0; i + 4 <= ids.size(); i += 4) got.push_back(read_le32(ids, i));
  CHECK(got == lib.encode(text));
  std::string err = frame(type);
  CHECK(type == 'X');
  CHECK_THAT(err, ContainsSubstring("cannot decode id 512"));
  CHECK(frame(type) == "hi");
  CHECK(type == 'T');
  CHECK_THAT(frame(type), ContainsSubstring("unknown request type 81"));
  CHECK(type == 'X');
  CHECK(at == resp.size());
}

TEST_CASE("tokenizer service: a killed child is reported, and no child outlives its client", "[tokenizer_service]") {
  pid_t pid = 0;
  {
    TokenizerClient client(model_file());
    pid = client.pid();
    CHECK(client.encode("water").size() >= 1);
    REQUIRE(::kill(pid, SIGKILL) == 0);
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(client.encode("light"), ContainsSubstring("tokenizer service for " + model_file() +
                                                                " was killed by signal 9"));
    CHECK(seconds_since(t0) < 5);
    CHECK(process_gone(pid));  // reaped at once
    // Every later call repeats the error instead of talking to nothing.
    CHECK_THROWS_WITH(client.decode({5}), ContainsSubstring("was killed by signal 9"));
  }
  {
    TokenizerClient client(model_file());
    pid = client.pid();
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(process_gone(pid));  // the destructor killed and reaped it
}

TEST_CASE("tokenizer service: a bad model file is named; bad services are errors, not hangs", "[tokenizer_service]") {
  fs::path dir = test::temp_dir("bad-service");
  std::string missing = (dir / "missing.model").string();
  auto [missing_is_input, missing_error] = start_error(missing);
  CHECK(missing_is_input);
  CHECK_THAT(missing_error, ContainsSubstring(missing + ": cannot open"));
  test::write_file(dir / "text.model", "this is not a SentencePiece model");
  auto [text_is_input, text_error] = start_error((dir / "text.model").string());
  CHECK(text_is_input);
  CHECK_THAT(text_error, ContainsSubstring((dir / "text.model").string() + ": not a SentencePiece model"));
  auto usage = test::run_shell("'" + service_tool() + "' serve");
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.err, ContainsSubstring("missing --model FILE.model"));

  TokenizerClient::Options o;
  o.tool = fake_tool(dir, "babble", "echo 'this is no handshake at all'; exec sleep 5");
  CHECK_THROWS_WITH(TokenizerClient(model_file(), o), ContainsSubstring("tokenizer service for " + model_file() + ": "));
  o.tool = fake_tool(dir, "dies", "echo 'error: boom' >&2; exit 3");
  CHECK_THROWS_WITH(TokenizerClient(model_file(), o),
                    ContainsSubstring("tokenizer service for " + model_file() + " exited with status 3: boom"));
  // A service that never answers: the timeout ends the wait and the child is killed.
  o.tool = fake_tool(dir, "silent", "echo $$ > '" + (dir / "silent.pid").string() + "'; exec sleep 60");
  o.timeout_ms = 500;
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(TokenizerClient(model_file(), o), ContainsSubstring("no answer within 0.5 s"));
  CHECK(seconds_since(t0) < 5);
  CHECK(process_gone(static_cast<pid_t>(std::stol(test::read_file(dir / "silent.pid")))));
  // A real service whose answer is replaced by nonsense after the handshake.
  o.timeout_ms = 60000;
  o.tool = fake_tool(dir, "liar", "'" + service_tool() + "' serve --model \"$3\" | head -c 37; "
                                  "printf 'I\\377\\377\\377\\177'; exec sleep 5");
  TokenizerClient liar(model_file(), o);
  t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(liar.encode("water"), ContainsSubstring("a frame of 2147483647 bytes"));
  CHECK(seconds_since(t0) < 5);
}
