// Row helpers of the chunked, vocabulary-parallel cross-entropy over logits [n, V] (this rank's shard
// covers global columns [vocab_start, vocab_start + V)): per-row max / sum of exp / target logit in one
// pass, and the in-place gradient (softmax - one_hot) * scale. One block per row. The row length is
// usually odd (V = 50257), so rows start at any 2- or 4-byte offset: each row is split into a scalar head
// up to its first 16-byte boundary, aligned 16-byte vectors, and a scalar tail.
#include <cmath>
#include <type_traits>

#include "common.cuh"

namespace yt::kernels::cu {
namespace {

// Calls f(j, values, Width<K>{}) over row[0, len) with values = row[j .. j+K) in fp32; when T is not
// const, the values are written back afterwards (rounded to T).
template <typename T, typename F>
__device__ __forceinline__ void for_each_in_row(T* row, int64_t len, F&& f) {
  using Elem = std::remove_const_t<T>;
  constexpr int V = kVec<Elem>;
  constexpr bool kWrite = !std::is_const_v<T>;
  auto visit = [&](int64_t j, auto width) {
    constexpr int K = decltype(width)::value;
    float v[K];
    load(row + j, v);
    f(j, v, width);
    if constexpr (kWrite) store(row + j, v);
  };
  const auto misalign = reinterpret_cast<std::uintptr_t>(row) % 16;
  int64_t head = static_cast<int64_t>((16 - misalign) % 16 / sizeof(Elem));
  if (head > len) head = len;
  const int64_t vectors = (len - head) / V, tail = head + vectors * V;
  for (int64_t j = threadIdx.x; j < head; j += blockDim.x) visit(j, Width<1>{});
  for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) visit(head + k * V, Width<V>{});
  for (int64_t j = tail + threadIdx.x; j < len; j += blockDim.x) visit(j, Width<1>{});
}

// Online softmax state (running max, sum of exp(x - max)); -inf max means "nothing seen yet".
__device__ __forceinline__ float2 combine_softmax(float2 a, float2 b) {
  const float m = fmaxf(a.x, b.x);
  if (m == -INFINITY) return make_float2(m, 0.f);
  return make_float2(m, a.y * expf(a.x - m) + b.y * expf(b.x - m));
}

template <typename T>
__global__ void __launch_bounds__(512)
    ce_row_stats_kernel(const T* __restrict__ logits, const int64_t* __restrict__ targets, float* __restrict__ row_max,
                        float* __restrict__ sum_exp, float* __restrict__ target_logit, int64_t V,
                        int64_t vocab_start) {
  const int64_t r = blockIdx.x;
  const T* row = logits + r * V;
  float m = -INFINITY, s = 0.f;
  // Rescales once per vector rather than per element: one extra exp per vector at most.
  for_each_in_row(row, V, [&](int64_t, const float* v, auto width) {
    constexpr int K = decltype(width)::value;
    float vmax = v[0];
#pragma unroll
    for (int e = 1; e < K; ++e) vmax = fmaxf(vmax, v[e]);
    if (vmax > m) {
      s *= expf(m - vmax);
      m = vmax;
    }
    if (m == -INFINITY) return;  // only -inf so far: every term is 0
#pragma unroll
    for (int e = 0; e < K; ++e) s += expf(v[e] - m);
  });
  const float2 total = block_allreduce(
      make_float2(m, s), [](float2 a, float2 b) { return combine_softmax(a, b); }, make_float2(-INFINITY, 0.f));
  if (threadIdx.x == 0) {
    const int64_t t = targets[r] - vocab_start;
    row_max[r] = total.x;
    sum_exp[r] = total.y;
    target_logit[r] = t >= 0 && t < V ? to_float(row[t]) : 0.f;
  }
}

template <typename T>
__global__ void __launch_bounds__(512)
    ce_grad_kernel(T* __restrict__ logits, const int64_t* __restrict__ targets, const float* __restrict__ lse,
                   int64_t V, int64_t vocab_start, float scale) {
  const int64_t r = blockIdx.x;
  const float row_lse = lse[r];
  const int64_t t = targets[r] - vocab_start;  // outside [0, V): no column of this shard is the target
  for_each_in_row(logits + r * V, V, [&](int64_t j, float* v, auto width) {
    constexpr int K = decltype(width)::value;
#pragma unroll
    for (int e = 0; e < K; ++e) v[e] = (expf(v[e] - row_lse) - (j + e == t ? 1.f : 0.f)) * scale;
  });
}

// Enough threads for one vector each on short rows, 512 on long ones.
template <typename T>
int threads_for(int64_t V) {
  const int64_t vectors = ceil_div(V, kVec<T>);
  const int64_t threads = round_up(vectors > 0 ? vectors : 1, 32);
  return static_cast<int>(threads < 512 ? threads : 512);
}


}  // namespace

void ce_row_stats(const void* logits, const int64_t* targets, float* row_max, float* sum_exp, float* target_logit,
                  int64_t n, int64_t V, int64_t vocab_start, DType dtype, Stream stream) {
  if (n == 0) return;
  check_grid_rows(n, "ce_row_stats");
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    ce_row_stats_kernel<T><<<static_cast<unsigned>(n), threads_for<T>(V), 0, stream>>>(
        static_cast<const T*>(logits), targets, row_max, sum_exp, target_logit, V, vocab_start);
    check_launch("ce_row_stats");
  });
}

void ce_grad(void* logits, const int64_t* targets, const float* lse, int64_t n, int64_t V, int64_t vocab_start,
             float scale, DType dtype, Stream stream) {
  if (n == 0 || V == 0) return;
  check_grid_rows(n, "ce_grad");
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    ce_grad_kernel<T><<<static_cast<unsigned>(n), threads_for<T>(V), 0, stream>>>(static_cast<T*>(logits), targets,
                                                                               lse, V, vocab_start, scale);
    check_launch("ce_grad");
  });
}

}  // namespace yt::kernels::cu
