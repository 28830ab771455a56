#include "yocotron/retention.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace yt {
namespace {

at::Tensor zero_state(const at::Tensor& q) {
  return at::zeros({q.size(0), q.size(1), q.size(3), q.size(3)}, q.options().dtype(at::kFloat));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> retention_chunkwise(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                                      const at::Tensor& log_gamma, int64_t chunk, const at::Tensor& state) {
  const int64_t B = q_in.size(0), H = q_in.size(1), T = q_in.size(2), D = q_in.size(3);
  const int64_t C = std::min(chunk, T), N = (T + C - 1) / C, pad = N * C - T;
  // Zero padding at the end: q = k = v = 0 and log γ = 0 change neither the outputs kept nor the state.
  auto prep = [&](const at::Tensor& x) {
    at::Tensor f = x.to(at::kFloat);
    if (pad > 0) f = at::constant_pad_nd(f, x.dim() == 4 ? std::vector<int64_t>{0, 0, 0, pad} : std::vector<int64_t>{0, pad});
    return x.dim() == 4 ? f.reshape({B, H, N, C, D}) : f.reshape({B, H, N, C});
  };
  at::Tensor q = prep(q_in), k = prep(k_in), v = prep(v_in);
  at::Tensor G = prep(log_gamma).cumsum(-1);  // [B, H, N, C]: log decay from the chunk start, inclusive
  // Within a chunk: o_t = Σ_{s<=t} exp(G_t - G_s)(q_t·k_s) v_s, the upper triangle masked before exp.
  at::Tensor gap = G.unsqueeze(-1) - G.unsqueeze(-2);  // [B, H, N, C, C]
  auto upper = at::ones({C, C}, gap.options().dtype(at::kBool)).triu(1);
  at::Tensor decay = gap.masked_fill(upper, -std::numeric_limits<float>::infinity()).exp();
  at::Tensor o = at::matmul(at::matmul(q, k.transpose(-1, -2)) * decay, v);  // [B, H, N, C, D]
  // Across chunks: each chunk's own contribution to the state, then the carry S_c = e^{G_last} S_{c-1} + U_c.
  at::Tensor last = G.narrow(-1, C - 1, 1);                                        // [B, H, N, 1]
  at::Tensor U = at::matmul((k * (last - G).exp().unsqueeze(-1)).transpose(-1, -2), v);  // [B, H, N, D, D]
  at::Tensor S = state.defined() ? state.to(at::kFloat) : zero_state(q_in);
  std::vector<at::Tensor> before;  // the state entering each chunk
  before.reserve(N);
  for (int64_t c = 0; c < N; ++c) {
    before.push_back(S);
    S = last.select(2, c).exp().unsqueeze(-1) * S + U.select(2, c);
  }
  at::Tensor S_in = at::stack(before, 2);                                   // [B, H, N, D, D]
  o = o + at::matmul(q * G.exp().unsqueeze(-1), S_in);                      // q_t e^{G_t} S_{c-1}
  o = o.reshape({B, H, N * C, D}).narrow(2, 0, T);
  return {o.to(q_in.scalar_type()), S};
}

std::pair<at::Tensor, at::Tensor> retention_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      const at::Tensor& log_gamma, const at::Tensor& state) {
  at::Tensor S = state.defined() ? state.to(at::kFloat) : zero_state(q);
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < q.size(2); ++t) {
    at::Tensor kt = k.select(2, t).to(at::kFloat), vt = v.select(2, t).to(at::kFloat);  // [B, H, D]
    S = log_gamma.select(2, t).to(at::kFloat).exp().unsqueeze(-1).unsqueeze(-1) * S + kt.unsqueeze(-1) * vt.unsqueeze(-2);
    outs.push_back(at::matmul(q.select(2, t).to(at::kFloat).unsqueeze(-2), S).squeeze(-2));  // [B, H, D]
  }
  return {at::stack(outs, 2).to(q.scalar_type()), S};
}

}  // namespace yt
