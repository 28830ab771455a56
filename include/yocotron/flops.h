// Model FLOPs utilisation, as Megatron/PaLM count it: training FLOPs per token = 6N + 12·L·d·T,
// with N the parameters that do matrix work (everything but the input embedding; the untied head
// counts) and the second term the attention score and value products (forward + backward) at
// sequence length T. Looped layers (YOCO-U) count once per loop; sliding-window layers read at most W
// keys and gated-retention layers a chunk plus their state (src/train/flops.cpp).
// MFU = tokens/s × FLOPs per token / peak; peak is 989 TFLOP/s (dense bf16 of an
// H100/H200 SXM) unless YOCOTRON_PEAK_TFLOPS says otherwise.
#pragma once
#include <cstdint>

#include "yocotron/config.h"

namespace yt {

double flops_per_token(const ModelConfig& m, int64_t seq_len);
double peak_flops();
double mfu(const ModelConfig& m, int64_t seq_len, double tokens_per_s_per_gpu);

}  // namespace yt
