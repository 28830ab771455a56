#include "yocotron/flops.h"

#include <cstdlib>

#include "yocotron/kv_plan.h"

namespace yt {

double flops_per_token(const ModelConfig& m, int64_t seq_len) {
  ParamCounts pc = count_parameters(m, make_kv_plan(m));  // throws ConfigError when the count overflows
  const double n = static_cast<double>(pc.total - pc.embedding / 2);  // without the input embedding (vocab x d)
  return 6.0 * n + 12.0 * static_cast<double>(m.n_layers) * static_cast<double>(m.d_model) * static_cast<double>(seq_len);
}

double peak_flops() {
  if (const char* env = std::getenv("YOCOTRON_PEAK_TFLOPS")) return std::atof(env) * 1e12;
  return 989e12;
}

double mfu(const ModelConfig& m, int64_t seq_len, double tokens_per_s_per_gpu) {
  return tokens_per_s_per_gpu * flops_per_token(m, seq_len) / peak_flops();
}

}  // namespace yt
