// YOCO++'s scalar K/V mixing, out = scale * (w0 * a + w1 * b), forward and backward. a, b, out, grad and
// the input gradients share one dense memory layout (the caller sees to it), so the kernels walk them as
// flat arrays of n elements with 16-byte vectors and a scalar tail. The weights w (fp32 [2]) are read on
// the device, never synchronised to the host. The backward writes grad_a and grad_b in the same pass that
// accumulates grad_w's two dot products: each thread sums its own elements in fp32, each block reduces its
// threads into one partial pair, and a one-block kernel adds the partials in a fixed order (deterministic,
// no atomics).
#include "common.cuh"

namespace yt::kernels::cu {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float2 add2(float2 p, float2 q) { return make_float2(p.x + q.x, p.y + q.y); }

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    scalar_mix_fwd_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ w,
                          T* __restrict__ out, int64_t n, float scale) {
  const float w0 = w[0], w1 = w[1];
  grid_for_each<V>(n, [&](int64_t off, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K], y[K];
    load(a + off, x);
    load(b + off, y);
#pragma unroll
    for (int e = 0; e < K; ++e) x[e] = scale * (w0 * x[e] + w1 * y[e]);
    store(out + off, x);
  });
}

// partial: fp32 [gridDim.x, 2], this block's (sum grad * a, sum grad * b).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    scalar_mix_bwd_kernel(const T* __restrict__ grad, const T* __restrict__ a, const T* __restrict__ b,
                          const float* __restrict__ w, T* __restrict__ grad_a, T* __restrict__ grad_b,
                          float* __restrict__ partial, int64_t n, float scale) {
  const float c0 = scale * w[0], c1 = scale * w[1];
  float2 dot = make_float2(0.f, 0.f);
  grid_for_each<V>(n, [&](int64_t off, auto width) {
    constexpr int K = decltype(width)::value;
    float g[K], x[K], y[K];
    load(grad + off, g);
    load(a + off, x);
    load(b + off, y);
#pragma unroll
    for (int e = 0; e < K; ++e) {
      dot.x += g[e] * x[e];
      dot.y += g[e] * y[e];
      x[e] = c0 * g[e];
      y[e] = c1 * g[e];
    }
    store(grad_a + off, x);
    store(grad_b + off, y);
  });
  dot = block_allreduce(dot, [](float2 p, float2 q) { return add2(p, q); }, make_float2(0.f, 0.f));
  if (threadIdx.x == 0) {
    partial[2 * static_cast<int64_t>(blockIdx.x)] = dot.x;
    partial[2 * static_cast<int64_t>(blockIdx.x) + 1] = dot.y;
  }
}

// grad_w = scale * (sum over blocks of the partial pairs), always in the same order: thread t adds blocks
// t, t + blockDim.x, ... in turn, then the block's fixed reduction tree combines the threads. One block.
__global__ void __launch_bounds__(kThreads)
    scalar_mix_grad_w(const float* __restrict__ partial, int64_t blocks, float scale, float* __restrict__ grad_w) {
  float2 s = make_float2(0.f, 0.f);
  for (int64_t i = threadIdx.x; i < blocks; i += blockDim.x) s = add2(s, make_float2(partial[2 * i], partial[2 * i + 1]));
  s = block_allreduce(s, [](float2 p, float2 q) { return add2(p, q); }, make_float2(0.f, 0.f));
  if (threadIdx.x == 0) {
    grad_w[0] = scale * s.x;
    grad_w[1] = scale * s.y;
  }
}

}  // namespace

void scalar_mix_fwd(const void* a, const void* b, const float* w, void* out, int64_t n, float scale, DType dtype,
                    Stream stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    auto run = [&](auto width) {
      constexpr int V = decltype(width)::value;
      scalar_mix_fwd_kernel<T, V><<<grid_for(ceil_div(n, V), kThreads), kThreads, 0, stream>>>(
          static_cast<const T*>(a), static_cast<const T*>(b), w, static_cast<T*>(out), n, scale);
    };
    if (vectorisable({a, b, out}))
      run(Width<kVec<T>>{});
    else
      run(Width<1>{});
    check_launch("scalar_mix_fwd");
  });
}

int64_t scalar_mix_bwd_blocks(int64_t n, DType dtype) {
  int64_t blocks = 1;
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    int device = 0, sms = 0, per_sm = 0;
    check_cuda(cudaGetDevice(&device), "scalar_mix_bwd (device query)");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "scalar_mix_bwd (device query)");
    // The vector and scalar instantiations need about the same resources; the vector one stands for both.
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, scalar_mix_bwd_kernel<T, kVec<T>>, kThreads, 0),
               "scalar_mix_bwd (occupancy query)");
    const int64_t resident = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
    const int64_t work = ceil_div(ceil_div(n, kVec<T>), kThreads);  // blocks for one vector per thread
    blocks = resident < work ? resident : work;
  });
  return blocks > 0 ? blocks : 1;
}

void scalar_mix_bwd(const void* grad, const void* a, const void* b, const float* w, void* grad_a, void* grad_b,
                    float* grad_w, float* workspace, int64_t blocks, int64_t n, float scale, DType dtype,
                    Stream stream) {
  if (blocks < 1 || blocks > 0x7fffffff) throw std::invalid_argument("scalar_mix_bwd: bad workspace block count");
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    auto run = [&](auto width) {
      constexpr int V = decltype(width)::value;
      // With n == 0 the blocks still run: they write zero partials, so grad_w comes out zero.
      scalar_mix_bwd_kernel<T, V><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          static_cast<const T*>(grad), static_cast<const T*>(a), static_cast<const T*>(b), w,
          static_cast<T*>(grad_a), static_cast<T*>(grad_b), workspace, n, scale);
    };
    if (vectorisable({grad, a, b, grad_a, grad_b}))
      run(Width<kVec<T>>{});
    else
      run(Width<1>{});
    check_launch("scalar_mix_bwd");
    scalar_mix_grad_w<<<1, kThreads, 0, stream>>>(workspace, blocks, scale, grad_w);
    check_launch("scalar_mix_bwd (grad_w reduction)");
  });
}

}  // namespace yt::kernels::cu
