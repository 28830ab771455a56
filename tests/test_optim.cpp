// The optimizer, schedule, checkpoint and metrics pieces of training, against independent references.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/checkpoint.h"
#include "yocotron/metrics.h"
#include "yocotron/optimizer.h"
#include "yocotron/schedule.h"
#include "yocotron/str.h"
#include "yocotron/trainer.h"

using namespace yt;
namespace fs = std::filesystem;

TEST_CASE("flat AdamW matches LibTorch's torch::optim::AdamW with decay and no-decay groups", "[optim]") {
  TrainConfig tc;
  tc.lr = 3e-3;
  tc.beta1 = 0.9;
  tc.beta2 = 0.95;
  tc.eps = 1e-8;
  tc.weight_decay = 0.1;
  auto m = test::small_model("yocopp");
  Decoder ours(m), ref(m);
  ours->init_weights(1);
  ref->init_weights(1);
  FlatAdamW opt(ours, tc, at::kFloat);
  // The reference: LibTorch's AdamW with the same split into decayed and undecayed parameters.
  std::vector<at::Tensor> decay, no_decay;
  for (auto& p : ref->named_parameters())
    (ours->shard_specs().at(p.key()).decay ? decay : no_decay).push_back(p.value());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(tc.lr).betas({tc.beta1, tc.beta2}).eps(tc.eps).weight_decay(tc.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(tc.lr).betas({tc.beta1, tc.beta2}).eps(tc.eps).weight_decay(0.0)));
  torch::optim::AdamW reference(groups);
  CHECK(!no_decay.empty());  // norms and the YOCO++ scalars (model.yocopp.weight_decay=false)
  auto tokens = at::randint(0, 50, {3, 12}, at::kLong);
  auto targets = at::randint(0, 50, {3, 12}, at::kLong);
  auto one = at::ones({}), zero = at::zeros({});
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    ours->loss(tokens, targets).backward();
    opt.fold_micro_step(true);
    opt.step(tc.lr, one, zero);
    reference.zero_grad();
    ref->loss(tokens, targets).backward();
    reference.step();
  }
  auto want = ref->named_parameters();
  for (auto& p : ours->named_parameters()) {
    INFO(p.key());
    CHECK((p.value() - want[p.key()]).abs().max().item<double>() <= 2e-6);
  }
  CHECK(opt.adam_steps() == 5);
  // A step flagged non-finite changes nothing, not even Adam's step count.
  auto before = opt.tensors("master").at("layers.1.self_attn.k_mix").clone();
  opt.zero_grad();
  ours->loss(tokens, targets).backward();
  opt.fold_micro_step(true);
  opt.step(tc.lr, one, at::ones({}));
  CHECK(torch::equal(before, opt.tensors("master").at("layers.1.self_attn.k_mix")));
  CHECK(opt.adam_steps() == 5);
}

TEST_CASE("gradients accumulated over micro-steps equal the full-batch gradient", "[optim]") {
  auto m = test::small_model("transformer");
  Decoder d(m);
  FlatAdamW opt(d, TrainConfig{}, at::kFloat);
  auto tokens = at::randint(0, 50, {4, 10}, at::kLong);
  opt.zero_grad();
  d->loss(tokens, tokens).backward();
  auto full = opt.groups()[0].fp32_grads().clone();
  opt.zero_grad();
  for (int i = 0; i < 2; ++i) {
    (d->loss(tokens.narrow(0, 2 * i, 2), tokens.narrow(0, 2 * i, 2)) / 2.0).backward();
    opt.fold_micro_step(i == 0);
  }
  CHECK((opt.groups()[0].fp32_grads() - full).abs().max().item<double>() <= 1e-6);
  // The parameters' .grad are views into the flat buffer.
  auto& q = d->named_parameters()["layers.0.self_attn.q_proj.weight"];
  CHECK(q.grad().data_ptr() >= opt.groups()[0].grads.data_ptr());
}

TEST_CASE("learning-rate schedule: warmup then cosine/linear/constant to min_lr", "[optim]") {
  TrainConfig t;
  t.lr = 1.0;
  t.min_lr = 0.1;
  t.warmup_steps = 10;
  t.steps = 110;
  CHECK(lr_at(t, 0) == Approx(0.1));
  CHECK(lr_at(t, 9) == Approx(1.0));
  CHECK(lr_at(t, 10) == Approx(1.0));
  CHECK(lr_at(t, 60) == Approx(0.1 + 0.9 * 0.5));  // half way: cos = 0
  CHECK(lr_at(t, 110) == Approx(0.1));
  CHECK(lr_at(t, 35) == Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.25))));
  t.schedule = "linear";
  CHECK(lr_at(t, 60) == Approx(0.55));
  t.schedule = "constant";
  CHECK(lr_at(t, 100) == Approx(1.0));
}

TEST_CASE("checkpoints: round trip, verification, keep_last, same-step rewrite", "[optim]") {
  auto root = test::temp_dir("ckpt") / "checkpoints";
  CheckpointTensors t;
  t.model["w"] = at::randn({4, 5});
  t.exp_avg["w"] = at::randn({4, 5});
  t.exp_avg_sq["w"] = at::rand({4, 5});
  t.rng["cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  for (int64_t step : {10, 20, 30}) {
    CheckpointState st;
    st.step = step;
    st.tokens = step * 100;
    st.consumed_samples = static_cast<uint64_t>(step) * 4;
    st.adam_steps = static_cast<double>(step);
    st.config_yaml = "model:\n  arch: yoco\n";
    write_checkpoint(root.string(), st, t, 2);
  }
  auto all = list_checkpoints(root.string());
  REQUIRE(all.size() == 2);  // keep_last
  CHECK(fs::path(all[0]).filename() == "step_00000030");
  CHECK(test::read_file(root / "latest") == "step_00000030\n");
  auto loaded = load_checkpoint(all[0]);
  CHECK(loaded.state.step == 30);
  CHECK(loaded.state.consumed_samples == 120);
  CHECK(torch::equal(loaded.tensors.model.at("w"), t.model.at("w")));
  CHECK(torch::equal(loaded.tensors.exp_avg_sq.at("w"), t.exp_avg_sq.at("w")));
  CHECK(loaded.state.config_yaml == "model:\n  arch: yoco\n");

  std::string raw = test::read_file(fs::path(all[0]) / "optimizer-tp00-of-01.safetensors");
  raw[raw.size() - 3] ^= 1;
  test::write_file(fs::path(all[0]) / "optimizer-tp00-of-01.safetensors", raw);
  CHECK_THROWS_WITH(verify_checkpoint(all[0]), ContainsSubstring("step_00000030/optimizer-tp00-of-01.safetensors: checksum mismatch"));
  std::vector<std::string> skipped;
  CHECK(fs::path(*newest_valid_checkpoint(root.string(), &skipped)).filename() == "step_00000020");
  CHECK(skipped.size() == 1);
  fs::remove(fs::path(all[1]) / "state.json");
  CHECK_THROWS_WITH(verify_checkpoint(all[1]), ContainsSubstring("step_00000020/state.json: missing"));
  CHECK(!newest_valid_checkpoint(root.string(), &skipped));

  CheckpointState again;  // rewriting an existing step replaces it whole
  again.step = 30;
  write_checkpoint(root.string(), again, t, 2);
  CHECK_NOTHROW(verify_checkpoint((root / "step_00000030").string()));
}

TEST_CASE("metrics files keep one curve across a resume", "[optim]") {
  auto run = test::temp_dir("metrics");
  {
    MetricsFiles m(run.string(), 0);
    for (int64_t s = 1; s <= 5; ++s) m.train({s, s * 10, 1.0 / s, 0.1, 1.0, 100.0, std::nullopt, 0.5, 0, 1.0});
    m.eval({4, 40, 2.5});
  }
  test::write_file(run / "metrics.jsonl", test::read_file(run / "metrics.jsonl") + "{\"step\": 6, \"lo");  // torn line
  {
    MetricsFiles m(run.string(), 3);  // resumed from a checkpoint at step 3
    m.train({4, 40, 0.3333333333333333, 0.1, 1.0, 100.0, 0.42, 0.5, 0, 1.0});
  }
  std::vector<nlohmann::json> rows;
  std::istringstream in(test::read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 4);
  CHECK(rows[3]["step"] == 4);
  CHECK(rows[3]["loss"].get<double>() == 0.3333333333333333);  // full precision
  CHECK(rows[3]["mfu"].get<double>() == 0.42);
  CHECK(rows[0]["mfu"].is_null());
  std::string csv = test::read_file(run / "metrics.csv");
  CHECK(starts_with(csv, "step,tokens,loss,lr,grad_norm,tokens_per_s,mfu,mem_gb,skipped,val_loss,val_ppl,elapsed_s\n"));
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 5);
}

TEST_CASE("resume compatibility: shape changes are errors, schedule changes warnings", "[optim]") {
  Config a, b;
  b.model.n_layers = 6;
  b.model.attention = "math";
  b.train.steps = 999;
  b.parallel.tp = 2;
  std::vector<std::string> errors, warnings;
  compare_for_resume(a, b, errors, warnings);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], ContainsSubstring("model.n_layers=6 but the checkpoint was trained with model.n_layers=4"));
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], ContainsSubstring("train.steps changed since the checkpoint: 200 -> 999"));
}
