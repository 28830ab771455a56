// Rotary position embedding in the half-split ("rotate_half") layout on x [B, T, H, D]: element i of the
// first half and element i of the second half of each head row rotate together by the angle of
// (position, i). One thread moves one vector from each half, so x is read once and out written once;
// the cos/sin rows ([max_pos, D] fp32, only columns < D/2 read) stay in cache across heads and batches.
#include "common.cuh"

namespace yt::kernels::cu {
namespace {

// Index is uint32_t whenever the work fits (32-bit division is several times cheaper than 64-bit).
template <typename T, int V, typename Index>
__global__ void __launch_bounds__(256)
    rope_kernel(const T* __restrict__ x, const float* __restrict__ cos, const float* __restrict__ sin,
                T* __restrict__ out, int64_t items, Index chunks_per_row, Index T_len, Index H, int64_t half,
                int64_t position_offset, float sign) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += stride) {
    const Index row = static_cast<Index>(item) / chunks_per_row;          // (b, t, h) flattened
    const Index chunk = static_cast<Index>(item) - row * chunks_per_row;  // within the first half
    const int64_t pos = static_cast<int64_t>((row / H) % T_len) + position_offset;
    const int64_t i = static_cast<int64_t>(chunk) * V;
    const int64_t xrow = static_cast<int64_t>(row) * 2 * half, trow = pos * 2 * half;
    float x1[V], x2[V], c[V], s[V], y1[V], y2[V];
    load(x + xrow + i, x1);
    load(x + xrow + half + i, x2);
    load(cos + trow + i, c);
    load(sin + trow + i, s);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const float se = sign * s[e];
      y1[e] = x1[e] * c[e] - x2[e] * se;
      y2[e] = x2[e] * c[e] + x1[e] * se;
    }
    store(out + xrow + i, y1);
    store(out + xrow + half + i, y2);
  }
}

template <typename T, int V>
void launch(const T* x, const float* cos, const float* sin, T* out, int64_t rows, int64_t T_len, int64_t H,
            int64_t half, int64_t position_offset, float sign, Stream stream) {
  const int64_t chunks = half / V, items = rows * chunks;
  constexpr int kThreads = 256;
  const unsigned grid = grid_for(items, kThreads);
  if (items <= 0xffffffffLL)
    rope_kernel<T, V, uint32_t><<<grid, kThreads, 0, stream>>>(
        x, cos, sin, out, items, static_cast<uint32_t>(chunks), static_cast<uint32_t>(T_len),
        static_cast<uint32_t>(H), half, position_offset, sign);
  else
    rope_kernel<T, V, uint64_t><<<grid, kThreads, 0, stream>>>(
        x, cos, sin, out, items, static_cast<uint64_t>(chunks), static_cast<uint64_t>(T_len),
        static_cast<uint64_t>(H), half, position_offset, sign);
  check_launch("rope_fwd");
}

}  // namespace

void rope_fwd(const void* x, const float* cos, const float* sin, void* out, int64_t B, int64_t T, int64_t H,
              int64_t D, int64_t position_offset, bool inverse, DType dtype, Stream stream) {
  const int64_t rows = B * T * H, half = D / 2;
  if (rows == 0 || half == 0) return;
  if (D % 2 != 0) throw std::invalid_argument("rope_fwd: head dim must be even");
  const float sign = inverse ? -1.f : 1.f;
  dispatch_dtype(dtype, [&](auto t) {
    using Elem = typename decltype(t)::type;
    constexpr int V = kVec<Elem>;
    // Whole vectors in each half, and aligned bases: then every vector of x, out and the tables is
    // aligned (D * 4 bytes per table row is a multiple of 16 once half is a multiple of V >= 4).
    const bool vec = half % V == 0 && aligned16(x) && aligned16(out) && aligned16(cos) && aligned16(sin);
    auto run = [&](auto width) {
      launch<Elem, decltype(width)::value>(static_cast<const Elem*>(x), cos, sin, static_cast<Elem*>(out), rows, T, H,
                                         half, position_offset, sign, stream);
    };
    if (vec)
      run(Width<V>{});
    else
      run(Width<1>{});
  });
}

}  // namespace yt::kernels::cu
