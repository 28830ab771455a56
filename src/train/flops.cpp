#include "yocotron/flops.h"

#include <algorithm>
#include <cstdlib>

#include "yocotron/kv_plan.h"

namespace yt {

double flops_per_token(const ModelConfig& m, int64_t seq_len) {
  const KvPlan plan = make_kv_plan(m);
  ParamCounts pc = count_parameters(m, plan);  // throws ConfigError when the count overflows
  // Without the input embedding (vocab x d); a looped block does its matmuls once per loop.
  const double n = static_cast<double>(pc.total - pc.embedding / 2) + static_cast<double>(plan.loops - 1) * pc.looped;
  // Token mixing per layer (forward + backward, 12·d per key a query reads): full causal attention
  // reads seq_len keys (counted unhalved, as Megatron/PaLM do), a window min(W, seq_len), gated
  // retention a chunk plus its d_h x d_h state.
  const double d = static_cast<double>(m.d_model), T = static_cast<double>(seq_len);
  double mixing = 0;
  for (const auto& l : plan.layers) {
    const double times = l.loop_group >= 0 ? plan.loops : 1;
    double keys = T;
    if (l.mixer == Mixer::Retention) keys = std::min<double>(plan.retention_chunk, T) + static_cast<double>(m.head_dim());
    else if (l.window > 0) keys = std::min<double>(static_cast<double>(l.window), T);
    mixing += times * 12.0 * d * keys;
  }
  return 6.0 * n + mixing;
}

double peak_flops() {
  if (const char* env = std::getenv("YOCOTRON_PEAK_TFLOPS")) return std::atof(env) * 1e12;
  return 989e12;
}

double mfu(const ModelConfig& m, int64_t seq_len, double tokens_per_s_per_gpu) {
  return tokens_per_s_per_gpu * flops_per_token(m, seq_len) / peak_flops();
}

}  // namespace yt
