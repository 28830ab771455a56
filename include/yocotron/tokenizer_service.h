// The tokenizer as a service: `yocotron-tokenize serve --model FILE.model` loads a SentencePiece
// model, announces its vocabulary size, BOS and EOS (a Hello frame), then answers encode and decode
// requests (tokenizer_protocol.h) until its input ends. It lets processes that link LibTorch, where
// libsentencepiece cannot be loaded, tokenize through TokenizerClient.
#pragma once

#include "yocotron/tokenizer.h"

namespace yt {

// Serves `tok` on in_fd/out_fd until in_fd ends (returns 0). A bad request (an id outside the
// vocabulary, a malformed id list, an unknown frame type) gets an Error frame and the service goes
// on; a broken stream throws tokproto::StreamError.
int serve_tokenizer(const Tokenizer& tok, int in_fd, int out_fd);

}  // namespace yt
