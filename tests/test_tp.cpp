// Run under mpirun (ctest: -np 2 for [mpi], -np 4 for [mpi4]): the MPI communicator, and tensor
// parallelism against a single-process model computed on every rank as the reference.
#include <cmath>

#include "catch.hpp"
#include "yocotron/comm.h"
#include "yocotron/decoder.h"
#include "yocotron/mesh.h"
#include "yocotron/mpi_env.h"
#include "yocotron/str.h"
#include "yocotron/tp_ops.h"

using namespace yt;

namespace {

ModelConfig tp_model(const std::string& arch) {
  ModelConfig m;
  m.arch = arch;
  m.n_layers = 4;
  m.d_model = 32;
  m.n_heads = 4;
  m.n_kv_heads = 4;  // skipv1 needs an even number of KV heads per rank
  m.d_ffn = 48;
  m.vocab_size = 51;  // not a multiple of the TP size: the vocabulary is padded
  m.max_seq_len = 16;
  m.init_std = 0.08;
  m.attention = "math";
  m.yoco.window = 3;  // shorter than the sequences, so the window matters
  m.yoco.loops = 2;
  m.yoco.chunk = 4;
  return m;
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / (b.abs().max() + 1e-12)).item<double>();
}

// Every parameter's gradient of the TP model, assembled as the train step sees it (head-shared
// weights summed over the group, shards gathered), against the single-process model's.
void check_gradients(Decoder& par, Decoder& ref, const Mesh& mesh, const TpContext& ctx) {
  auto want = ref->named_parameters();
  const auto& specs = par->shard_specs();
  for (auto& p : par->named_parameters()) {
    const ShardSpec& s = specs.at(p.key());
    at::Tensor g = p.value().grad().clone();
    if (s.tp_partial_grad) mesh.tp_group->all_reduce(g);
    if (s.split_dim >= 0) g = tp::gather_shards(g.contiguous(), s.split_dim, ctx).narrow(s.split_dim, 0, s.global_shape[s.split_dim]);
    INFO(p.key());
    CHECK(rel_diff(g, want[p.key()].grad()) <= 1e-5);
  }
}

}  // namespace

TEST_CASE("MPI communicator: all-reduce, all-gather, reduce-scatter, broadcast", "[mpi]") {
  auto& env = MpiEnv::get();
  auto c = make_mpi_communicator(MPI_COMM_WORLD, "world");
  const int r = c->rank(), n = c->size();
  REQUIRE(n == env.size());
  auto t = at::full({5}, static_cast<double>(r + 1));
  c->all_reduce(t);
  CHECK(torch::equal(t, at::full({5}, n * (n + 1) / 2.0)));
  auto mx = at::full({1}, static_cast<double>(r));
  c->all_reduce(mx, ReduceOp::Max);
  CHECK(mx.item<double>() == n - 1);
  auto out = at::zeros({3 * n});
  c->all_gather(at::full({3}, static_cast<float>(r)), out);
  for (int k = 0; k < n; ++k) CHECK(torch::equal(out.narrow(0, 3 * k, 3), at::full({3}, static_cast<float>(k))));
  auto in_place = at::zeros({2 * n});
  in_place.narrow(0, 2 * r, 2).fill_(r + 10);
  c->all_gather(in_place.narrow(0, 2 * r, 2), in_place);
  for (int k = 0; k < n; ++k) CHECK(in_place[2 * k].item<float>() == k + 10);
  auto rs_in = at::arange(2 * n, at::kFloat) * static_cast<float>(r + 1);
  auto rs_out = at::zeros({2});
  c->reduce_scatter(rs_in, rs_out);
  float factor = n * (n + 1) / 2.0f;
  CHECK(rs_out[0].item<float>() == 2 * r * factor);
  CHECK(rs_out[1].item<float>() == (2 * r + 1) * factor);
  auto b = at::full({4}, static_cast<float>(r));
  c->broadcast(b, n - 1);
  CHECK(torch::equal(b, at::full({4}, static_cast<float>(n - 1))));
  auto a = at::ones({7});
  auto w = c->all_reduce_async(a);
  w->wait();
  CHECK(a[3].item<float>() == n);
}

TEST_CASE("TP=2 equals TP=1: logits, loss and every parameter's gradient (vocabulary padded)", "[mpi]") {
  auto mesh = make_mesh(2, /*gpu=*/false, -1);
  REQUIRE(mesh->tp == 2);
  for (const char* arch : {"transformer", "yocopp", "fusedkv", "skipv1", "resformer", "cla2", "yoco_swa", "yoco_gret", "yocou"}) {
    INFO(arch);
    ModelConfig m = tp_model(arch);
    m.resformer.learnable = true;
    Decoder ref(m);
    ref->init_weights(3);
    TpContext ctx{mesh->tp_rank, mesh->tp, mesh->tp_group.get()};
    Decoder par(m, ctx);
    par->init_weights(3);
    {  // mixing weights away from their init, identically on both
      torch::NoGradGuard g;
      for (auto* d : {&ref, &par})
        for (auto& p : (*d)->named_parameters())
          if (ends_with(p.key(), "_mix")) p.value().add_(0.3);
    }
    auto tokens = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(5), at::kLong);
    auto targets = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(6), at::kLong);
    auto logits = tp::gather_shards(par->forward(tokens), 2, ctx).narrow(2, 0, m.vocab_size);
    CHECK(rel_diff(logits, ref->forward(tokens)) <= 1e-5);
    auto loss_par = par->loss(tokens, targets), loss_ref = ref->loss(tokens, targets);
    CHECK(std::abs(loss_par.item<double>() - loss_ref.item<double>()) <= 1e-5 * std::abs(loss_ref.item<double>()));
    loss_par.backward();
    loss_ref.backward();
    check_gradients(par, ref, *mesh, ctx);
  }
}

TEST_CASE("TP=2 with the chunked vocabulary-parallel loss and recomputation equals TP=1 with full logits", "[mpi]") {
  auto mesh = make_mesh(2, /*gpu=*/false, -1);
  TpContext ctx{mesh->tp_rank, mesh->tp, mesh->tp_group.get()};
  for (const char* arch : {"transformer", "yocopp", "fusedkv", "yoco_gret", "yocou"}) {
    for (ExecOptions exec : {ExecOptions{Recompute::None, 5}, ExecOptions{Recompute::Selective, 7},
                             ExecOptions{Recompute::Full, 4096}}) {
      INFO(arch << ", recompute " << static_cast<int>(exec.recompute) << ", loss chunk " << exec.loss_chunk_tokens);
      ModelConfig m = tp_model(arch);
      Decoder ref(m);
      ref->init_weights(3);
      Decoder par(m, ctx);
      par->init_weights(3);
      par->set_exec_options(exec);
      auto tokens = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(5), at::kLong);
      auto targets = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(6), at::kLong);
      auto loss_par = par->loss(tokens, targets), loss_ref = ref->loss(tokens, targets);
      CHECK(std::abs(loss_par.item<double>() - loss_ref.item<double>()) <= 1e-5 * std::abs(loss_ref.item<double>()));
      loss_par.backward();
      loss_ref.backward();
      check_gradients(par, ref, *mesh, ctx);
    }
  }
}

TEST_CASE("TP=2: the chunked vocabulary-parallel loss equals the full-logits vocabulary-parallel loss (1e-6)", "[mpi]") {
  auto mesh = make_mesh(2, /*gpu=*/false, -1);
  TpContext ctx{mesh->tp_rank, mesh->tp, mesh->tp_group.get()};
  for (const char* arch : {"transformer", "yocopp"}) {
    ModelConfig m = tp_model(arch);
    auto tokens = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(5), at::kLong);
    auto targets = at::randint(0, m.vocab_size, {3, 9}, at::detail::createCPUGenerator(6), at::kLong);
    auto run = [&](int64_t chunk) {
      Decoder d(m, ctx);
      d->init_weights(3);
      d->set_exec_options({Recompute::None, chunk});
      auto loss = d->loss(tokens, targets);
      loss.backward();
      return std::make_pair(loss.item<double>(), d);
    };
    auto [want_loss, full] = run(0);
    for (int64_t chunk : {4, 27}) {
      INFO(arch << ", chunk " << chunk);
      auto [loss, chunked] = run(chunk);
      CHECK(std::abs(loss - want_loss) <= 1e-6 * want_loss);
      auto want = full->named_parameters();
      double diff_sq = 0, ref_sq = 0;
      for (auto& p : chunked->named_parameters()) {
        diff_sq += (p.value().grad() - want[p.key()].grad()).pow(2).sum().item<double>();
        ref_sq += want[p.key()].grad().pow(2).sum().item<double>();
        INFO(p.key());
        CHECK(rel_diff(p.value().grad(), want[p.key()].grad()) <= 1e-5);
      }
      CHECK(std::sqrt(diff_sq / ref_sq) <= 1e-6);
    }
  }
}
