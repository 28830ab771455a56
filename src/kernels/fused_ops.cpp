// TEMPORARY stub (replaced by the kernels branch).
#include "yocotron/fused_ops.h"

#include <stdexcept>

namespace yt::kernels {
namespace {
[[noreturn]] void none() { throw std::runtime_error("yocotron was built without CUDA kernels"); }
}  // namespace
bool available() { return false; }
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fwd(const at::Tensor&, const at::Tensor&, const at::Tensor&, double) { none(); }
std::pair<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&) { none(); }
at::Tensor rope_fwd(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool) { none(); }
at::Tensor swiglu_fwd(const at::Tensor&, const at::Tensor&) { none(); }
std::pair<at::Tensor, at::Tensor> swiglu_bwd(const at::Tensor&, const at::Tensor&, const at::Tensor&) { none(); }
void ce_row_stats(const at::Tensor&, const at::Tensor&, int64_t, at::Tensor&, at::Tensor&, at::Tensor&) { none(); }
void ce_grad_(at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double) { none(); }
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double) { none(); }
at::Tensor rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t) { none(); }
at::Tensor swiglu(const at::Tensor&, const at::Tensor&) { none(); }
}  // namespace yt::kernels
