// Gated retention, the O(1)-state token mixer of YOCO's gRet self-decoder: per head,
// S_t = γ_t S_{t-1} + k_tᵀ v_t (a d_h x d_h state) and o_t = q_t S_t, i.e.
// o_t = Σ_{s<=t} exp(G_t - G_s) (q_t·k_s) v_s with G the cumulative log γ. Two forms that compute the
// same thing: chunkwise (training and prefill: parallel within a chunk, the state carried across
// chunks) and recurrent (decoding, one token at a time). Both work in fp32 and return q's dtype.
#pragma once
#include <ATen/ATen.h>

#include <utility>

namespace yt {

// q, k, v: [B, H, T, D] (k already scaled as the caller wants); log_gamma: [B, H, T], <= 0.
// state: [B, H, D, D] fp32 carried in from earlier tokens, or undefined (zeros).
// Returns (o [B, H, T, D], the state after the last token [B, H, D, D] fp32).
std::pair<at::Tensor, at::Tensor> retention_chunkwise(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      const at::Tensor& log_gamma, int64_t chunk,
                                                      const at::Tensor& state = {});
std::pair<at::Tensor, at::Tensor> retention_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      const at::Tensor& log_gamma, const at::Tensor& state = {});

}  // namespace yt
