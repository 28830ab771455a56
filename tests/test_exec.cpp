// How the model executes must not change what it computes: activation recomputation (bitwise on
// the CPU), the chunked head + cross entropy (against the full-logits loss), for every architecture.
#include <cmath>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "yocotron/decoder.h"
#include "yocotron/kv_plan.h"
#include "yocotron/linear_cross_entropy.h"
#include "yocotron/str.h"

using namespace yt;

namespace {

ModelConfig exec_model(const std::string& arch) {
  ModelConfig m = test::small_model(arch, 4);
  m.init_std = 0.08;
  m.resformer.learnable = true;
  return m;
}

// Norms away from 1 and mixing weights away from their init, so every path carries signal.
Decoder make(const ModelConfig& m, const ExecOptions& exec) {
  Decoder d(m);
  d->init_weights(11);
  torch::NoGradGuard g;
  auto gen = at::detail::createCPUGenerator(3);
  for (auto& p : d->named_parameters())
    if (ends_with(p.key(), "norm.weight") || ends_with(p.key(), "_mix")) p.value().add_(at::normal(0.0, 0.2, p.value().sizes(), gen));
  d->set_exec_options(exec);
  return d;
}

struct Result {
  at::Tensor loss;
  std::map<std::string, at::Tensor> grads;
};

// Two micro-steps accumulated, as the trainer does with gradient accumulation.
Result loss_and_grads(Decoder& d, const ModelConfig& m) {
  Result r;
  for (uint64_t micro = 0; micro < 2; ++micro) {
    auto gen = at::detail::createCPUGenerator(40 + micro);
    auto batch = at::randint(0, m.vocab_size, {3, 10}, gen, at::kLong);
    auto loss = d->loss(batch.narrow(1, 0, 9), batch.narrow(1, 1, 9));
    (loss * 0.5).backward();
    r.loss = micro == 0 ? loss.detach() : r.loss + loss.detach();
  }
  for (auto& p : d->named_parameters())
    r.grads[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : at::zeros_like(p.value());
  return r;
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / (b.abs().max() + 1e-30)).item<double>();
}

}  // namespace

TEST_CASE("train.recompute selective and full give bitwise the same loss and gradients (all architectures)", "[model]") {
  for (const auto& arch : architecture_names()) {
    ModelConfig m = exec_model(arch);
    for (int64_t chunk : {0, 7}) {
      Decoder base = make(m, {Recompute::None, chunk});
      Result want = loss_and_grads(base, m);
      for (Recompute mode : {Recompute::Selective, Recompute::Full}) {
        INFO(arch << ", loss_chunk_tokens " << chunk << ", mode " << static_cast<int>(mode));
        Decoder d = make(m, {mode, chunk});
        Result got = loss_and_grads(d, m);
        CHECK(torch::equal(got.loss, want.loss));
        REQUIRE(got.grads.size() == want.grads.size());
        // A looped block (yocou) under full recomputation adds each loop's weight gradient to .grad
        // as its segment finishes; without it autograd sums the loops first. Over two micro-steps
        // the same terms are then added in another association: equal to rounding, not bit for bit.
        const bool looped = mode == Recompute::Full && make_kv_plan(m).loops > 1;
        for (const auto& [name, g] : want.grads) {
          INFO(name);
          CHECK(g.abs().sum().item<double>() > 0);  // every parameter is reached
          if (looped) CHECK(rel(got.grads.at(name), g) <= 1e-6);
          else CHECK(torch::equal(got.grads.at(name), g));
        }
      }
    }
  }
}

TEST_CASE("chunked head + cross entropy equals the full-logits loss and gradients (fp32 <= 1e-6)", "[model]") {
  for (const auto& arch : {"transformer", "yocopp", "fusedkv", "skipv1"}) {
    ModelConfig m = exec_model(arch);
    Decoder full = make(m, {Recompute::None, 0});
    Result want = loss_and_grads(full, m);
    for (int64_t chunk : {1, 7, 27, 4096}) {  // 27 rows per micro-batch: uneven, exact and one chunk
      INFO(arch << ", chunk " << chunk);
      Decoder d = make(m, {Recompute::None, chunk});
      Result got = loss_and_grads(d, m);
      CHECK(std::abs(got.loss.item<double>() - want.loss.item<double>()) <= 1e-6 * want.loss.item<double>());
      // All gradients as one vector within 1e-6; each tensor within 1e-5 (a mixing scalar's
      // gradient is one long fp32 sum whose rounding alone reaches ~1e-6 of its value).
      double diff_sq = 0, ref_sq = 0;
      for (const auto& [name, g] : want.grads) {
        INFO(name);
        CHECK(rel(got.grads.at(name), g) <= 1e-5);
        diff_sq += (got.grads.at(name) - g).pow(2).sum().item<double>();
        ref_sq += g.pow(2).sum().item<double>();
      }
      CHECK(std::sqrt(diff_sq / ref_sq) <= 1e-6);
    }
    // Evaluation (no gradients wanted) computes the same loss.
    Decoder d = make(m, {Recompute::None, 5});
    torch::NoGradGuard no_grad;
    auto tokens = at::randint(0, m.vocab_size, {2, 9}, at::detail::createCPUGenerator(9), at::kLong);
    auto targets = at::randint(0, m.vocab_size, {2, 9}, at::detail::createCPUGenerator(10), at::kLong);
    CHECK(std::abs(d->loss(tokens, targets).item<double>() - full->loss(tokens, targets).item<double>()) <= 1e-6);
  }
}

TEST_CASE("linear_cross_entropy against a naive double-precision loss; padding rows get no gradient", "[model]") {
  auto gen = at::detail::createCPUGenerator(5);
  const int64_t N = 13, d = 6, V = 11, valid = 9;
  auto h = at::normal(0.0, 1.0, {N, d}, gen, at::TensorOptions().dtype(at::kFloat)).requires_grad_();
  auto w = at::normal(0.0, 1.0, {V, d}, gen, at::TensorOptions().dtype(at::kFloat)).requires_grad_();
  auto t = at::randint(0, valid, {N}, gen, at::kLong);
  LinearCrossEntropyOptions o;
  o.chunk_tokens = 4;
  o.vocab_valid = valid;
  auto loss = linear_cross_entropy(h, w, t, o);
  loss.backward();
  // Naive: log-sum-exp over the valid columns, in double.
  auto hd = h.detach().to(at::kDouble).requires_grad_(), wd = w.detach().to(at::kDouble).requires_grad_();
  auto logits = hd.mm(wd.narrow(0, 0, valid).t());
  auto ref = (logits.logsumexp(-1) - logits.gather(-1, t.unsqueeze(-1)).squeeze(-1)).mean();
  ref.backward();
  CHECK(std::abs(loss.item<double>() - ref.item<double>()) <= 1e-6);
  CHECK(rel(h.grad().to(at::kDouble), hd.grad()) <= 1e-6);
  CHECK(rel(w.grad().to(at::kDouble), wd.grad()) <= 1e-6);
  CHECK(torch::equal(w.grad().narrow(0, valid, V - valid), at::zeros({V - valid, d})));
}
