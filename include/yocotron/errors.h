// Errors as a user reads them: LibTorch's errors without their C++ backtrace, and running out of
// memory as one line that says where (device, phase, step, micro-batch), how much, and what to try.
#pragma once
#include <exception>
#include <functional>
#include <string>

#include "yocotron/config.h"

namespace yt {

// The message of `e`; for a LibTorch error, without the backtrace LibTorch appends to what().
std::string error_text(const std::exception& e);

// Runs `body`; a LibTorch error leaving it is rethrown as std::runtime_error(error_text(e)).
int without_backtraces(const std::function<int()>& body);

// Where an out-of-memory error happened, beyond what phase.h records.
struct OomContext {
  std::string device;  // "cuda:0", "cpu"
  int64_t dp = 1;      // data-parallel size
  std::string advice;  // what to change instead of the training keys (inference benchmarks); empty: by phase
};

// Whether `e` is an allocation failure: CUDA's caching allocator, LibTorch's CPU allocator, std::bad_alloc.
bool is_out_of_memory(const std::exception& e);

// When `e` is an out-of-memory error (CUDA's caching allocator, LibTorch's CPU allocator,
// std::bad_alloc), the one-line message for it, without "error: ":
//   out of memory on cuda:0 in the backward pass of step 1 (micro-batch 16 x 2048 tokens): tried to
//   allocate 2.00 GiB (GPU 0 has a total capacity of ...); try a smaller train.micro_batch (...), ...
// naming the phase set in phase.h. Otherwise "".
std::string out_of_memory_message(const std::exception& e, const Config& cfg, const OomContext& ctx);

// Runs `body`; an out-of-memory error leaving it is rethrown as std::runtime_error with that message
// (`ctx` is asked then: the device is known only once the body has chosen it).
int with_out_of_memory_message(const Config& cfg, const std::function<OomContext()>& ctx,
                               const std::function<int()>& body);

}  // namespace yt
