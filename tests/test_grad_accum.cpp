// train.grad_accum_dtype=bf16: micro-step gradients summed in the bf16 gradient buffer itself (no fp32
// accumulator), the update reading them in fp32 through a bucket-sized scratch buffer. Checked on CPU
// tensors through the plain-ops update (LibTorch computes in bf16 on the CPU too), in one process
// and under mpirun with data parallelism, ZeRO-1 and the overlapped reduction.
#include <cmath>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "yocotron/mesh.h"
#include "yocotron/optimizer.h"
#include "yocotron/train_step.h"

using namespace yt;

namespace {

TrainConfig train_config(const std::string& accum) {
  TrainConfig t;
  t.lr = 1e-3;
  t.weight_decay = 0.1;
  t.grad_clip = 1.0;
  t.grad_accum_dtype = accum;
  return t;
}

Decoder model(const ModelConfig& m) {
  Decoder d(m);
  d->init_weights(1);
  return d;
}

// Micro-batches of [2, 13] tokens (12 inputs + targets), the same sequence for every caller.
std::vector<at::Tensor> batches(int n) {
  auto gen = at::detail::createCPUGenerator(77);
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(at::randint(0, 50, {2, 13}, gen, at::kLong));
  return out;
}

double max_abs_diff(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  double worst = 0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  return worst;
}

double mean_abs_diff(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  double sum = 0, n = 0;
  for (const auto& [name, t] : a) sum += (t - b.at(name)).abs().sum().item<double>(), n += static_cast<double>(t.numel());
  return sum / n;
}

// Concatenated fp32 gradients the update reads: the accumulator, or the bf16 gradients themselves.
at::Tensor update_grads(FlatAdamW& opt) {
  std::vector<at::Tensor> parts;
  for (auto& g : opt.groups()) parts.push_back(g.grad_acc.defined() ? g.grad_acc : g.grads.to(at::kFloat));
  return at::cat(parts);
}

}  // namespace

TEST_CASE("bf16 gradient accumulation: no fp32 accumulator, same step as fp32 accumulation to bf16 tolerance", "[optim]") {
  auto m = test::small_model("yocopp");
  Decoder a = model(m), b = model(m);
  TrainConfig t32 = train_config("fp32"), t16 = train_config("bf16");
  FlatAdamW oa(a, t32, at::kBFloat16), ob(b, t16, at::kBFloat16);
  int bf16_groups = 0;
  for (const auto& g : oa.groups())
    if (g.dtype == at::kBFloat16) CHECK(g.grad_acc.defined());
  for (const auto& g : ob.groups()) {
    CHECK(!g.grad_acc.defined());  // no fp32 accumulator at all
    bf16_groups += g.dtype == at::kBFloat16;
  }
  CHECK(bf16_groups >= 1);
  TrainStep sa(a, oa, t32, at::kCPU), sb(b, ob, t16, at::kCPU);
  auto mb = batches(2);
  for (int step = 0; step < 2; ++step) {
    size_t ia = 0, ib = 0;
    sa.run([&] { return mb[ia++]; }, 2, t32.lr);
    sb.run([&] { return mb[ib++]; }, 2, t16.lr);
    // The gradients the update read, and their norm, agree to bf16 precision.
    at::Tensor ga = update_grads(oa), gb = update_grads(ob);
    double rel = ((ga - gb).norm() / ga.norm()).item<double>();
    INFO("step " << step + 1 << ": relative gradient difference " << rel);
    CHECK(rel <= 1e-2);
    CHECK(sb.last_grad_norm.item<double>() == Approx(sa.last_grad_norm.item<double>()).epsilon(1e-2));
  }
  // Weights after two updates: Adam's steps are about lr in size whatever the gradient's size, so
  // bf16-rounded gradients move a weight differently only where a gradient is close to zero (a sign
  // may flip there): the largest difference is bounded by a few lr, the mean is far below one.
  auto wa = oa.tensors("master"), wb = ob.tensors("master");
  INFO("max |dw| " << max_abs_diff(wa, wb) << ", mean |dw| " << mean_abs_diff(wa, wb));
  CHECK(max_abs_diff(wa, wb) <= 4 * t32.lr);
  CHECK(mean_abs_diff(wa, wb) <= 0.02 * t32.lr);
  CHECK(oa.adam_steps() == 2);
  CHECK(ob.adam_steps() == 2);
}

TEST_CASE("bf16 gradient accumulation: given the same gradients, the scratch-buffer update is the fp32 one", "[optim]") {
  for (bool zero1 : {false, true}) {
    INFO("zero1 " << zero1);
    auto m = test::small_model("fusedkv");
    Decoder a = model(m), b = model(m);
    OptimizerLayout layout;
    layout.zero1 = zero1;  // one rank: its slice is the whole bucket, but the ZeRO-1 views are used
    layout.bucket_mb = 0.004;  // several buckets
    TrainConfig t32 = train_config("fp32"), t16 = train_config("bf16");
    FlatAdamW oa(a, t32, at::kBFloat16, layout), ob(b, t16, at::kBFloat16, layout);
    REQUIRE(oa.groups().front().buckets.size() > 2);
    auto gen = at::detail::createCPUGenerator(5);
    for (int step = 0; step < 3; ++step) {
      oa.zero_grad();
      ob.zero_grad();
      for (size_t i = 0; i < oa.groups().size(); ++i) {
        at::Tensor grads = at::randn({oa.groups()[i].grads.numel()}, gen).mul_(1e-2);
        oa.groups()[i].grads.copy_(grads);
        ob.groups()[i].grads.copy_(grads);
      }
      oa.fold_micro_step(true);
      ob.fold_micro_step(true);  // nothing to fold
      at::Tensor clip = at::full({}, 0.5), ok = at::zeros({});
      CHECK(ob.groups().front().grads.abs().sum().item<double>() > 0);
      double na = 0, nb = 0;
      for (const auto& g : oa.groups()) na += oa.grad_norm_sq(g).item<double>();
      for (const auto& g : ob.groups()) nb += ob.grad_norm_sq(g).item<double>();
      CHECK(nb == Approx(na).epsilon(1e-5));
      oa.step(1e-3, clip, ok);
      ob.step(1e-3, clip, ok);
    }
    for (const char* which : {"master", "exp_avg", "exp_avg_sq"}) {
      INFO(which);
      CHECK(max_abs_diff(oa.tensors(which), ob.tensors(which)) == 0.0);
    }
    // A step flagged non-finite changes nothing.
    auto before = ob.tensors("master");
    for (auto& [k, v] : before) v = v.clone();
    ob.step(1e-3, at::ones({}), at::ones({}));
    CHECK(max_abs_diff(before, ob.tensors("master")) == 0.0);
    CHECK(ob.adam_steps() == 3);
  }
}

TEST_CASE("fp32 training ignores train.grad_accum_dtype: bitwise the same step", "[optim]") {
  auto m = test::small_model("yocopp");
  Decoder a = model(m), b = model(m);
  TrainConfig t32 = train_config("fp32"), t16 = train_config("bf16");
  FlatAdamW oa(a, t32, at::kFloat), ob(b, t16, at::kFloat);
  TrainStep sa(a, oa, t32, at::kCPU), sb(b, ob, t16, at::kCPU);
  auto mb = batches(2);
  for (int step = 0; step < 2; ++step) {
    size_t ia = 0, ib = 0;
    sa.run([&] { return mb[ia++]; }, 2, t32.lr);
    sb.run([&] { return mb[ib++]; }, 2, t16.lr);
  }
  CHECK(max_abs_diff(oa.tensors("master"), ob.tensors("master")) == 0.0);
  CHECK(sa.last_grad_norm.item<double>() == sb.last_grad_norm.item<double>());
}

TEST_CASE("bf16 gradient accumulation under data parallelism: DP, ZeRO-1, overlap (MPI, bf16 on the CPU)", "[mpi]") {
  auto mesh = make_mesh(1, /*gpu=*/false, -1);
  REQUIRE(mesh->size(MeshDim::dp) >= 2);
  const int dp = mesh->size(MeshDim::dp), accum = 2;
  Config cfg;
  cfg.model = test::small_model("yocopp");
  cfg.train = train_config("bf16");
  cfg.parallel.bucket_mb = 0.004;  // several buckets, reduced while backward runs
  auto mb = batches(dp * accum);   // the global batch; rank r takes micro-batches r*accum ...

  // Reference: one process over the whole global batch, fp32 accumulation.
  Decoder ref = model(cfg.model);
  TrainConfig t32 = train_config("fp32");
  FlatAdamW oref(ref, t32, at::kBFloat16);
  TrainStep sref(ref, oref, t32, at::kCPU);
  std::vector<double> ref_norms;
  for (int step = 0; step < 2; ++step) {
    size_t i = 0;
    sref.run([&] { return mb[i++]; }, dp * accum, t32.lr);
    ref_norms.push_back(sref.last_grad_norm.item<double>());
  }
  auto want = oref.tensors("master");

  for (bool zero1 : {false, true}) {
    for (bool overlap : {false, true}) {
      INFO("zero1 " << zero1 << ", overlap " << overlap);
      cfg.parallel.zero1 = zero1;
      Decoder d = model(cfg.model);
      FlatAdamW opt(d, cfg.train, at::kBFloat16, optimizer_layout(cfg, *mesh));
      for (const auto& g : opt.groups()) CHECK(!g.grad_acc.defined());
      CHECK(opt.layout().zero1 == zero1);
      TrainStep s(d, opt, cfg.train, at::kCPU, mesh.get(), overlap);
      for (int step = 0; step < 2; ++step) {
        size_t i = static_cast<size_t>(mesh->coord(MeshDim::dp) * accum);
        s.run([&] { return mb[i++]; }, accum, cfg.train.lr);
        CHECK(s.last_grad_norm.item<double>() == Approx(ref_norms[step]).epsilon(1e-2));
      }
      auto got = opt.tensors("master");  // a collective with ZeRO-1: every rank gathers
      INFO("max |dw| " << max_abs_diff(got, want) << ", mean |dw| " << mean_abs_diff(got, want));
      CHECK(max_abs_diff(got, want) <= 4 * cfg.train.lr);
      CHECK(mean_abs_diff(got, want) <= 0.02 * cfg.train.lr);
      // Every rank holds the same weights.
      for (const auto& [name, t] : got) {
        at::Tensor hi = t.contiguous().clone(), lo = -t.contiguous();
        mesh->group(MeshDim::dp)->all_reduce(hi, ReduceOp::Max);
        mesh->group(MeshDim::dp)->all_reduce(lo, ReduceOp::Max);
        CHECK(torch::equal(hi, t));
        CHECK(torch::equal(-lo, t));
      }
    }
  }
}
