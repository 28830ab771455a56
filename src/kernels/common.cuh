// Helpers shared by the fused kernels: fp32 <-> storage conversion, 16-byte vector loads and stores,
// deterministic warp/block reductions, the elementwise grid-stride loop, dtype dispatch and the launch
// check. Only CUDA's own headers: nvcc never sees torch.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "launchers.h"

namespace yt::kernels::cu {

using bf16 = __nv_bfloat16;

// ---- conversions: loads widen to fp32, stores round once (round-to-nearest-even, as ATen does) ----
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) {
  return __float2bfloat16(x);
}

// Elements of T in one 16-byte vector: 8 for bf16, 4 for fp32.
template <typename T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

// A compile-time element count handed to generic per-chunk lambdas (a vector or a single element).
template <int K>
struct Width {
  static constexpr int value = K;
};

template <typename T, int Bytes>
struct alignas(Bytes) Pack {
  T v[Bytes / sizeof(T)];
};

// N consecutive elements at p, widened to fp32. Whole 16-byte (or 8-byte) packs are moved in single
// transactions, so p must be aligned to min(16, N * sizeof(T)) bytes when N * sizeof(T) is 8 or a
// multiple of 16; other widths go element by element.
template <int N, typename T>
__device__ __forceinline__ void load(const T* p, float (&out)[N]) {
  constexpr int kBytes = N * static_cast<int>(sizeof(T));
  if constexpr (kBytes % 16 == 0) {
    constexpr int kPer = 16 / sizeof(T);
#pragma unroll
    for (int b = 0; b < kBytes / 16; ++b) {
      const Pack<T, 16> raw = reinterpret_cast<const Pack<T, 16>*>(p)[b];
#pragma unroll
      for (int i = 0; i < kPer; ++i) out[b * kPer + i] = to_float(raw.v[i]);
    }
  } else if constexpr (kBytes == 8) {
    const Pack<T, 8> raw = *reinterpret_cast<const Pack<T, 8>*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_float(raw.v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_float(p[i]);
  }
}

// The store counterpart of load(): rounds each value to T once. Same alignment rule.
template <int N, typename T>
__device__ __forceinline__ void store(T* p, const float (&in)[N]) {
  constexpr int kBytes = N * static_cast<int>(sizeof(T));
  if constexpr (kBytes % 16 == 0) {
    constexpr int kPer = 16 / sizeof(T);
#pragma unroll
    for (int b = 0; b < kBytes / 16; ++b) {
      Pack<T, 16> raw;
#pragma unroll
      for (int i = 0; i < kPer; ++i) raw.v[i] = from_float<T>(in[b * kPer + i]);
      reinterpret_cast<Pack<T, 16>*>(p)[b] = raw;
    }
  } else if constexpr (kBytes == 8) {
    Pack<T, 8> raw;
#pragma unroll
    for (int i = 0; i < N; ++i) raw.v[i] = from_float<T>(in[i]);
    *reinterpret_cast<Pack<T, 8>*>(p) = raw;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = from_float<T>(in[i]);
  }
}

// ---- reductions ----
// Butterfly (xor) shuffles: every lane ends with the same bits, because each step combines the same two
// values in both partner lanes and the combine is commutative. Callers rely on that: all threads of a
// row use the same rstd / max without a broadcast.
__device__ __forceinline__ float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ float2 shfl_xor(float2 v, int mask) {
  return make_float2(__shfl_xor_sync(0xffffffffu, v.x, mask), __shfl_xor_sync(0xffffffffu, v.y, mask));
}

template <typename S, typename Combine>
__device__ __forceinline__ S warp_allreduce(S v, Combine combine) {
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) v = combine(v, shfl_xor(v, mask));
  return v;
}

// Reduces one value per thread over the block and returns the result to every thread, in a fixed order
// (deterministic). blockDim.x must be a multiple of 32; every thread of the block must call it.
template <typename S, typename Combine>
__device__ __forceinline__ S block_allreduce(S v, Combine combine, S identity) {
  __shared__ S partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_allreduce(v, combine);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  // Every warp reduces the per-warp partials itself, which saves a second barrier and broadcast.
  v = warp_allreduce(lane < warps ? partial[lane] : identity, combine);
  __syncthreads();  // `partial` is reused by the next call
  return v;
}

__device__ __forceinline__ float block_sum(float v) {
  return block_allreduce(v, [](float a, float b) { return a + b; }, 0.f);
}

// ---- elementwise loops ----
// Calls f(offset, Width<K>{}) over [0, n) in a grid-stride loop: K = V for the whole vectors, then K = 1
// for the leftover elements. With V = 1 it is a plain elementwise loop.
template <int V, typename F>
__device__ __forceinline__ void grid_for_each(int64_t n, F&& f) {
  const int64_t vectors = n / V, items = vectors + (n - vectors * V);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride) {
    if (i < vectors)
      f(i * V, Width<V>{});
    else
      f(vectors * V + (i - vectors), Width<1>{});
  }
}

// ---- host side ----
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Vectors only when every pointer is 16-byte aligned (then so is every vector offset).
inline bool vectorisable(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// Grid size for grid-stride loops: enough blocks to fill any GPU, never more than the work.
inline unsigned grid_for(int64_t items, int threads) {
  const int64_t kMaxBlocks = int64_t{1} << 16;
  const int64_t blocks = ceil_div(items, threads);
  return static_cast<unsigned>(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("yocotron CUDA kernel ") + what + ": " + cudaGetErrorString(err));
}

// One block per row: the row count must fit gridDim.x.
inline void check_grid_rows(int64_t rows, const char* kernel) {
  if (rows > 0x7fffffff) throw std::invalid_argument(std::string(kernel) + ": more than 2^31 - 1 rows");
}

// Launch errors (bad configuration, missing kernel image for this GPU) surface here, named.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the storage type of `dtype`.
template <typename F>
void dispatch_dtype(DType dtype, F&& f) {
  if (dtype == DType::F32)
    f(TypeTag<float>{});
  else
    f(TypeTag<bf16>{});
}

}  // namespace yt::kernels::cu
