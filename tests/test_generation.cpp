// Inference with the KV cache against the training forward (an independent path: full sequences,
// no cache): logits at every position, greedy tokens, early exit, padding, and the cache's size
// against the KV plan's figure, for every architecture.
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/config.h"
#include "yocotron/decode_graph.h"
#include "yocotron/decoder.h"
#include "yocotron/generation.h"
#include "yocotron/kv_cache.h"
#include "yocotron/kv_plan.h"

using namespace yt;

namespace {

ModelConfig gen_config(const std::string& arch) {
  ModelConfig m = test::small_model(arch, 4);
  m.max_seq_len = 32;
  m.init_std = 0.08;  // attention far from uniform, so misplaced keys change the logits
  m.rope_theta = 500.0;
  return m;
}

at::Tensor random_tokens(const ModelConfig& m, int64_t batch, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, m.vocab_size, {batch, T}, gen, at::kLong);
}

// A model after a few AdamW steps on random tokens: mixing weights and norms away from their init.
Decoder trained_model(const ModelConfig& m) {
  Decoder d(m);
  d->init_weights(11);
  torch::optim::AdamW opt(d->parameters(), torch::optim::AdamWOptions(3e-2));
  for (int step = 0; step < 4; ++step) {
    auto tokens = random_tokens(m, 2, 17, 100 + step);
    opt.zero_grad();
    d->loss(tokens.narrow(1, 0, 16), tokens.narrow(1, 1, 16)).backward();
    opt.step();
  }
  return d;
}

KvCache cache_for(const Decoder& d, int64_t batch, int64_t capacity, std::vector<int64_t> pad = {}) {
  return KvCache(d->plan(), d->config().head_dim(), 1, batch, capacity, at::TensorOptions().dtype(at::kFloat), pad);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Greedy continuation by full forwards over the growing sequence: the reference.
std::vector<int64_t> greedy_by_full_forward(Decoder& d, std::vector<int64_t> seq, int64_t n) {
  torch::NoGradGuard g;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    auto logits = d->forward(at::tensor(seq, at::kLong).view({1, -1}));
    int64_t next = logits[0][-1].argmax().item<int64_t>();
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

}  // namespace

TEST_CASE("prefill + token-by-token decode equals the full forward at every position, every architecture", "[generate]") {
  for (const auto& arch : architecture_names()) {
    for (bool trained : {false, true}) {
      INFO(arch << (trained ? " after 4 AdamW steps" : " at init"));
      ModelConfig m = gen_config(arch);
      Decoder d = trained ? trained_model(m) : Decoder(m);
      if (!trained) d->init_weights(5);
      torch::NoGradGuard g;
      const int64_t B = 2, P = 7, T = 20;
      auto tokens = random_tokens(m, B, T, 42);
      auto full = d->forward(tokens);  // [B, T, V]

      KvCache cache = cache_for(d, B, T);
      auto prefill = d->forward_cached(tokens.narrow(1, 0, P), cache, /*all_logits=*/true);
      CHECK(max_diff(prefill, full.narrow(1, 0, P)) <= 1e-5);
      CHECK(cache.length() == P);
      for (int64_t t = P; t < T; ++t) {
        auto step = d->forward_cached(tokens.narrow(1, t, 1), cache);  // [B, V]
        CHECK(cache.length() == t + 1);  // one slot per decoded token
        CHECK(max_diff(step, full.select(1, t)) <= 1e-5);
      }

      // A prompt fed in two chunks (queries continuing a non-empty cache under a causal mask).
      KvCache chunked = cache_for(d, B, T);
      d->forward_cached(tokens.narrow(1, 0, 5), chunked, true);
      auto second = d->forward_cached(tokens.narrow(1, 5, 9), chunked, true);
      CHECK(max_diff(second, full.narrow(1, 5, 9)) <= 1e-5);

      // Early exit changes nothing about the next-token logits.
      KvCache a = cache_for(d, B, T), b = cache_for(d, B, T);
      auto with_exit = d->forward_cached(tokens.narrow(1, 0, 12), a, false, /*early_exit=*/true);
      auto without = d->forward_cached(tokens.narrow(1, 0, 12), b, false, false);
      CHECK(max_diff(with_exit, without) <= 1e-5);
      CHECK(max_diff(with_exit, full.select(1, 11)) <= 1e-5);
      // ... nor what the next decode step sees in the cache.
      CHECK(max_diff(d->forward_cached(tokens.narrow(1, 12, 1), a), full.select(1, 12)) <= 1e-5);
    }
  }
}

TEST_CASE("early exit starts at the first layer that stores no K/V", "[generate]") {
  CHECK(Decoder(gen_config("transformer"))->early_exit_layer() == 4);
  CHECK(Decoder(gen_config("yoco"))->early_exit_layer() == 2);
  CHECK(Decoder(gen_config("yocopp"))->early_exit_layer() == 2);
  CHECK(Decoder(gen_config("fusedkv"))->early_exit_layer() == 2);
  CHECK(Decoder(gen_config("cla2"))->early_exit_layer() == 3);  // layer 4 reuses layer 3's
  CHECK(Decoder(gen_config("skipv1"))->early_exit_layer() == 4);
  for (const char* arch : {"yoco_swa", "yoco_gret", "yocou"}) CHECK(Decoder(gen_config(arch))->early_exit_layer() == 2);
}

TEST_CASE("cache bytes equal the plan's bytes per token for every architecture", "[generate]") {
  for (const auto& arch : architecture_names()) {
    INFO(arch);
    ModelConfig m = gen_config(arch);
    Decoder d(m);
    const int64_t per_token = d->plan().kv_cache_bytes_per_token(m.head_dim(), 4);  // fp32 cache
    const int64_t constant = d->plan().kv_cache_constant_bytes(m.head_dim(), m.n_heads, 4);
    KvCache cache = cache_for(d, 3, 10);
    CHECK(cache.bytes() == 3 * (10 * per_token + constant));
    // The original YOCO family by hand: one global K^, V^ per token (2 x 2 KV heads x 8 x 4 bytes),
    // plus per sequence 2 self-decoder layers' windows of W = 4 (x 2 loops for yocou) or their
    // fp32 8x8 retention states for 4 heads.
    if (arch == "yoco_swa" || arch == "yoco_gret" || arch == "yocou") CHECK(per_token == 2 * 2 * 8 * 4);
    if (arch == "yoco_swa") CHECK(constant == 2 * 4 * 2 * 2 * 8 * 4);
    if (arch == "yocou") CHECK(constant == 2 * 2 * 4 * 2 * 2 * 8 * 4);
    if (arch == "yoco_gret") CHECK(constant == 2 * 4 * 8 * 8 * 4);
    if (arch == "yoco_swa" || arch == "yoco_gret" || arch == "yocou") continue;
    // The same figure by hand for the transformer: 2 (K, V) x layers x kv heads x head dim x 4 bytes.
    if (arch == "transformer") CHECK(per_token == 2 * 4 * 2 * 8 * 4);
    if (arch == "yoco" || arch == "yocopp") CHECK(per_token == 2 * 2 * 2 * 8 * 4);
  }
}

TEST_CASE("greedy generation with the cache gives the tokens of repeated full forwards", "[generate]") {
  for (const auto& arch : architecture_names()) {
    INFO(arch);
    ModelConfig m = gen_config(arch);
    Decoder d = trained_model(m);
    std::vector<int64_t> prompt{3, 17, 9, 41, 8};
    GenerationOptions o;
    o.max_new_tokens = 12;
    o.sampling.temperature = 0;
    int steps = 0;
    auto r = generate(d, {prompt}, o, [&](const std::vector<int64_t>& chosen) {
      REQUIRE(chosen.size() == 1);
      ++steps;
    });
    CHECK(steps == 12);
    CHECK(r.tokens[0] == greedy_by_full_forward(d, prompt, 12));
    CHECK(r.decode_tokens == 11);
    CHECK(r.kv_cache_bytes == (5 + 12) * d->plan().kv_cache_bytes_per_token(m.head_dim(), 4) +
                                  d->plan().kv_cache_constant_bytes(m.head_dim(), m.n_heads, 4));
  }
}

TEST_CASE("prompts of different lengths in one batch get the tokens each gets alone", "[generate]") {
  for (const auto& arch : architecture_names()) {
    INFO(arch);
    ModelConfig m = gen_config(arch);
    Decoder d = trained_model(m);
    std::vector<std::vector<int64_t>> prompts{{4, 8, 15, 16, 23, 42, 7, 1}, {5}, {30, 2, 11}};
    GenerationOptions o;
    o.max_new_tokens = 10;
    o.sampling.temperature = 0;
    auto together = generate(d, prompts, o);
    for (size_t b = 0; b < prompts.size(); ++b) CHECK(together.tokens[b] == generate(d, {prompts[b]}, o).tokens[0]);

    // The logits too: a padded batch against one sequence alone.
    torch::NoGradGuard g;
    KvCache padded = cache_for(d, 2, 12, {5, 0}), alone = cache_for(d, 1, 12);
    auto batch = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 0, 30, 2, 11, 4, 8, 15, 16, 23, 42, 7, 1}, at::kLong).view({2, 8});
    auto lp = d->forward_cached(batch, padded, true);
    auto la = d->forward_cached(batch.narrow(0, 0, 1).narrow(1, 5, 3), alone, true);
    CHECK(max_diff(lp[0].narrow(0, 5, 3), la[0]) <= 1e-5);
    auto next = at::tensor(std::vector<int64_t>{9, 9}, at::kLong).view({2, 1});
    CHECK(max_diff(d->forward_cached(next, padded)[0], d->forward_cached(next.narrow(0, 0, 1), alone)[0]) <= 1e-5);
  }
}

TEST_CASE("a decode step addressed from the device (the CUDA-graph step) equals forward_cached, padded batches too", "[generate]") {
  for (const auto& arch : architecture_names()) {
    INFO(arch);
    ModelConfig m = gen_config(arch);
    Decoder d = trained_model(m);
    if (d->plan().has_global_kv()) {  // the original YOCO family decodes through forward_cached only
      KvCache c = cache_for(d, 1, 4);
      CHECK_THROWS_WITH(d->forward_decode_at(at::zeros({1, 1}, at::kLong), c, at::zeros({1}, at::kLong)),
                        ContainsSubstring("decodes through forward_cached only"));
      DecodeStepper stepper(d, c, true);
      CHECK_FALSE(stepper.uses_graph());
      continue;
    }
    torch::NoGradGuard g;
    // Two copies of one padded prompt batch: one decoded the usual way, one slot-addressed over the
    // whole capacity under a mask (slots past the length hold zeros, as a fresh cache does).
    KvCache usual = cache_for(d, 2, 16, {3, 0}), at_slot = cache_for(d, 2, 16, {3, 0});
    auto prompt = at::tensor(std::vector<int64_t>{0, 0, 0, 4, 8, 30, 2, 11, 4, 8}, at::kLong).view({2, 5});
    d->forward_cached(prompt, usual);
    d->forward_cached(prompt, at_slot);
    auto tokens = random_tokens(m, 2, 8, 77);
    for (int64_t i = 0; i < 8; ++i) {
      auto next = tokens.narrow(1, i, 1);
      auto slot = at::full({1}, at_slot.length(), at::kLong);
      auto expected = d->forward_cached(next, usual);
      auto got = d->forward_decode_at(next, at_slot, slot);
      at_slot.advance(1);
      CHECK(max_diff(got, expected) <= 1e-5);
    }
    // The stepper is that step (on the CPU it runs forward_cached; on a GPU test_gpu.cpp replays it).
    KvCache stepped = cache_for(d, 2, 16, {3, 0});
    d->forward_cached(prompt, stepped);
    DecodeStepper stepper(d, stepped, /*use_graph=*/true);
    CHECK_FALSE(stepper.uses_graph());  // no graphs on the CPU
    CHECK(max_diff(stepper.step(tokens.narrow(1, 0, 1)), d->forward_decode_at(tokens.narrow(1, 0, 1), at_slot,
                                                                              at::full({1}, 5, at::kLong))) <= 1e-5);
    CHECK(stepped.length() == 6);
  }
}

TEST_CASE("an end-of-sequence token stops that sequence only", "[generate]") {
  ModelConfig m = gen_config("yocopp");
  Decoder d = trained_model(m);
  GenerationOptions o;
  o.max_new_tokens = 8;
  o.sampling.temperature = 0;
  auto free_run = generate(d, {{1, 2, 3}, {7, 7}}, o);
  o.eos_id = free_run.tokens[0][2];  // the first sequence's third token
  auto stopped = generate(d, {{1, 2, 3}, {7, 7}}, o);
  auto first_eos = std::find(free_run.tokens[0].begin(), free_run.tokens[0].end(), o.eos_id) - free_run.tokens[0].begin();
  CHECK(stopped.tokens[0] == std::vector<int64_t>(free_run.tokens[0].begin(), free_run.tokens[0].begin() + first_eos + 1));
  auto second_eos = std::find(free_run.tokens[1].begin(), free_run.tokens[1].end(), o.eos_id) - free_run.tokens[1].begin();
  CHECK(static_cast<int64_t>(stopped.tokens[1].size()) == std::min<int64_t>(8, second_eos + 1));
}

TEST_CASE("sampling: a seed repeats, top-k and top-p keep only the allowed tokens", "[generate]") {
  // logits for 6 tokens with probabilities 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125
  auto logits = at::log(at::tensor({0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125})).to(at::kFloat).view({1, 6}).repeat({400, 1});
  SamplingOptions greedy;
  greedy.temperature = 0;
  auto gen = at::detail::createCPUGenerator(1);
  CHECK((choose_next_tokens(logits, greedy, gen) == 0).all().item<bool>());

  SamplingOptions top_k;
  top_k.top_k = 2;
  auto picks = choose_next_tokens(logits, top_k, gen);
  CHECK((picks <= 1).all().item<bool>());
  CHECK((picks == 1).any().item<bool>());

  SamplingOptions top_p;
  top_p.top_p = 0.8;  // 0.5 + 0.25 < 0.8, so the third token (mass before it 0.75) is kept too
  picks = choose_next_tokens(logits, top_p, gen);
  CHECK((picks <= 2).all().item<bool>());
  CHECK((picks == 2).any().item<bool>());

  SamplingOptions plain;
  auto g1 = at::detail::createCPUGenerator(9), g2 = at::detail::createCPUGenerator(9);
  CHECK(at::equal(choose_next_tokens(logits, plain, g1), choose_next_tokens(logits, plain, g2)));
  // Unfiltered sampling follows the distribution: token 0 about half the time (400 draws: ±0.1 is >4 sigma).
  double share = (choose_next_tokens(logits, plain, g1) == 0).to(at::kFloat).mean().item<double>();
  CHECK(std::abs(share - 0.5) < 0.1);

  // A vocabulary limit drops the ids at and above it, even the most likely one.
  auto reversed = logits.flip({-1});  // token 5 is now the likeliest
  SamplingOptions limited;
  limited.vocab_limit = 4;
  picks = choose_next_tokens(reversed, limited, gen);
  CHECK((picks <= 3).all().item<bool>());
  CHECK((picks == 3).any().item<bool>());
  limited.temperature = 0;
  CHECK((choose_next_tokens(reversed, limited, gen) == 3).all().item<bool>());

  // A vanishing temperature is greedy, not a NaN (every score / 1e-300 would overflow).
  SamplingOptions cold;
  cold.temperature = 1e-300;
  CHECK((choose_next_tokens(reversed, cold, gen) == reversed.argmax(-1)).all().item<bool>());
}

TEST_CASE("generate rejects empty prompts and prompts that do not fit max_seq_len", "[generate]") {
  Decoder d(gen_config("transformer"));
  GenerationOptions o;
  o.max_new_tokens = 10;
  CHECK_THROWS_WITH(generate(d, {{}}, o), ContainsSubstring("empty prompt"));
  CHECK_THROWS_WITH(generate(d, {std::vector<int64_t>(25, 1)}, o), ContainsSubstring("model.max_seq_len=32"));
}

TEST_CASE("bench --part decode and prefill on the CPU: KV bytes from the plan, then compare --inference draws them", "[generate]") {
  auto dir = test::temp_dir("bench_inference");
  std::string lines;
  for (const char* arch : {"transformer", "yocopp", "yoco_swa", "yoco_gret", "yocou"}) {
    INFO(arch);
    auto decode = test::run_yocotron(std::string("bench --config ") + test::source_dir() + "/recipes/tiny/" + arch +
                                     ".yaml --part decode --lengths 12,20 --batch 3");
    REQUIRE(decode.exit_code == 0);
    auto j = nlohmann::json::parse(decode.out);
    ModelConfig m = load_config(test::source_dir() + "/recipes/tiny/" + std::string(arch) + ".yaml").model;
    const int64_t per_token = make_kv_plan(m).kv_cache_bytes_per_token(m.head_dim(), 4);  // fp32 on the CPU
    // Windows and retention states (original YOCO family): a constant per sequence.
    const int64_t constant = make_kv_plan(m).kv_cache_constant_bytes(m.head_dim(), m.n_heads, 4);
    CHECK(j["kv_bytes_per_token"] == per_token);
    CHECK(j["kv_constant_bytes_per_sequence"] == constant);
    REQUIRE(j["results"].size() == 2);
    CHECK(j["results"][0]["kv_cache_bytes"] == 3 * ((5 + 12) * per_token + constant));
    CHECK(j["results"][1]["kv_cache_bytes"] == 3 * ((5 + 20) * per_token + constant));
    CHECK(j["results"][1]["tokens_per_s"].get<double>() > 0);
    auto prefill = test::run_yocotron(std::string("bench --config ") + test::source_dir() + "/recipes/tiny/" + arch +
                                      ".yaml --part prefill --lengths 16,32 --batch 1 --repeats 1");
    REQUIRE(prefill.exit_code == 0);
    CHECK(nlohmann::json::parse(prefill.out)["results"].size() == 2);
    lines += decode.out + prefill.out;
  }
  test::write_file(dir / "inference.jsonl", lines);
  auto drawn = test::run_yocotron("compare --inference " + (dir / "inference.jsonl").string() + " --out " + (dir / "out").string());
  REQUIRE(drawn.exit_code == 0);
  for (const char* f : {"prefill.svg", "inference.md", "inference.csv"}) CHECK(std::filesystem::exists(dir / "out" / f));
  CHECK_THAT(test::read_file(dir / "out" / "inference.md"), ContainsSubstring("| yocopp | decode | 20 | 3 |"));
  // Bad input: a bench line of another part is skipped, a line that is not JSON is named by file and line.
  test::write_file(dir / "bad.jsonl", lines + "{oops\n");
  auto bad = test::run_yocotron("compare --inference " + (dir / "bad.jsonl").string() + " --out " + (dir / "o2").string());
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, ContainsSubstring("bad.jsonl:11: not a bench prefill/decode result"));
  auto usage = test::run_yocotron("bench --config " + test::source_dir() + "/recipes/tiny/yocopp.yaml --part decode --batch 0");
  CHECK(usage.exit_code == 2);
}
