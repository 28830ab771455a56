// SwiGLU, silu(gate) * up, forward and backward, elementwise over flat contiguous tensors (the MLP's
// [B, T, d_ffn] activations). Memory-bound: each thread moves whole 16-byte vectors, and the few elements
// past the last whole vector are handled one by one.
#include "common.cuh"

namespace yt::kernels::cu {
namespace {

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <typename T, int V>
__global__ void __launch_bounds__(256)
    swiglu_fwd_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out, int64_t n) {
  grid_for_each<V>(n, [&](int64_t off, auto width) {
    constexpr int K = decltype(width)::value;
    float g[K], u[K];
    load(gate + off, g);
    load(up + off, u);
#pragma unroll
    for (int e = 0; e < K; ++e) u[e] *= g[e] * sigmoid(g[e]);
    store(out + off, u);
  });
}

template <typename T, int V>
__global__ void __launch_bounds__(256)
    swiglu_bwd_kernel(const T* __restrict__ grad, const T* __restrict__ gate, const T* __restrict__ up,
                      T* __restrict__ grad_gate, T* __restrict__ grad_up, int64_t n) {
  grid_for_each<V>(n, [&](int64_t off, auto width) {
    constexpr int K = decltype(width)::value;
    float dy[K], g[K], u[K], dg[K], du[K];
    load(grad + off, dy);
    load(gate + off, g);
    load(up + off, u);
#pragma unroll
    for (int e = 0; e < K; ++e) {
      const float sg = sigmoid(g[e]);
      // d silu(g) / dg = sg * (1 + g * (1 - sg))
      dg[e] = dy[e] * u[e] * sg * (1.f + g[e] * (1.f - sg));
      du[e] = dy[e] * g[e] * sg;
    }
    store(grad_gate + off, dg);
    store(grad_up + off, du);
  });
}

constexpr int kThreads = 256;

}  // namespace

void swiglu_fwd(const void* gate, const void* up, void* out, int64_t n, DType dtype, Stream stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    auto run = [&](auto width) {
      constexpr int V = decltype(width)::value;
      swiglu_fwd_kernel<T, V><<<grid_for(ceil_div(n, V), kThreads), kThreads, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
    };
    if (vectorisable({gate, up, out}))
      run(Width<kVec<T>>{});
    else
      run(Width<1>{});
    check_launch("swiglu_fwd");
  });
}

void swiglu_bwd(const void* grad, const void* gate, const void* up, void* grad_gate, void* grad_up, int64_t n,
                DType dtype, Stream stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    auto run = [&](auto width) {
      constexpr int V = decltype(width)::value;
      swiglu_bwd_kernel<T, V><<<grid_for(ceil_div(n, V), kThreads), kThreads, 0, stream>>>(
          static_cast<const T*>(grad), static_cast<const T*>(gate), static_cast<const T*>(up),
          static_cast<T*>(grad_gate), static_cast<T*>(grad_up), n);
    };
    if (vectorisable({grad, gate, up, grad_gate, grad_up}))
      run(Width<kVec<T>>{});
    else
      run(Width<1>{});
    check_launch("swiglu_bwd");
  });
}

}  // namespace yt::kernels::cu
