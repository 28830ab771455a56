// Multiple-choice evaluation in-process: lm-eval 0.4.9.1's rules one by one on hand-written items
// (a toy tokenizer makes the token boundaries visible), the task readers on small raw-format files,
// and the batched, prefix-sharing scorer against one plain forward per request.
#include <cmath>
#include <map>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/config.h"
#include "yocotron/eval_metrics.h"
#include "yocotron/eval_scorer.h"
#include "yocotron/eval_tasks.h"
#include "yocotron/str.h"

using namespace yt;
namespace fs = std::filesystem;

namespace {

// A toy tokenizer over characters, with one merge: "th" is a single token (id 100). Ids are the
// byte values otherwise, so a continuation's tokens can depend on the context's last character.
std::vector<int64_t> toy_encode(const std::string& s) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "th") == 0) {
      ids.push_back(100);
      ++i;
    } else {
      ids.push_back(static_cast<unsigned char>(s[i]));
    }
  }
  return ids;
}

std::vector<int64_t> ids(const std::string& s) { return toy_encode(s); }

std::string write_task(const std::string& name, const std::string& text) {
  static fs::path dir = test::temp_dir("eval-tasks");
  fs::path p = dir / name;
  fs::create_directories(p.parent_path());
  test::write_file(p, text);
  return p.string();
}

// What the scorer must match: one full forward over lm-eval's input for the request,
// (context + continuation)[-(L+1):][:-1], summing log-softmax at the continuation's positions.
double naive_loglik(Decoder& model, const TokenizedRequest& r) {
  torch::NoGradGuard g;
  std::vector<int64_t> all = r.context;
  all.insert(all.end(), r.continuation.begin(), r.continuation.end());
  const size_t L = static_cast<size_t>(model->config().max_seq_len);
  if (all.size() > L + 1) all.erase(all.begin(), all.end() - static_cast<long>(L + 1));
  std::vector<int64_t> inp(all.begin(), all.end() - 1);
  at::Tensor logp = model->forward(at::tensor(inp).view({1, -1})).log_softmax(-1)[0];  // [n, V]
  const int64_t n = static_cast<int64_t>(inp.size()), k = static_cast<int64_t>(r.continuation.size());
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += logp[n - k + j][r.continuation[static_cast<size_t>(j)]].item<double>();
  return sum;
}

}  // namespace

TEST_CASE("eval: lm-eval's request encoding (trailing space, empty context, token difference)", "[eval]") {
  // The choice gets lm-eval's target_delimiter " " in front.
  McItem item{{"Q: cats"}, {"purr", "bark"}, 0};
  CHECK(request_for(item, 1).context == "Q: cats");
  CHECK(request_for(item, 1).continuation == " bark");

  // Trailing whitespace of the context moves to the continuation.
  TokenizedRequest t = encode_request({"Answer: ", "x"}, toy_encode, 1);
  CHECK(t.context == ids("Answer:"));
  CHECK(t.continuation == ids(" x"));
  TokenizedRequest nl = encode_request({"A\n \n", " b"}, toy_encode, 1);
  CHECK(nl.context == ids("A"));
  CHECK(nl.continuation == ids("\n \n b"));

  // The continuation's tokens are the whole's tokens past as many as the context has: here the
  // context ends in "t" and the continuation starts with "h", which merge into one token, so the
  // whole is 4 tokens, the context 3, and the continuation only the last one (lm-eval's rule: the
  // merged token counts as context), not encode("he") = {'h', 'e'}.
  TokenizedRequest m = encode_request({"bat", "he"}, toy_encode, 1);
  CHECK(m.context == ids("bat"));
  CHECK(toy_encode("bathe") == std::vector<int64_t>{'b', 'a', 100, 'e'});
  CHECK(m.continuation == std::vector<int64_t>{'e'});

  // An empty context is the prefix token (BOS), the continuation encoded alone.
  TokenizedRequest e = encode_request({"", " the"}, toy_encode, 1);
  CHECK(e.context == std::vector<int64_t>{1});
  CHECK(e.continuation == ids(" the"));
}

TEST_CASE("eval: acc and acc_norm (characters, first maximum), stderr of the mean", "[eval]") {
  McTask task{"t", "t.jsonl", {}};
  // Item 0: the short choice has the higher sum; per character the long one wins.
  task.items.push_back({{"c"}, {"a", "bbbbbbbbbb"}, 1});
  // Item 1: equal sums, the first wins (numpy argmax); "é" is one character for acc_norm.
  task.items.push_back({{"c"}, {"xy", "zw"}, 0});
  // Item 2: multibyte characters count once each: -3/3 beats -2/1.
  task.items.push_back({{"c"}, {"q", "éé\xC3\xA9"}, 1});
  std::vector<std::vector<double>> lls = {{-2.0, -5.0}, {-1.0, -1.0}, {-2.0, -3.0}};
  TaskResult r = summarize_task(task, lls);
  CHECK(r.n == 3);
  CHECK(r.acc == Approx(1.0 / 3));  // item 1 only
  REQUIRE(r.acc_norm);
  CHECK(*r.acc_norm == Approx(1.0));  // items 0, 1 and 2
  CHECK(utf8_length("éé\xC3\xA9") == 3);
  // Sample stddev (n - 1) of [0, 1, 0] over sqrt(3).
  const double mean = 1.0 / 3, var = (2 * mean * mean + (1 - mean) * (1 - mean)) / 2;
  CHECK(r.acc_stderr == Approx(std::sqrt(var / 3)));
  CHECK(*r.acc_norm_stderr == Approx(0.0));

  // The WinoGrande form reports acc only.
  McTask wino{"w", "w.jsonl", {{{"The cup", "The jug"}, {"was full."}, 1}}};
  CHECK(!wino.has_acc_norm());
  CHECK(request_for(wino.items[0], 1).context == "The jug");
  CHECK(request_for(wino.items[0], 1).continuation == " was full.");
  TaskResult w = summarize_task(wino, {{-3.0, -1.0}});
  CHECK(w.acc == 1.0);
  CHECK(!w.acc_norm);
}

TEST_CASE("eval: the generic jsonl forms and their errors", "[eval]") {
  McTask t = load_task(write_task("g.jsonl", "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 1}\n\n"
                                             "{\"contexts\": [\"x\", \"y\"], \"continuation\": \"z\", \"gold\": 0}\n"),
                       "", 0);
  REQUIRE(t.items.size() == 2);
  CHECK(t.name == "g");
  CHECK(t.items[0].continuations == std::vector<std::string>{"b", "c"});
  CHECK(t.items[0].gold == 1);
  CHECK(t.items[1].multiple_contexts());
  CHECK(load_task(t.source, "", 1).items.size() == 1);  // --limit

  auto fails = [](const std::string& file, const std::string& says) {
    try {
      load_task(file, "", 0);
      FAIL("no error for " << file);
    } catch (const ConfigError& e) {
      CHECK(e.problems().size() == 1);
      CHECK_THAT(e.problems()[0], ContainsSubstring(says));
    }
  };
  const std::string ok = "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 0}\n";
  std::string bad = write_task("bad.jsonl", ok + "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 0\n");
  fails(bad, bad + ":2: not a JSON line");
  std::string range = write_task("range.jsonl", ok + ok + "{\"context\": \"A\", \"choices\": [\"b\", \"c\"], \"gold\": 2}\n");
  fails(range, range + ":3: gold index 2 is out of range for 2 choices");
  std::string type = write_task("type.jsonl", "{\"context\": 3, \"choices\": [\"b\", \"c\"], \"gold\": 0}\n");
  fails(type, type + ":1: \"context\" is not a string");
  std::string csv = write_task("table.csv", "context,choice1,choice2,gold\nA,b,c,0\n");
  fails(csv, csv + ":1: not a JSON line");
  std::string one = write_task("one.jsonl", "{\"context\": \"A\", \"choices\": [\"b\"], \"gold\": 0}\n");
  fails(one, one + ":1: an item needs at least 2 choices, found 1");
  fails(write_task("empty.jsonl", "\n"), "no items");
  fails("hellaswg", "unknown task 'hellaswg'");
  fails("hellaswag", "task hellaswag: its file is not under .");
}

TEST_CASE("eval: HellaSwag's raw file and its text preprocessing", "[eval]") {
  CHECK(hellaswag_preprocess("  A [title] B [step] C  D ") == "A. B C D");
  CHECK(hellaswag_preprocess("x [a] [b] y") == "x  y");  // "x   y", then Python's replace("  ", " ") is one pass
  CHECK(hellaswag_preprocess("a   b") == "a  b");
  CHECK(python_capitalize("then HE runs") == "Then he runs");
  fs::path data = test::temp_dir("eval-hellaswag");
  test::write_file(data / "hellaswag_val.jsonl",
                   "{\"ind\": 24, \"activity_label\": \"Roof shingle removal\", \"ctx_a\": \"A man is sitting on a roof.\", "
                   "\"ctx_b\": \"HE\", \"ctx\": \"A man is sitting on a roof. he\", \"split\": \"val\", \"split_type\": \"indomain\", "
                   "\"label\": 3, \"endings\": [\"is using wrap to wrap a pair of skis.\", \"is ripping level tiles off.\", "
                   "\"is holding a rubik's cube.\", \"starts pulling up roofing [title] on a roof.\"], \"source_id\": \"x\"}\n"
                   "{\"activity_label\": \"Home [step]\", \"ctx_a\": \"Put it \", \"ctx_b\": \"\", \"label\": \"0\", "
                   "\"endings\": [\"a\", \"b\", \"c\", \"d\"]}\n");
  McTask t = load_task("hellaswag", data.string(), 0);
  REQUIRE(t.items.size() == 2);
  CHECK(t.items[0].contexts[0] == "Roof shingle removal: A man is sitting on a roof. He");
  CHECK(t.items[0].continuations[3] == "starts pulling up roofing. on a roof.");
  CHECK(t.items[0].gold == 3);
  CHECK(t.items[1].contexts[0] == "Home : Put it");  // "[step]" removed, "  " -> " ", stripped
  CHECK(t.items[1].gold == 0);
}

TEST_CASE("eval: ARC (labels A-E or 1-4), OpenBookQA, PIQA and WinoGrande raw files", "[eval]") {
  fs::path data = test::temp_dir("eval-raw");
  test::write_file(data / "ARC-Easy-Test.jsonl",
                   "{\"id\": \"a\", \"question\": {\"stem\": \"Which is a gas?\", \"choices\": [{\"text\": \"ice\", \"label\": \"A\"}, "
                   "{\"text\": \"steam\", \"label\": \"B\"}, {\"text\": \"rock\", \"label\": \"C\"}]}, \"answerKey\": \"B\"}\n"
                   "{\"id\": \"b\", \"question\": {\"stem\": \"Pick\", \"choices\": [{\"text\": \"one\", \"label\": \"1\"}, "
                   "{\"text\": \"two\", \"label\": \"2\"}, {\"text\": \"three\", \"label\": \"3\"}, {\"text\": \"four\", \"label\": \"4\"}]}, "
                   "\"answerKey\": \"4\"}\n"
                   "{\"id\": \"c\", \"question\": \"HF row\", \"choices\": {\"text\": [\"p\", \"q\"], \"label\": [\"A\", \"B\"]}, "
                   "\"answerKey\": \"A\"}\n");
  McTask arc = load_task("arc_easy", data.string(), 0);
  REQUIRE(arc.items.size() == 3);
  CHECK(arc.items[0].contexts[0] == "Question: Which is a gas?\nAnswer:");
  CHECK(arc.items[0].gold == 1);
  CHECK(arc.items[1].gold == 3);
  CHECK(arc.items[1].continuations[3] == "four");
  CHECK(arc.items[2].contexts[0] == "Question: HF row\nAnswer:");
  std::string wrong = write_task("arc-bad.jsonl", "{\"question\": {\"stem\": \"s\", \"choices\": [{\"text\": \"a\", \"label\": \"A\"}, "
                                                  "{\"text\": \"b\", \"label\": \"B\"}]}, \"answerKey\": \"E\"}\n");
  CHECK_THROWS_WITH(load_task(wrong, "", 0), ContainsSubstring(wrong + ":1: answerKey 'E' is not one of the choice labels (A, B)"));

  test::write_file(data / "openbookqa" / "test.jsonl",
                   "{\"id\": \"7-980\", \"question\": {\"stem\": \"The sun is responsible for\", \"choices\": [{\"text\": \"puppies\", "
                   "\"label\": \"A\"}, {\"text\": \"plants sprouting\", \"label\": \"B\"}]}, \"answerKey\": \"B\"}\n");
  McTask obqa = load_task("openbookqa", data.string(), 0);
  CHECK(obqa.items[0].contexts[0] == "The sun is responsible for");
  CHECK(obqa.items[0].gold == 1);

  test::write_file(data / "piqa" / "valid.jsonl", "{\"goal\": \"Open a jar\", \"sol1\": \"twist\", \"sol2\": \"sing\"}\n"
                                                  "{\"goal\": \"Dry hair\", \"sol1\": \"water\", \"sol2\": \"towel\"}\n");
  test::write_file(data / "piqa" / "valid-labels.lst", "0\n1\n");
  McTask piqa = load_task("piqa", data.string(), 0);
  CHECK(piqa.items[0].contexts[0] == "Question: Open a jar\nAnswer:");
  CHECK(piqa.items[0].gold == 0);
  CHECK(piqa.items[1].gold == 1);
  test::write_file(data / "piqa" / "valid-labels.lst", "0\n");
  CHECK_THROWS_WITH(load_task("piqa", data.string(), 0), ContainsSubstring("valid.jsonl:2: no label for this item"));

  test::write_file(data / "winogrande" / "dev.jsonl",
                   "{\"qID\": \"q\", \"sentence\": \"Sarah was a much better surgeon than Maria so _ always got the harder cases.\", "
                   "\"option1\": \"Sarah\", \"option2\": \"Maria\", \"answer\": \"1\"}\n");
  McTask wino = load_task("winogrande", data.string(), 0);
  CHECK(wino.items[0].contexts == std::vector<std::string>{"Sarah was a much better surgeon than Maria so Sarah",
                                                           "Sarah was a much better surgeon than Maria so Maria"});
  CHECK(wino.items[0].continuations == std::vector<std::string>{"always got the harder cases."});
  CHECK(wino.items[0].gold == 0);
  CHECK(!wino.has_acc_norm());
}

TEST_CASE("eval: the batched prefix-sharing scorer equals one forward per request", "[eval]") {
  for (const std::string arch : {"transformer", "yocopp", "yoco_gret", "yocou"}) {
    ModelConfig mc = test::small_model(arch);  // vocabulary 50, max_seq_len 16
    mc.yoco.window = 4;  // the window rings wrap inside a context
    mc.yoco.loops = 2;
    mc.yoco.chunk = 4;
    Decoder model(mc);
    model->init_weights(7);
    model->eval();
    auto seq = [](int64_t start, size_t n) {
      std::vector<int64_t> v;
      for (size_t i = 0; i < n; ++i) v.push_back((start + 7 * static_cast<int64_t>(i)) % 50);
      return v;
    };
    std::vector<std::vector<TokenizedRequest>> items = {
        // shared context, continuations of 1, 2 and 4 tokens
        {{seq(3, 5), seq(10, 1)}, {seq(3, 5), seq(11, 2)}, {seq(3, 5), seq(12, 4)}},
        // WinoGrande form: contexts differ, one continuation
        {{seq(1, 3), seq(20, 3)}, {seq(2, 6), seq(20, 3)}},
        // a one-token context (lm-eval's empty context is [BOS])
        {{{1}, seq(30, 2)}, {{1}, seq(31, 5)}},
        // truncation: 14 + 4 > 16 + 1 tokens, and each choice truncates the context differently
        {{seq(5, 14), seq(40, 4)}, {seq(5, 14), seq(41, 1)}, {seq(5, 14), seq(42, 16)}},
    };
    for (int64_t batch : {1, 3}) {
      ScoreOptions o;
      o.batch_items = batch;
      auto scores = score_requests(model, items, o);
      REQUIRE(scores);
      for (size_t i = 0; i < items.size(); ++i)
        for (size_t r = 0; r < items[i].size(); ++r) {
          INFO(arch << " batch " << batch << " item " << i << " request " << r);
          CHECK((*scores)[i][r] == Approx(naive_loglik(model, items[i][r])).margin(1e-4));
        }
    }
    // A continuation longer than the model's window cannot be scored.
    CHECK_THROWS_WITH(score_requests(model, {{{seq(1, 2), seq(2, 17)}, {seq(1, 2), seq(2, 1)}}}),
                      ContainsSubstring("a continuation of 17 tokens exceeds model.max_seq_len=16"));
    // A stop request ends scoring between batches.
    ScoreOptions stop;
    stop.batch_items = 1;
    int asked = 0;
    stop.stop = [&] { return ++asked == 2; };
    CHECK(!score_requests(model, items, stop));
    CHECK(asked == 2);
  }
}

TEST_CASE("eval: train.eval_tasks in recipes", "[eval]") {
  const std::string base = "model:\n  vocab_size: 64\ndata:\n  train: d/train\n";
  Config c = config_from_yaml(base + "train:\n  eval_every: 5\n  eval_tasks: [hellaswag, t/cloze.jsonl]\n", {}, "r.yaml");
  CHECK(c.train.eval_tasks == std::vector<std::string>{"hellaswag", "t/cloze.jsonl"});
  CHECK(config_from_yaml(to_yaml(c), {}, "again.yaml").train.eval_tasks == c.train.eval_tasks);  // round trip
  CHECK_THROWS_WITH(config_from_yaml(base + "train:\n  eval_every: 5\n  eval_tasks: hellaswag\n", {}, "r.yaml"),
                    ContainsSubstring("train.eval_tasks"));
  CHECK_THROWS_WITH(config_from_yaml(base + "train:\n  eval_tasks: [hellaswag]\n", {}, "r.yaml"),
                    ContainsSubstring("train.eval_tasks needs train.eval_tasks_every (or train.eval_every) > 0"));
}

TEST_CASE("eval: data_pipeline/make_cloze.sh is deterministic and makes a valid task", "[eval]") {
  fs::path dir = test::temp_dir("eval-cloze");
  std::string text;  // 12 paragraphs of 45 words, every word unique: "p3w17"
  for (int p = 0; p < 12; ++p) {
    for (int w = 0; w < 45; ++w) text += cat(w ? " " : "", "p", p, "w", w);
    text += p == 3 ? "\n\nshort paragraph\n\n" : "\n\n";  // too short for an item
  }
  test::write_file(dir / "src" / "a.txt", text);
  auto make = [&](const std::string& out, const std::string& seed) {
    auto r = test::run_shell("data_pipeline/make_cloze.sh " + (dir / "src").string() + " " + (dir / out).string() + " 6 " + seed);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return test::read_file(dir / out);
  };
  const std::string a = make("a.jsonl", "3"), b = make("b.jsonl", "3"), c = make("c.jsonl", "4");
  CHECK(a == b);
  CHECK(a != c);
  McTask t = load_task((dir / "a.jsonl").string(), "", 0);
  REQUIRE(t.items.size() == 6);
  for (const auto& it : t.items) {
    CHECK(it.continuations.size() == 4);
    CHECK(split(it.contexts[0], ' ').size() == 30);
    // The true continuation is the 2 words after the context in some paragraph of the source.
    CHECK(text.find(it.contexts[0] + " " + it.continuations[static_cast<size_t>(it.gold)]) != std::string::npos);
    for (size_t k = 0; k < 4; ++k)
      if (static_cast<int64_t>(k) != it.gold) CHECK(it.continuations[k] != it.continuations[static_cast<size_t>(it.gold)]);
  }
}
