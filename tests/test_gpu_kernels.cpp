// GPU checks of the fused kernels (include/yocotron/fused_ops.h) against references written here with plain
// ATen ops in fp64 on the GPU (inputs upcast): forwards, backwards (fp64 autograd of the reference) and the
// autograd versions, in fp32 (<= 1e-5 relative: max abs diff / max abs ref) and bf16 (<= 2e-2, also against
// the fp32 kernel), on odd sizes and misaligned rows that take the scalar paths. Compiled when LibTorch has CUDA.
#include <torch/torch.h>

#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "yocotron/fused_ops.h"
#include "yocotron/ops.h"

namespace kn = yt::kernels;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

at::TensorOptions on_gpu(at::ScalarType dtype) { return at::TensorOptions().device(at::kCUDA).dtype(dtype); }

double tolerance(at::ScalarType dtype) { return dtype == at::kFloat ? 1e-5 : 2e-2; }

// max |got - ref| / max |ref| in fp64. A NaN anywhere makes it NaN, and NaN <= tol is false.
double rel_err(const at::Tensor& got, const at::Tensor& ref) {
  const auto g = got.to(at::kDouble), r = ref.to(at::kDouble);
  return ((g - r).abs().max() / r.abs().max()).item<double>();
}

// Fresh N(0, scale^2) values in `dtype`. misaligned: the tensor starts one element into its storage, so
// its rows are not 16-byte aligned and the kernels must take their scalar paths.
at::Tensor random(at::IntArrayRef sizes, at::ScalarType dtype, double scale = 1.0, bool misaligned = false) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  auto flat = (at::randn({n + 1}, on_gpu(at::kFloat)) * scale).to(dtype);
  return flat.narrow(0, misaligned ? 1 : 0, n).view(sizes);
}

// Leaves NaN-filled free blocks of these sizes in the caching allocator, which usually hands them out to
// the next allocations of the same size: an output element a kernel forgets to write then reads NaN.
void poison_allocator(const std::vector<int64_t>& bytes) {
  std::vector<at::Tensor> blocks;
  for (int64_t b : bytes) blocks.push_back(at::full({(b + 3) / 4}, kNaN, on_gpu(at::kFloat)));
}

int64_t bytes_of(at::IntArrayRef sizes, at::ScalarType dtype) {
  int64_t n = static_cast<int64_t>(c10::elementSize(dtype));
  for (int64_t s : sizes) n *= s;
  return n;
}

// ---- references (fp64) ----

at::Tensor ref_rms_norm(const at::Tensor& sum, const at::Tensor& weight, double eps) {
  const auto x = sum.to(at::kDouble);
  return x * (x.pow(2).mean(-1, /*keepdim=*/true) + eps).rsqrt() * weight.to(at::kDouble);
}

at::Tensor ref_rstd(const at::Tensor& sum, double eps) {
  const auto x = sum.to(at::kDouble);
  return (x.pow(2).mean(-1) + eps).rsqrt().flatten();
}

// (d normed/d sum)^T grad_normed and (d normed/d weight)^T grad_normed, by fp64 autograd of ref_rms_norm.
std::pair<at::Tensor, at::Tensor> ref_rms_norm_bwd(const at::Tensor& grad_normed, const at::Tensor& sum,
                                                   const at::Tensor& weight, double eps) {
  auto x = sum.to(at::kDouble).detach().requires_grad_(true);
  auto w = weight.to(at::kDouble).detach().requires_grad_(true);
  auto grads = torch::autograd::grad({ref_rms_norm(x, w, eps)}, {x, w}, {grad_normed.to(at::kDouble)});
  return {grads[0], grads[1]};
}

at::Tensor ref_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t offset,
                    bool inverse = false) {
  const int64_t T = x.size(1), half = x.size(3) / 2;
  const auto xd = x.to(at::kDouble);
  const auto c = cos.narrow(0, offset, T).narrow(1, 0, half).to(at::kDouble).view({1, T, 1, half});
  auto s = sin.narrow(0, offset, T).narrow(1, 0, half).to(at::kDouble).view({1, T, 1, half});
  if (inverse) s = -s;
  const auto x1 = xd.narrow(-1, 0, half), x2 = xd.narrow(-1, half, half);
  return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}

at::Tensor ref_swiglu(const at::Tensor& gate, const at::Tensor& up) {
  const auto g = gate.to(at::kDouble);
  return g * at::sigmoid(g) * up.to(at::kDouble);
}

struct Case {
  at::ScalarType dtype, wdtype;
  std::string name() const {
    return std::string(c10::toString(dtype)) + " input, " + c10::toString(wdtype) + " weight";
  }
};
const std::vector<Case> kNormCases = {
    {at::kFloat, at::kFloat}, {at::kBFloat16, at::kBFloat16}, {at::kBFloat16, at::kFloat}};

}  // namespace

TEST_CASE("Fused kernels: add_rms_norm forward and backward match an fp64 reference", "[gpu]") {
  REQUIRE(torch::cuda::is_available());
  REQUIRE(kn::available());
  at::manual_seed(11);
  const double eps = 1e-5;
  struct Shape {
    std::vector<int64_t> sizes;
    bool misaligned;
  };
  // d 100 and 2050: scalar register path for bf16; 2048, 8192: vectors in registers; 10000, 12345: the
  // two-pass loops; a 3-D input; a misaligned one.
  const std::vector<Shape> shapes = {{{37, 100}, false},  {{37, 2048}, false}, {{5, 2050}, false},
                                     {{3, 8192}, false},  {{2, 10000}, false}, {{2, 12345}, false},
                                     {{2, 19, 64}, false}, {{37, 2048}, true}};
  for (const auto& c : kNormCases) {
    for (const auto& shape : shapes) {
      for (bool with_delta : {true, false}) {
        const auto& sizes = shape.sizes;
        const int64_t d = sizes.back();
        INFO(c.name() << ", shape " << at::IntArrayRef(sizes) << (shape.misaligned ? " misaligned" : "")
                      << (with_delta ? ", with delta" : ", no delta"));
        const auto residual = random(sizes, c.dtype, 1.0, shape.misaligned);
        const auto delta = with_delta ? random(sizes, c.dtype, 1.0, shape.misaligned) : at::Tensor();
        const auto weight = (1.0 + 0.3 * random({d}, at::kFloat)).to(c.wdtype);

        poison_allocator({bytes_of(sizes, c.dtype), bytes_of(sizes, c.dtype), bytes_of({residual.numel() / d}, at::kFloat)});
        const auto [sum, normed, rstd] = kn::add_rms_norm_fwd(residual, delta, weight, eps);
        if (with_delta)
          CHECK(at::equal(sum, residual + delta));  // exactly ATen's add in the input dtype
        else
          CHECK(sum.is_same(residual));
        CHECK(normed.scalar_type() == c.dtype);
        CHECK(normed.sizes() == residual.sizes());
        CHECK(rstd.scalar_type() == at::kFloat);
        CHECK(rel_err(normed, ref_rms_norm(sum, weight, eps)) <= tolerance(c.dtype));
        CHECK(rel_err(rstd, ref_rstd(sum, eps)) <= 1e-5);

        const auto grad_normed = random(sizes, c.dtype);
        const auto extra = with_delta ? random(sizes, c.dtype) : at::Tensor();
        poison_allocator({bytes_of(sizes, c.dtype), bytes_of({d}, c.wdtype)});
        const auto [grad_sum, grad_weight] = kn::rms_norm_bwd(grad_normed, sum, rstd, weight, extra);
        auto [ref_gs, ref_gw] = ref_rms_norm_bwd(grad_normed, sum, weight, eps);
        if (with_delta) ref_gs = ref_gs + extra.to(at::kDouble);
        CHECK(grad_sum.scalar_type() == c.dtype);
        CHECK(grad_weight.scalar_type() == c.wdtype);
        CHECK(rel_err(grad_sum, ref_gs) <= tolerance(c.dtype));
        CHECK(rel_err(grad_weight, ref_gw) <= tolerance(c.dtype));
        // Fixed-order reduction: the same bits every time.
        CHECK(at::equal(kn::rms_norm_bwd(grad_normed, sum, rstd, weight, extra).second, grad_weight));

        if (c.dtype == at::kBFloat16) {  // the same (exactly upcast) inputs through the fp32 kernels
          const auto [sum32, normed32, rstd32] =
              kn::add_rms_norm_fwd(sum.to(at::kFloat), at::Tensor(), weight.to(at::kFloat), eps);
          CHECK(rel_err(normed, normed32) <= 2e-2);
          const auto [gs32, gw32] =
              kn::rms_norm_bwd(grad_normed.to(at::kFloat), sum32, rstd32, weight.to(at::kFloat),
                               with_delta ? extra.to(at::kFloat) : at::Tensor());
          CHECK(rel_err(grad_sum, gs32) <= 2e-2);
          CHECK(rel_err(grad_weight, gw32) <= 2e-2);
        }
      }
    }
  }
}

TEST_CASE("Fused kernels: add_rms_norm edge cases and input checks", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(12);
  const auto x = random({4, 64}, at::kBFloat16), w = random({64}, at::kBFloat16);
  // No rows: empty outputs, and a zero grad_weight.
  const auto empty = random({0, 64}, at::kBFloat16);
  const auto [s0, n0, r0] = kn::add_rms_norm_fwd(empty, empty, w, 1e-5);
  CHECK(n0.numel() == 0);
  CHECK(r0.numel() == 0);
  const auto [gs0, gw0] = kn::rms_norm_bwd(empty, empty, r0, w, at::Tensor());
  CHECK(gs0.numel() == 0);
  CHECK(at::equal(gw0, at::zeros_like(w)));
  // Refusals name the problem.
  CHECK_THROWS_WITH(kn::add_rms_norm_fwd(x, x.to(at::kFloat), w, 1e-5), ContainsSubstring("delta is Float"));
  CHECK_THROWS_WITH(kn::add_rms_norm_fwd(x.t(), at::Tensor(), w.narrow(0, 0, 4), 1e-5),
                    ContainsSubstring("contiguous"));
  CHECK_THROWS_WITH(kn::add_rms_norm_fwd(x, at::Tensor(), w.narrow(0, 0, 32), 1e-5),
                    ContainsSubstring("weight must have shape [64]"));
  CHECK_THROWS_WITH(kn::add_rms_norm_fwd(x.to(at::kHalf), at::Tensor(), w, 1e-5),
                    ContainsSubstring("float32 or bfloat16"));
  CHECK_THROWS_WITH(kn::add_rms_norm_fwd(x.to(at::kFloat), at::Tensor(), w, 1e-5),
                    ContainsSubstring("weight must be float32 or the input's dtype"));
}

TEST_CASE("Fused kernels: add_rms_norm autograd matches fp64 autograd of the reference", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(13);
  const double eps = 1e-6;
  for (const auto& c : kNormCases) {
    for (int64_t d : {100, 2048}) {
      for (bool with_delta : {true, false}) {
        for (bool use_sum : {true, false}) {  // an unused sum sends zeros into the backward
          INFO(c.name() << ", d " << d << (with_delta ? ", with delta" : ", no delta")
                        << (use_sum ? ", sum used" : ", sum unused"));
          const std::vector<int64_t> sizes = {3, 13, d};
          auto residual = random(sizes, c.dtype).clone().requires_grad_(true);
          auto delta = with_delta ? random(sizes, c.dtype).clone().requires_grad_(true) : at::Tensor();
          auto weight = (1.0 + 0.3 * random({d}, at::kFloat)).to(c.wdtype).requires_grad_(true);
          const auto r1 = random(sizes, c.dtype), r2 = random(sizes, c.dtype);

          auto [sum, normed] = kn::add_rms_norm(residual, delta, weight, eps);
          auto loss = (normed * r2).sum();
          if (use_sum) loss = loss + (sum * r1).sum();
          loss.backward();

          auto rd = residual.detach().to(at::kDouble).requires_grad_(true);
          auto dd = with_delta ? delta.detach().to(at::kDouble).requires_grad_(true) : at::Tensor();
          auto wd = weight.detach().to(at::kDouble).requires_grad_(true);
          const auto sd = with_delta ? rd + dd : rd;
          auto ref_loss = (ref_rms_norm(sd, wd, eps) * r2.to(at::kDouble)).sum();
          if (use_sum) ref_loss = ref_loss + (sd * r1.to(at::kDouble)).sum();
          ref_loss.backward();

          REQUIRE(residual.grad().defined());
          CHECK(rel_err(residual.grad(), rd.grad()) <= tolerance(c.dtype));
          if (with_delta) CHECK(rel_err(delta.grad(), dd.grad()) <= tolerance(c.dtype));
          CHECK(weight.grad().scalar_type() == c.wdtype);
          CHECK(rel_err(weight.grad(), wd.grad()) <= tolerance(c.dtype));
        }
      }
    }
  }
}

TEST_CASE("Fused kernels: rope forward, inverse and autograd match an fp64 reference", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(14);
  const int64_t B = 2, T = 50, H = 3, offset = 7;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t D : {64, 128, 6}) {  // 6: half of 3, not a whole vector: scalar path
      for (bool misaligned : {false, true}) {
        INFO(c10::toString(dtype) << ", D " << D << (misaligned ? ", misaligned" : ""));
        auto [cos, sin] = yt::rope_tables(D, 64, 10000.0);
        cos = cos.to(at::kCUDA);
        sin = sin.to(at::kCUDA);
        const auto x = random({B, T, H, D}, dtype, 1.0, misaligned);

        poison_allocator({bytes_of({B, T, H, D}, dtype)});
        const auto out = kn::rope_fwd(x, cos, sin, offset, false);
        CHECK(out.scalar_type() == dtype);
        CHECK(out.sizes() == x.sizes());
        CHECK(rel_err(out, ref_rope(x, cos, sin, offset)) <= tolerance(dtype));
        poison_allocator({bytes_of({B, T, H, D}, dtype)});
        const auto inv = kn::rope_fwd(x, cos, sin, offset, true);
        CHECK(rel_err(inv, ref_rope(x, cos, sin, offset, /*inverse=*/true)) <= tolerance(dtype));
        CHECK(rel_err(kn::rope_fwd(out, cos, sin, offset, true), x) <= tolerance(dtype));  // round trip
        if (dtype == at::kBFloat16)
          CHECK(rel_err(out, kn::rope_fwd(x.to(at::kFloat), cos, sin, offset, false)) <= 2e-2);

        auto xg = x.detach().clone().requires_grad_(true);
        const auto r = random({B, T, H, D}, dtype);
        (kn::rope(xg, cos, sin, offset) * r).sum().backward();
        auto xd = x.detach().to(at::kDouble).requires_grad_(true);
        (ref_rope(xd, cos, sin, offset) * r.to(at::kDouble)).sum().backward();
        CHECK(rel_err(xg.grad(), xd.grad()) <= tolerance(dtype));
      }
    }
  }
}

TEST_CASE("Fused kernels: rope agrees with the model's apply_rope and checks its positions", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(15);
  auto [cos, sin] = yt::rope_tables(64, 64, 500.0);
  cos = cos.to(at::kCUDA);
  sin = sin.to(at::kCUDA);
  const auto x = random({2, 50, 3, 64}, at::kFloat);  // [B, T, H, D]
  CHECK(rel_err(kn::rope_fwd(x, cos, sin, 0, false), yt::apply_rope(x, cos, sin, /*fused=*/false)) <= 1e-5);
  CHECK(rel_err(kn::rope_fwd(x, cos, sin, 9, false), yt::apply_rope(x, cos, sin, /*fused=*/false, 9)) <= 1e-5);
  CHECK_NOTHROW(kn::rope_fwd(x, cos, sin, 14, false));  // positions 14 .. 63
  CHECK_THROWS_WITH(kn::rope_fwd(x, cos, sin, 15, false), ContainsSubstring("outside the tables"));
  CHECK_THROWS_WITH(kn::rope_fwd(x.narrow(3, 0, 63).contiguous(), cos, sin, 0, false), ContainsSubstring("D even"));
}

TEST_CASE("Fused kernels: swiglu forward, backward and autograd match an fp64 reference", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(16);
  struct Shape {
    std::vector<int64_t> sizes;
    bool misaligned;
  };
  const std::vector<Shape> shapes = {
      {{3, 1000}, false}, {{4, 5632}, false}, {{7, 13}, false}, {{3, 1000}, true}, {{2, 3, 77}, false}};
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& shape : shapes) {
      const auto& sizes = shape.sizes;
      INFO(c10::toString(dtype) << ", shape " << at::IntArrayRef(sizes) << (shape.misaligned ? " misaligned" : ""));
      const auto gate = random(sizes, dtype, 2.0, shape.misaligned), up = random(sizes, dtype, 1.0, shape.misaligned);

      poison_allocator({bytes_of(sizes, dtype)});
      const auto out = kn::swiglu_fwd(gate, up);
      CHECK(out.scalar_type() == dtype);
      CHECK(rel_err(out, ref_swiglu(gate, up)) <= tolerance(dtype));

      const auto grad = random(sizes, dtype);
      poison_allocator({bytes_of(sizes, dtype), bytes_of(sizes, dtype)});
      const auto [grad_gate, grad_up] = kn::swiglu_bwd(grad, gate, up);
      auto gd = gate.to(at::kDouble).requires_grad_(true), ud = up.to(at::kDouble).requires_grad_(true);
      const auto ref = torch::autograd::grad({ref_swiglu(gd, ud)}, {gd, ud}, {grad.to(at::kDouble)});
      CHECK(rel_err(grad_gate, ref[0]) <= tolerance(dtype));
      CHECK(rel_err(grad_up, ref[1]) <= tolerance(dtype));

      if (dtype == at::kBFloat16) {
        CHECK(rel_err(out, kn::swiglu_fwd(gate.to(at::kFloat), up.to(at::kFloat))) <= 2e-2);
        const auto [gg32, gu32] = kn::swiglu_bwd(grad.to(at::kFloat), gate.to(at::kFloat), up.to(at::kFloat));
        CHECK(rel_err(grad_gate, gg32) <= 2e-2);
        CHECK(rel_err(grad_up, gu32) <= 2e-2);
      }

      auto ga = gate.detach().clone().requires_grad_(true), ua = up.detach().clone().requires_grad_(true);
      const auto r = random(sizes, dtype);
      (kn::swiglu(ga, ua) * r).sum().backward();
      const auto ref_w = torch::autograd::grad({ref_swiglu(gd, ud)}, {gd, ud}, {r.to(at::kDouble)});
      CHECK(rel_err(ga.grad(), ref_w[0]) <= tolerance(dtype));
      CHECK(rel_err(ua.grad(), ref_w[1]) <= tolerance(dtype));
    }
  }
}

TEST_CASE("Fused kernels: cross-entropy row stats and gradient match an fp64 reference", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(17);
  const int64_t n = 33, vocab_start = 500;
  const double scale = 0.25;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t V : {1000, 50257}) {  // 50257: rows start at any offset (head/vector/tail split)
      INFO(c10::toString(dtype) << ", V " << V);
      const auto logits = random({n, V}, dtype, 3.0);
      // Global ids over a vocabulary with 500 columns on either side of this shard; the first rows pin the
      // shard's edges: first and last column in it, the columns just outside.
      auto targets = at::randint(0, vocab_start + V + 500, {n}, on_gpu(at::kLong));
      targets.narrow(0, 0, 4).copy_(
          at::tensor({vocab_start, vocab_start + V - 1, vocab_start - 1, vocab_start + V}, at::kLong));

      auto row_max = at::full({n}, kNaN, on_gpu(at::kFloat)), sum_exp = at::full({n}, kNaN, on_gpu(at::kFloat)),
           target_logit = at::full({n}, kNaN, on_gpu(at::kFloat));
      kn::ce_row_stats(logits, targets, vocab_start, row_max, sum_exp, target_logit);

      const auto ld = logits.to(at::kDouble);
      const auto ref_max = std::get<0>(ld.max(1));
      const auto ref_sum = (ld - ref_max.unsqueeze(1)).exp().sum(1);
      const auto local = targets - vocab_start;
      const auto inside = local.ge(0).logical_and(local.lt(V));
      const auto picked = ld.gather(1, local.clamp(0, V - 1).unsqueeze(1)).squeeze(1);
      const auto ref_target = at::where(inside, picked, at::zeros_like(picked));
      CHECK(at::equal(row_max, ref_max.to(at::kFloat)));  // a max is exact
      CHECK(rel_err(sum_exp, ref_sum) <= 1e-5);            // fp32 sums of the same values in both dtypes
      CHECK(at::equal(target_logit, ref_target.to(at::kFloat)));
      CHECK(inside.narrow(0, 0, 4).to(at::kLong).sum().item<int64_t>() == 2);

      const auto lse = (ref_max + ref_sum.log()).to(at::kFloat);
      auto grad = logits.clone();
      kn::ce_grad_(grad, targets, lse, vocab_start, scale);
      const auto one_hot = at::zeros_like(ld).scatter_(1, local.clamp(0, V - 1).unsqueeze(1),
                                                        inside.to(at::kDouble).unsqueeze(1));
      const auto ref_grad = ((ld - lse.to(at::kDouble).unsqueeze(1)).exp() - one_hot) * scale;
      CHECK(grad.scalar_type() == dtype);
      CHECK(rel_err(grad, ref_grad) <= tolerance(dtype));

      if (dtype == at::kBFloat16) {
        auto grad32 = logits.to(at::kFloat);
        kn::ce_grad_(grad32, targets, lse, vocab_start, scale);
        CHECK(rel_err(grad, grad32) <= 2e-2);
      }
    }
  }

  // An empty shard: max -inf, no mass, no target.
  const auto none = random({3, 0}, at::kBFloat16);
  const auto targets = at::zeros({3}, on_gpu(at::kLong));
  auto row_max = at::full({3}, kNaN, on_gpu(at::kFloat)), sum_exp = at::full({3}, kNaN, on_gpu(at::kFloat)),
       target_logit = at::full({3}, kNaN, on_gpu(at::kFloat));
  kn::ce_row_stats(none, targets, 0, row_max, sum_exp, target_logit);
  CHECK(at::equal(row_max, at::full({3}, -std::numeric_limits<double>::infinity(), on_gpu(at::kFloat))));
  CHECK(at::equal(sum_exp, at::zeros({3}, on_gpu(at::kFloat))));
  CHECK(at::equal(target_logit, at::zeros({3}, on_gpu(at::kFloat))));
}

namespace {

at::Tensor ref_scalar_mix(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale) {
  const auto wd = w.to(at::kDouble);
  return scale * (wd[0] * a.to(at::kDouble) + wd[1] * b.to(at::kDouble));
}

// (grad_a, grad_b, grad_w) by fp64 autograd of ref_scalar_mix.
std::vector<at::Tensor> ref_scalar_mix_bwd(const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b,
                                           const at::Tensor& w, double scale) {
  auto ad = a.to(at::kDouble).detach().requires_grad_(true), bd = b.to(at::kDouble).detach().requires_grad_(true),
       wd = w.to(at::kDouble).detach().requires_grad_(true);
  return torch::autograd::grad({ref_scalar_mix(ad, bd, wd, scale)}, {ad, bd, wd}, {grad.to(at::kDouble)});
}

// t's values in like's sizes and strides.
at::Tensor in_layout_of(const at::Tensor& t, const at::Tensor& like) {
  return at::empty_strided(like.sizes(), like.strides(), like.options()).copy_(t);
}

// Fresh values of `sizes` laid out with the dimensions in reverse order (column-major): strides unlike a
// contiguous tensor's and unlike a heads-first view's.
at::Tensor random_reversed(at::IntArrayRef sizes, at::ScalarType dtype) {
  std::vector<int64_t> reversed(sizes.rbegin(), sizes.rend()), perm;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) perm.push_back(d);
  return random(reversed, dtype).permute(perm);
}

// A non-zero weight pair, fp32, with values bf16 cannot hold exactly (the kernel must not round them).
at::Tensor random_mix_weights() {
  auto w = at::randn({2}, on_gpu(at::kFloat));
  return w + at::sign(w) * 0.25 + 1e-3;
}

// a or b as the model has them ([B, H_kv, T, D] views of [B, T, H_kv, D] memory), plain contiguous ones,
// odd element counts (vector body + scalar tail), and misaligned starts (scalar path).
struct MixShape {
  std::string name;
  std::vector<int64_t> storage, perm;
  bool misaligned;
  at::Tensor make(at::ScalarType dtype) const { return random(storage, dtype, 1.0, misaligned).permute(perm); }
};
const std::vector<MixShape> kMixShapes = {
    {"[2,4,50,64] heads-first view of [2,50,4,64]", {2, 50, 4, 64}, {0, 2, 1, 3}, false},
    {"[3,2,7,10] contiguous", {3, 2, 7, 10}, {0, 1, 2, 3}, false},
    {"[1,3,7,5] heads-first view, 105 elements", {1, 7, 3, 5}, {0, 2, 1, 3}, false},
    {"[5,21] contiguous, 105 elements", {5, 21}, {0, 1}, false},
    {"[1,3,7,5] heads-first view, misaligned", {1, 7, 3, 5}, {0, 2, 1, 3}, true},
    {"[2,4,50,64] heads-first view, misaligned", {2, 50, 4, 64}, {0, 2, 1, 3}, true},
};

double mix_grad_w_tolerance(at::ScalarType dtype) { return dtype == at::kFloat ? 1e-5 : 1e-2; }

}  // namespace

TEST_CASE("Fused kernels: scalar_mix forward and backward match an fp64 reference and keep a's layout", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(18);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& shape : kMixShapes) {
      for (double scale : {35.0, 1.0}) {
        INFO(c10::toString(dtype) << ", " << shape.name << ", scale " << scale);
        const auto a = shape.make(dtype), b = shape.make(dtype);
        REQUIRE(a.strides() == b.strides());
        const auto w = random_mix_weights();
        const auto sizes = a.sizes();

        poison_allocator({bytes_of(sizes, dtype)});
        const auto out = kn::scalar_mix_fwd(a, b, w, scale);
        CHECK(out.scalar_type() == dtype);
        CHECK(out.sizes() == sizes);
        CHECK(out.strides() == a.strides());
        CHECK(rel_err(out, ref_scalar_mix(a, b, w, scale)) <= tolerance(dtype));

        // grad in a's layout, in another layout (copied into a's first), and expanded from one value (what
        // .sum().backward() sends).
        const std::vector<std::pair<std::string, at::Tensor>> grads = {
            {"grad in a's layout", in_layout_of(random(sizes, dtype), a)},
            {"grad column-major", random_reversed(sizes, dtype)},
            {"grad expanded", random({1}, dtype).reshape(std::vector<int64_t>(sizes.size(), 1)).expand(sizes)}};
        for (const auto& [grad_name, grad] : grads) {
          INFO(grad_name);
          poison_allocator({bytes_of(sizes, dtype), bytes_of(sizes, dtype), bytes_of({2}, at::kFloat)});
          const auto [grad_a, grad_b, grad_w] = kn::scalar_mix_bwd(grad, a, b, w, scale);
          const auto ref = ref_scalar_mix_bwd(grad, a, b, w, scale);
          CHECK(grad_a.scalar_type() == dtype);
          CHECK(grad_b.scalar_type() == dtype);
          CHECK(grad_a.strides() == a.strides());
          CHECK(grad_b.strides() == a.strides());
          CHECK(grad_w.scalar_type() == at::kFloat);
          CHECK(grad_w.sizes() == at::IntArrayRef({2}));
          CHECK(rel_err(grad_a, ref[0]) <= tolerance(dtype));
          CHECK(rel_err(grad_b, ref[1]) <= tolerance(dtype));
          CHECK(rel_err(grad_w, ref[2]) <= mix_grad_w_tolerance(dtype));
          // Fixed-order reduction: the same bits every time.
          CHECK(at::equal(std::get<2>(kn::scalar_mix_bwd(grad, a, b, w, scale)), grad_w));
        }
      }
    }
  }
}

TEST_CASE("Fused kernels: scalar_mix on differing or non-dense layouts, a == b, no elements, bad inputs", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(19);
  const double scale = 35.0;
  const auto w = random_mix_weights();
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    INFO(c10::toString(dtype));
    const auto heads_first = random({2, 50, 4, 64}, dtype).transpose(1, 2);
    const auto contiguous = random({2, 4, 50, 64}, dtype);
    // Two halves of one [..., 128] tensor: the same strides, but not dense.
    const auto wide = random({2, 4, 50, 128}, dtype);
    const auto sliced_a = wide.narrow(-1, 0, 64), sliced_b = wide.narrow(-1, 64, 64);
    const std::vector<std::pair<std::string, std::pair<at::Tensor, at::Tensor>>> pairs = {
        {"a heads-first, b contiguous", {heads_first, contiguous}},
        {"a and b sliced", {sliced_a, sliced_b}},
        {"a contiguous, b sliced", {contiguous, sliced_b}},
        {"a == b", {heads_first, heads_first}}};
    for (const auto& [name, ab] : pairs) {
      INFO(name);
      const auto& [a, b] = ab;
      const auto out = kn::scalar_mix_fwd(a, b, w, scale);
      CHECK(out.sizes() == a.sizes());
      CHECK(rel_err(out, ref_scalar_mix(a, b, w, scale)) <= tolerance(dtype));
      const auto grad = random_reversed(a.sizes(), dtype);
      const auto [grad_a, grad_b, grad_w] = kn::scalar_mix_bwd(grad, a, b, w, scale);
      const auto ref = ref_scalar_mix_bwd(grad, a, b, w, scale);
      CHECK(rel_err(grad_a, ref[0]) <= tolerance(dtype));
      CHECK(rel_err(grad_b, ref[1]) <= tolerance(dtype));
      CHECK(rel_err(grad_w, ref[2]) <= mix_grad_w_tolerance(dtype));
      CHECK(at::equal(std::get<2>(kn::scalar_mix_bwd(grad, a, b, w, scale)), grad_w));
    }
  }

  // No elements: an empty output and a zero grad_w.
  const auto empty = random({2, 0, 3, 8}, at::kBFloat16).transpose(1, 2);
  CHECK(kn::scalar_mix_fwd(empty, empty, w, scale).numel() == 0);
  const auto [ga0, gb0, gw0] = kn::scalar_mix_bwd(empty, empty, empty, w, scale);
  CHECK(ga0.numel() == 0);
  CHECK(gb0.numel() == 0);
  CHECK(at::equal(gw0, at::zeros({2}, on_gpu(at::kFloat))));

  // Refusals name the problem.
  const auto x = random({2, 3, 4, 8}, at::kBFloat16);
  CHECK_THROWS_WITH(kn::scalar_mix_fwd(x, x.to(at::kFloat), w, scale), ContainsSubstring("b is Float"));
  CHECK_THROWS_WITH(kn::scalar_mix_fwd(x, x.narrow(3, 0, 4), w, scale), ContainsSubstring("b has shape"));
  CHECK_THROWS_WITH(kn::scalar_mix_fwd(x, x, w.to(at::kBFloat16), scale), ContainsSubstring("w must be float32"));
  CHECK_THROWS_WITH(kn::scalar_mix_fwd(x, x, at::ones({3}, on_gpu(at::kFloat)), scale),
                    ContainsSubstring("w must have 2 elements"));
  CHECK_THROWS_WITH(kn::scalar_mix_fwd(x.to(at::kHalf), x.to(at::kHalf), w, scale),
                    ContainsSubstring("float32 or bfloat16"));
  CHECK_THROWS_WITH(kn::scalar_mix_bwd(x.to(at::kFloat), x, x, w, scale), ContainsSubstring("grad is Float"));
}

TEST_CASE("Fused kernels: scalar_mix autograd matches fp64 autograd of the reference", "[gpu]") {
  REQUIRE(kn::available());
  at::manual_seed(20);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (bool learnable : {true, false}) {  // a parameter, or a buffer that does not require grad
      for (double scale : {35.0, 1.0}) {
        INFO(c10::toString(dtype) << (learnable ? ", learnable w" : ", fixed w") << ", scale " << scale);
        // Leaves in the model's layout: clone() keeps a dense tensor's strides.
        auto a = random({2, 50, 4, 64}, dtype).transpose(1, 2).clone().requires_grad_(true);
        auto b = random({2, 50, 4, 64}, dtype).transpose(1, 2).clone().requires_grad_(true);
        REQUIRE(a.strides() == random({2, 50, 4, 64}, dtype).transpose(1, 2).strides());
        auto w = random_mix_weights().requires_grad_(learnable);
        const auto r = random({2, 4, 50, 64}, dtype);  // contiguous: not a's layout

        const auto out = kn::scalar_mix(a, b, w, scale);
        CHECK(out.strides() == a.strides());
        (out * r).sum().backward();

        auto ad = a.detach().to(at::kDouble).requires_grad_(true), bd = b.detach().to(at::kDouble).requires_grad_(true),
             wd = w.detach().to(at::kDouble).requires_grad_(true);
        (ref_scalar_mix(ad, bd, wd, scale) * r.to(at::kDouble)).sum().backward();

        REQUIRE(a.grad().defined());
        REQUIRE(b.grad().defined());
        CHECK(rel_err(a.grad(), ad.grad()) <= tolerance(dtype));
        CHECK(rel_err(b.grad(), bd.grad()) <= tolerance(dtype));
        if (learnable) {
          REQUIRE(w.grad().defined());
          CHECK(w.grad().scalar_type() == at::kFloat);
          CHECK(rel_err(w.grad(), wd.grad()) <= mix_grad_w_tolerance(dtype));
        } else {
          CHECK_FALSE(w.grad().defined());
        }
      }
    }
  }

  // The same tensor as both inputs: its gradient is the sum of both.
  auto x = random({2, 50, 4, 64}, at::kFloat).transpose(1, 2).clone().requires_grad_(true);
  auto w = random_mix_weights().requires_grad_(true);
  const auto r = random({2, 4, 50, 64}, at::kFloat);
  (kn::scalar_mix(x, x, w, 35.0) * r).sum().backward();
  auto xd = x.detach().to(at::kDouble).requires_grad_(true), wd = w.detach().to(at::kDouble).requires_grad_(true);
  (ref_scalar_mix(xd, xd, wd, 35.0) * r.to(at::kDouble)).sum().backward();
  CHECK(rel_err(x.grad(), xd.grad()) <= 1e-5);
  CHECK(rel_err(w.grad(), wd.grad()) <= 1e-5);
}
