#include "yocotron/tokenizer_service.h"

#include "yocotron/str.h"
#include "yocotron/tokenizer_protocol.h"

namespace yt {

int serve_tokenizer(const Tokenizer& tok, int in_fd, int out_fd) {
  using namespace tokproto;
  HelloInfo hello;
  hello.vocab_size = tok.vocab_size();
  hello.bos_id = tok.bos_id();
  hello.eos_id = tok.eos_id();
  hello.fingerprint = tok.fingerprint();
  write_frame(out_fd, Hello, pack_hello(hello));
  Frame req;
  while (read_frame(in_fd, req)) {
    // Request problems are answered, not fatal: the client reports them and may go on.
    try {
      if (req.type == Encode) {
        write_frame(out_fd, Ids, pack_ids(tok.encode(req.payload)));
      } else if (req.type == Decode) {
        std::vector<uint32_t> ids = unpack_ids(req.payload);
        for (uint32_t id : ids)
          if (id >= static_cast<uint32_t>(hello.vocab_size))
            throw std::runtime_error(cat("cannot decode id ", id, ": the vocabulary has ", hello.vocab_size, " pieces"));
        write_frame(out_fd, Text, tok.decode(ids));
      } else {
        throw std::runtime_error(cat("unknown request type ", static_cast<int>(static_cast<unsigned char>(req.type))));
      }
    } catch (const StreamError&) {
      throw;
    } catch (const std::exception& e) {
      write_frame(out_fd, Error, e.what());
    }
  }
  return 0;
}

}  // namespace yt
