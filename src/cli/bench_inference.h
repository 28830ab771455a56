// `yocotron bench --part prefill|decode`: the YOCO++ paper's efficiency protocol (the authors'
// test_latency.py in wuyou2002/YOCO-plus) on yocotron's KV cache: bf16 weights on the GPU, timed
// with CUDA events, the largest batch found by doubling until out of memory, then bisecting.
//   prefill: time to first token (prompt through the model, early exit on, first token chosen) for
//     each prompt length, at batch 1 and at the largest batch that fits.
//   decode: a short prompt, then exactly N new tokens per sequence (no early stop), greedy on the
//     device; tokens/s = batch * N / (prefill + decode time), at batch 1 and at the largest batch
//     whose cache of prompt + N tokens fits; with the KV cache's bytes.
// The search probes one step at the longest cache; where the timed run at the batch found still
// runs out of memory (allocator fragmentation), it steps down by 1/16 and says so
// (`searched_batch`).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/decode_graph.h"
#include "yocotron/errors.h"

namespace yt::cli {

struct InferenceBenchOptions {
  std::vector<int64_t> lengths;  // prefill: prompt lengths; decode: tokens generated per sequence
  int64_t batch = 0;             // > 0: only this batch; 0: batch 1 and the largest that fits (GPU)
  int64_t max_batch = 4096;      // ceiling of the search
  int64_t prompt_tokens = 5;     // decode: prompt length
  int64_t sample_steps = 0;      // decode: 0 = time every step; K >= 2 = time steps at K cache lengths
                                 //   spread over the run and integrate (an estimate; reported as such)
  int64_t repeats = 3;           // prefill: timed runs per point (the median is reported)
  DecodeGraphs graphs = DecodeGraphs::Auto;  // decode: steps replayed from a CUDA graph
};

// `where` learns the device once it is chosen, for the out-of-memory message.
nlohmann::json bench_prefill(Config cfg, const InferenceBenchOptions& o, OomContext& where);
nlohmann::json bench_decode(Config cfg, const InferenceBenchOptions& o, OomContext& where);

}  // namespace yt::cli
