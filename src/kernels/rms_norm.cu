// Fused residual add + RMSNorm over rows [rows, d], forward and backward.
// Forward: one block per row. Rows of up to 8192 elements stay in registers (each thread owns a fixed set
// of chunks), so each byte is read once and written once; longer rows take a two-pass loop that reads
// the row again. Backward: a grid of resident blocks walks the rows; a thread owns the same chunks in
// every row, so it accumulates its grad_weight columns in registers and writes one fp32 partial row per
// block, which a second kernel sums in a fixed order (deterministic, no atomics).
#include "common.cuh"

namespace yt::kernels::cu {
namespace {

// With at most kMaxThreads threads per row and kMaxPerThread values per thread and tensor, rows up to
// 512 * 16 = 8192 elements are held in registers; the bound keeps the backward (four such arrays per
// thread) clear of spills at 512 threads per block.
constexpr int kMaxThreads = 512;
constexpr int kMaxPerThread = 16;

template <int V>
__device__ __forceinline__ float sum_of_squares(const float (&x)[V]) {
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < V; ++i) s += x[i] * x[i];
  return s;
}

// Chunk c (elements c*V .. c*V+V-1) of the row starting at `base`: the residual stream after the add,
// rounded to T exactly as the stored sum is, so that forward and backward see the same values.
template <typename T, int V>
__device__ __forceinline__ void add_chunk(const T* residual, const T* delta, T* sum, int64_t base, int64_t c,
                                          float (&x)[V]) {
  load(residual + base + c * V, x);
  if (delta == nullptr) return;
  float dv[V];
  load(delta + base + c * V, dv);
#pragma unroll
  for (int i = 0; i < V; ++i) x[i] = to_float(from_float<T>(x[i] + dv[i]));
  store(sum + base + c * V, x);
}

template <typename T, typename W, int V>
__device__ __forceinline__ void normed_chunk(const float (&x)[V], const W* weight, float rstd, T* normed,
                                             int64_t base, int64_t c) {
  float w[V], y[V];
  load(weight + c * V, w);
#pragma unroll
  for (int i = 0; i < V; ++i) y[i] = x[i] * rstd * w[i];
  store(normed + base + c * V, y);
}

// Row held in registers: thread t owns chunks t, t + blockDim.x, ..., N of them.
template <typename T, typename W, int V, int N>
__global__ void __launch_bounds__(kMaxThreads)
    add_rms_norm_fwd_regs(const T* __restrict__ residual, const T* __restrict__ delta, const W* __restrict__ weight,
                          T* __restrict__ sum, T* __restrict__ normed, float* __restrict__ rstd_out, int64_t d,
                          float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d, chunks = d / V;
  float x[N][V];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < chunks) {
      add_chunk(residual, delta, sum, base, c, x[k]);
      ss += sum_of_squares(x[k]);
    }
  }
  const float rstd = rsqrtf(block_sum(ss) / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd_out[blockIdx.x] = rstd;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < chunks) normed_chunk(x[k], weight, rstd, normed, base, c);
  }
}

// Rows too long for registers: the second pass reads the (rounded) sum back. No __restrict__: the second
// pass reads `sum` through another pointer.
template <typename T, typename W, int V>
__global__ void __launch_bounds__(kMaxThreads)
    add_rms_norm_fwd_loop(const T* residual, const T* delta, const W* weight, T* sum, T* normed, float* rstd_out,
                          int64_t d, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d, chunks = d / V;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    float x[V];
    add_chunk(residual, delta, sum, base, c, x);
    ss += sum_of_squares(x);
  }
  const float rstd = rsqrtf(block_sum(ss) / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd_out[blockIdx.x] = rstd;
  const T* src = delta == nullptr ? residual : sum;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    float x[V];
    load(src + base + c * V, x);
    normed_chunk(x, weight, rstd, normed, base, c);
  }
}

// grad_sum chunk: rstd * (g - x_hat * dot) + grad_extra, with dot = mean(g * x_hat) over the row.
template <typename T, int V>
__device__ __forceinline__ void grad_sum_chunk(const float (&g)[V], const float (&x_hat)[V], float rstd, float dot,
                                               const T* grad_extra, T* grad_sum, int64_t base, int64_t c) {
  float out[V];
  if (grad_extra != nullptr) {
    load(grad_extra + base + c * V, out);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = 0.f;
  }
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] += rstd * (g[i] - x_hat[i] * dot);
  store(grad_sum + base + c * V, out);
}

// Grid-stride over rows; thread t owns chunks t, t + blockDim.x, ... of every row, holds their weights and
// grad_weight sums in registers, and writes its block's partial row of grad_weight at the end.
template <typename T, typename W, int V, int N>
__global__ void __launch_bounds__(kMaxThreads)
    rms_norm_bwd_regs(const T* __restrict__ grad_normed, const T* __restrict__ sum, const float* __restrict__ rstd,
                      const W* __restrict__ weight, const T* __restrict__ grad_extra, T* __restrict__ grad_sum,
                      float* __restrict__ partial, int64_t rows, int64_t d) {
  const int64_t chunks = d / V;
  float w[N][V], acc[N][V];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
#pragma unroll
    for (int i = 0; i < V; ++i) acc[k][i] = 0.f;
    if (c < chunks) load(weight + c * V, w[k]);
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * d;
    const float rs = rstd[row];
    float x_hat[N][V], g[N][V];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (c < chunks) {
        float gn[V];
        load(grad_normed + base + c * V, gn);
        load(sum + base + c * V, x_hat[k]);
#pragma unroll
        for (int i = 0; i < V; ++i) {
          x_hat[k][i] *= rs;
          g[k][i] = gn[i] * w[k][i];
          dot += g[k][i] * x_hat[k][i];
          acc[k][i] += gn[i] * x_hat[k][i];
        }
      }
    }
    dot = block_sum(dot) / static_cast<float>(d);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (c < chunks) grad_sum_chunk(g[k], x_hat[k], rs, dot, grad_extra, grad_sum, base, c);
    }
  }
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < chunks) store(partial + static_cast<int64_t>(blockIdx.x) * d + c * V, acc[k]);
  }
}

// Rows too long for registers: two passes per row, and the block's partial row in global memory is the
// grad_weight accumulator (each element is only ever touched by the one thread that owns its chunk).
template <typename T, typename W, int V>
__global__ void __launch_bounds__(kMaxThreads)
    rms_norm_bwd_loop(const T* grad_normed, const T* sum, const float* rstd, const W* weight, const T* grad_extra,
                      T* grad_sum, float* partial, int64_t rows, int64_t d) {
  const int64_t chunks = d / V;
  float* acc = partial + static_cast<int64_t>(blockIdx.x) * d;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    float zero[V];
#pragma unroll
    for (int i = 0; i < V; ++i) zero[i] = 0.f;
    store(acc + c * V, zero);
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * d;
    const float rs = rstd[row];
    // Loads chunk c as (g = grad_normed * w, x_hat, grad_normed).
    auto load_chunk = [&](int64_t c, float (&g)[V], float (&x_hat)[V], float (&gn)[V]) {
      float w[V];
      load(grad_normed + base + c * V, gn);
      load(sum + base + c * V, x_hat);
      load(weight + c * V, w);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        x_hat[i] *= rs;
        g[i] = gn[i] * w[i];
      }
    };
    float dot = 0.f;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float g[V], x_hat[V], gn[V];
      load_chunk(c, g, x_hat, gn);
#pragma unroll
      for (int i = 0; i < V; ++i) dot += g[i] * x_hat[i];
    }
    dot = block_sum(dot) / static_cast<float>(d);
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float g[V], x_hat[V], gn[V], a[V];
      load_chunk(c, g, x_hat, gn);
      grad_sum_chunk(g, x_hat, rs, dot, grad_extra, grad_sum, base, c);
      load(acc + c * V, a);
#pragma unroll
      for (int i = 0; i < V; ++i) a[i] += gn[i] * x_hat[i];
      store(acc + c * V, a);
    }
  }
}

// grad_weight[j] = sum over b of partial[b, j], always in the same order: 16 strided slices of the blocks
// summed by threadIdx.y, then those 16 in order.
constexpr int kReduceCols = 32, kReduceSlices = 16;
template <typename W>
__global__ void __launch_bounds__(kReduceCols* kReduceSlices)
    sum_partials(const float* __restrict__ partial, int64_t blocks, int64_t d, W* __restrict__ out) {
  __shared__ float slice[kReduceSlices][kReduceCols + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kReduceCols + threadIdx.x;
  float s = 0.f;
  if (j < d)
    for (int64_t b = threadIdx.y; b < blocks; b += kReduceSlices) s += partial[b * d + j];
  slice[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    float total = 0.f;
#pragma unroll
    for (int y = 0; y < kReduceSlices; ++y) total += slice[y][threadIdx.x];
    out[j] = from_float<W>(total);
  }
}

// ---- host side: picking a kernel for a row length ----

// Threads per row block and chunks per thread on the register path; per_thread 0 means the loop kernels.
struct RowPlan {
  int threads;
  int per_thread;
};

template <int V>
RowPlan plan_row(int64_t chunks) {
  for (int n = 1; n * V <= kMaxPerThread; n *= 2) {
    const int64_t threads = ceil_div(chunks, n);
    if (threads <= kMaxThreads) return {static_cast<int>(round_up(threads > 0 ? threads : 1, 32)), n};
  }
  return {kMaxThreads, 0};
}

template <typename T, typename W>
using FwdKernel = void (*)(const T*, const T*, const W*, T*, T*, float*, int64_t, float);
template <typename T, typename W>
using BwdKernel = void (*)(const T*, const T*, const float*, const W*, const T*, T*, float*, int64_t, int64_t);

// Kernel families, so that one switch maps a row plan to an instantiation for both directions.
struct Fwd {
  template <typename T, typename W, int V, int N>
  static FwdKernel<T, W> regs() {
    return add_rms_norm_fwd_regs<T, W, V, N>;
  }
  template <typename T, typename W, int V>
  static FwdKernel<T, W> loop() {
    return add_rms_norm_fwd_loop<T, W, V>;
  }
};
struct Bwd {
  template <typename T, typename W, int V, int N>
  static BwdKernel<T, W> regs() {
    return rms_norm_bwd_regs<T, W, V, N>;
  }
  template <typename T, typename W, int V>
  static BwdKernel<T, W> loop() {
    return rms_norm_bwd_loop<T, W, V>;
  }
};

template <typename Family, typename T, typename W, int V>
auto kernel_for(const RowPlan& plan) {
  switch (plan.per_thread) {
    case 1:
      return Family::template regs<T, W, V, 1>();
    case 2:
      if constexpr (2 * V <= kMaxPerThread) return Family::template regs<T, W, V, 2>();
      break;
    case 4:
      if constexpr (4 * V <= kMaxPerThread) return Family::template regs<T, W, V, 4>();
      break;
    case 8:
      if constexpr (8 * V <= kMaxPerThread) return Family::template regs<T, W, V, 8>();
      break;
    case 16:
      if constexpr (16 * V <= kMaxPerThread) return Family::template regs<T, W, V, 16>();
      break;
    default:
      break;
  }
  return Family::template loop<T, W, V>();
}

struct Choice {
  RowPlan plan;
  bool vectorised;
};

// 16-byte vectors when the row length is a whole number of them and every row pointer is aligned
// (then every chunk is); single elements otherwise.
template <typename T>
Choice choose(int64_t d, std::initializer_list<const void*> pointers) {
  bool vec = d % kVec<T> == 0;
  for (const void* p : pointers) vec = vec && aligned16(p);
  return vec ? Choice{plan_row<kVec<T>>(d / kVec<T>), true} : Choice{plan_row<1>(d), false};
}

template <typename Family, typename T, typename W>
auto kernel_for(const Choice& choice) {
  return choice.vectorised ? kernel_for<Family, T, W, kVec<T>>(choice.plan) : kernel_for<Family, T, W, 1>(choice.plan);
}

// Calls f(TypeTag<T>{}, TypeTag<W>{}) for the supported (input, weight) pairs: weight in the input's
// dtype or in fp32.
template <typename F>
void dispatch_types(DType dtype, DType wdtype, const char* name, F&& f) {
  dispatch_dtype(dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    if (wdtype == DType::F32)
      f(t, TypeTag<float>{});
    else if (dtype == DType::BF16)
      f(t, TypeTag<T>{});
    else
      throw std::invalid_argument(std::string(name) + ": a bf16 weight needs bf16 inputs");
  });
}


}  // namespace

void add_rms_norm_fwd(const void* residual, const void* delta, const void* weight, void* sum, void* normed,
                      float* rstd, int64_t rows, int64_t d, DType dtype, DType wdtype, float eps, Stream stream) {
  if (rows == 0 || d == 0) return;
  check_grid_rows(rows, "add_rms_norm_fwd");
  dispatch_types(dtype, wdtype, "add_rms_norm_fwd", [&](auto t, auto w) {
    using T = typename decltype(t)::type;
    using W = typename decltype(w)::type;
    const Choice choice = choose<T>(d, {residual, delta, weight, sum, normed});
    const FwdKernel<T, W> kernel = kernel_for<Fwd, T, W>(choice);
    kernel<<<static_cast<unsigned>(rows), choice.plan.threads, 0, stream>>>(
        static_cast<const T*>(residual), static_cast<const T*>(delta), static_cast<const W*>(weight),
        static_cast<T*>(sum), static_cast<T*>(normed), rstd, d, eps);
    check_launch("add_rms_norm_fwd");
  });
}

int64_t rms_norm_bwd_blocks(int64_t rows, int64_t d, DType dtype, DType wdtype) {
  if (rows <= 1 || d == 0) return 1;
  int64_t blocks = 1;
  dispatch_types(dtype, wdtype, "rms_norm_bwd", [&](auto t, auto w) {
    using T = typename decltype(t)::type;
    using W = typename decltype(w)::type;
    // Alignment does not change the kernel's resources much; the vectorised choice stands for both.
    const Choice choice = choose<T>(d, {});
    const BwdKernel<T, W> kernel = kernel_for<Bwd, T, W>(choice);
    int device = 0, sms = 0, per_sm = 0;
    check_cuda(cudaGetDevice(&device), "rms_norm_bwd (device query)");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "rms_norm_bwd (device query)");
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, choice.plan.threads, 0),
               "rms_norm_bwd (occupancy query)");
    blocks = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  });
  return blocks < rows ? (blocks > 0 ? blocks : 1) : rows;
}

void rms_norm_bwd(const void* grad_normed, const void* sum, const float* rstd, const void* weight,
                  const void* grad_extra, void* grad_sum, void* grad_weight, float* workspace, int64_t blocks,
                  int64_t rows, int64_t d, DType dtype, DType wdtype, Stream stream) {
  if (d == 0) return;
  if (blocks < 1 || blocks > 0x7fffffff) throw std::invalid_argument("rms_norm_bwd: bad workspace block count");
  dispatch_types(dtype, wdtype, "rms_norm_bwd", [&](auto t, auto w) {
    using T = typename decltype(t)::type;
    using W = typename decltype(w)::type;
    const Choice choice = choose<T>(d, {grad_normed, sum, weight, grad_extra, grad_sum, workspace});
    const BwdKernel<T, W> kernel = kernel_for<Bwd, T, W>(choice);
    // With rows == 0 the blocks still run: they write zero partials, so grad_weight comes out zero.
    kernel<<<static_cast<unsigned>(blocks), choice.plan.threads, 0, stream>>>(
        static_cast<const T*>(grad_normed), static_cast<const T*>(sum), rstd, static_cast<const W*>(weight),
        static_cast<const T*>(grad_extra), static_cast<T*>(grad_sum), workspace, rows, d);
    check_launch("rms_norm_bwd");
    const dim3 threads(kReduceCols, kReduceSlices);
    sum_partials<W><<<static_cast<unsigned>(ceil_div(d, kReduceCols)), threads, 0, stream>>>(
        workspace, blocks, d, static_cast<W*>(grad_weight));
    check_launch("rms_norm_bwd (grad_weight reduction)");
  });
}

}  // namespace yt::kernels::cu
