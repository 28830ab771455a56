// The metrics schema: RUN/metrics.jsonl, metrics.csv, metrics_tasks.csv and the TensorBoard tags all
// use the schema's names, and values read back exactly (TensorBoard: as float32, its precision).
// Expected values are written out here, not derived from the schema.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "catch.hpp"
#include "helpers.h"
#include "tb_decode.h"
#include "yocotron/compare.h"
#include "yocotron/metrics.h"
#include "yocotron/metrics_schema.h"
#include "yocotron/str.h"
#include "yocotron/tensorboard.h"

using namespace yt;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN(), kInf = std::numeric_limits<double>::infinity();

// The lines of a file whose every line ends with '\n'.
std::vector<std::string> lines(const fs::path& p) {
  const std::string text = test::read_file(p);
  REQUIRE((!text.empty() && text.back() == '\n'));
  return split(text.substr(0, text.size() - 1), '\n');
}

std::vector<std::string> keys(const ojson& j) {
  std::vector<std::string> out;
  for (const auto& [k, v] : j.items()) out.push_back(k);
  return out;
}

}  // namespace

TEST_CASE("the schema declares metrics.csv's columns in the order existing runs have them", "[metrics]") {
  CHECK(csv_header(MetricsTable::Curve) == "step,tokens,loss,lr,grad_norm,tokens_per_s,mfu,mem_gb,skipped,val_loss,val_ppl,elapsed_s");
  CHECK(csv_header(MetricsTable::Tasks) == "step,tokens,task,acc,acc_stderr,acc_norm,acc_norm_stderr,n");
  std::set<std::string_view> names;
  for (const auto& f : metric_fields()) {
    CHECK(names.insert(f.name).second);  // one declaration per name
    CHECK((f.of_train || f.of_eval || f.of_task));
  }
  CHECK(task_score_name("hellaswag", metric_name::acc_norm) == "eval/hellaswag/acc_norm");
  CHECK(task_score_of("eval/hellaswag/acc_norm") == "hellaswag/acc_norm");
  CHECK(task_score_of("eval/arc/easy/acc") == "arc/easy/acc");
  CHECK(!task_score_of("eval//acc"));
  CHECK(!task_score_of("eval/hellaswag/n"));  // metrics_tasks.csv only
  CHECK(!task_score_of("val_loss"));
}

TEST_CASE("nlohmann writes every double so that it reads back to the same double", "[metrics]") {
  std::vector<double> v = {0.1 + 0.2, 1.0 / 3, 5e-324, 2.2250738585072009e-308, 1.7976931348623157e308, 1e23, 9007199254740993.0,
                           -0.0, 100.0, 3e-4, 1e-5};
  std::mt19937_64 rng(16);
  for (int i = 0; i < 200000; ++i) {
    const uint64_t bits = rng();  // every exponent and mantissa alike
    double d;
    std::memcpy(&d, &bits, 8);
    if (std::isfinite(d)) v.push_back(d);
  }
  for (double d : v) {
    const std::string text = ojson(d).dump();
    INFO(text);
    const double back = nlohmann::json::parse(text).get<double>();
    REQUIRE(std::memcmp(&back, &d, 8) == 0);
  }
}

TEST_CASE("rows written through MetricsFiles and TensorBoard read back under the schema's names", "[metrics]") {
  fs::path d = test::temp_dir("metrics-schema");
  {
    MetricsFiles files(d.string(), 0);
    TensorBoardWriter tb(d.string(), 0);
    std::vector<MetricsSink*> sinks = {&files, &tb};
    TrainRow a{1, 4096, 0.1 + 0.2, 3e-4, 1.0 / 3, 12345.678, std::nullopt, 1e-300, 2, 5e-324};  // a CPU run: no mfu
    TrainRow b{2, 8192, kNaN, 1e300, kInf, 2.5, 0.4242424242424242, 79.5, 3, 12.25};
    TaskResult hella{"hella", "", 8, 0.25, 0.125, 0.5, 0.0625, 0};
    TaskResult wino{"wino", "", 4, 0.75, 0.0078125, std::nullopt, std::nullopt, 0};
    for (auto* s : sinks) {
      s->train(a);
      s->train(b);
      s->eval({2, 8192, 2.0});
      s->tasks({2, 8192, {hella, wino}});
    }
  }

  // metrics.jsonl: keys in column order, values exact; non-finite and absent are null.
  auto jl = lines(d / "metrics.jsonl");
  REQUIRE(jl.size() == 4);
  std::vector<ojson> rows;
  for (const auto& l : jl) rows.push_back(ojson::parse(l));
  const std::vector<std::string> train_keys = {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s",
                                               "mfu", "mem_gb", "skipped", "elapsed_s"};
  CHECK(keys(rows[0]) == train_keys);
  CHECK(keys(rows[1]) == train_keys);
  CHECK(keys(rows[2]) == std::vector<std::string>{"step", "tokens", "val_loss", "val_ppl"});
  CHECK(keys(rows[3]) == std::vector<std::string>{"step", "tokens", "eval/hella/acc", "eval/hella/acc_norm", "eval/wino/acc"});
  CHECK(jl[0].find("\"loss\":0.30000000000000004,") != std::string::npos);
  CHECK((rows[0]["step"].is_number_unsigned() && rows[0]["step"] == 1 && rows[0]["tokens"] == 4096 && rows[0]["skipped"] == 2));
  CHECK(rows[0]["loss"].get<double>() == 0.30000000000000004);
  CHECK(rows[0]["lr"].get<double>() == 0.0003);
  CHECK(rows[0]["grad_norm"].get<double>() == 0.3333333333333333);
  CHECK(rows[0]["tokens_per_s"].get<double>() == 12345.678);
  CHECK(rows[0]["mfu"].is_null());
  CHECK(rows[0]["mem_gb"].get<double>() == 1e-300);
  CHECK(rows[0]["elapsed_s"].get<double>() == 4.9406564584124654e-324);
  CHECK(rows[1]["loss"].is_null());
  CHECK(rows[1]["lr"].get<double>() == 1e300);
  CHECK(rows[1]["grad_norm"].is_null());
  CHECK(rows[1]["mfu"].get<double>() == 0.4242424242424242);
  CHECK((rows[1]["mem_gb"].get<double>() == 79.5 && rows[1]["skipped"] == 3 && rows[1]["elapsed_s"].get<double>() == 12.25));
  CHECK((rows[2]["step"] == 2 && rows[2]["tokens"] == 8192 && rows[2]["val_loss"].get<double>() == 2.0));
  CHECK(rows[2]["val_ppl"].get<double>() == 7.38905609893065);  // e^2
  CHECK((rows[3]["eval/hella/acc"].get<double>() == 0.25 && rows[3]["eval/hella/acc_norm"].get<double>() == 0.5 &&
         rows[3]["eval/wino/acc"].get<double>() == 0.75));

  // metrics.csv: the same names as columns, the same values.
  CHECK(lines(d / "metrics.csv") == std::vector<std::string>{
                                        "step,tokens,loss,lr,grad_norm,tokens_per_s,mfu,mem_gb,skipped,val_loss,val_ppl,elapsed_s",
                                        "1,4096,0.30000000000000004,0.0003,0.3333333333333333,12345.678,,1e-300,2,,,5e-324",
                                        "2,8192,NaN,1e+300,Infinity,2.5,0.4242424242424242,79.5,3,,,12.25",
                                        "2,8192,,,,,,,,2.0,7.38905609893065,",
                                    });
  CHECK(lines(d / "metrics_tasks.csv") == std::vector<std::string>{
                                              "step,tokens,task,acc,acc_stderr,acc_norm,acc_norm_stderr,n",
                                              "2,8192,hella,0.25,0.125,0.5,0.0625,8",
                                              "2,8192,wino,0.75,0.0078125,,,4",
                                          });

  // TensorBoard: the same names as tags, float32 values; the step is the event's; absent and
  // non-finite values have no scalar; tokens once a step.
  int repeats = 0;
  auto tb = test::tb_scalars(d / "tb", &repeats);
  CHECK(repeats == 0);
  const std::map<std::string, std::map<int64_t, float>> want = {
      {"tokens", {{1, 4096.0f}, {2, 8192.0f}}},
      {"loss", {{1, 0.3f}}},
      {"lr", {{1, 3e-4f}, {2, std::numeric_limits<float>::infinity()}}},  // 1e300 overflows float32
      {"grad_norm", {{1, 0.33333334f}}},
      {"tokens_per_s", {{1, 12345.678f}, {2, 2.5f}}},
      {"mfu", {{2, 0.42424244f}}},
      {"mem_gb", {{1, 0.0f}, {2, 79.5f}}},
      {"skipped", {{1, 2.0f}, {2, 3.0f}}},
      {"elapsed_s", {{1, 0.0f}, {2, 12.25f}}},
      {"val_loss", {{2, 2.0f}}},
      {"val_ppl", {{2, 7.3890561f}}},
      {"eval/hella/acc", {{2, 0.25f}}},
      {"eval/hella/acc_norm", {{2, 0.5f}}},
      {"eval/wino/acc", {{2, 0.75f}}},
  };
  CHECK(tb == want);

  // Every declared field of the curve is a column, a JSON key and (but the step) a TensorBoard tag.
  for (auto name : csv_columns(MetricsTable::Curve)) {
    const std::string n(name);
    INFO(n);
    CHECK((rows[0].contains(n) || rows[2].contains(n)));
    CHECK((n == "step" || tb.count(n) == 1));
  }

  // compare reads the same file through the same names.
  test::write_file(d / "config.yaml", to_yaml(Config{}));
  RunRecord r = read_run(d.string());
  REQUIRE(r.train.size() == 2);
  CHECK((r.train[0].step == 1 && r.train[0].tokens == 4096 && r.train[0].value == 0.30000000000000004));
  CHECK(std::isnan(r.train[1].value));
  REQUIRE(r.eval.size() == 1);
  CHECK((r.eval[0].step == 2 && r.eval[0].value == 2.0));
  CHECK(r.tokens_per_s == 12345.678);  // the median as compare takes it: the upper one of two
  CHECK(r.tasks.size() == 3);
  CHECK(r.tasks.at("hella/acc_norm").at(0).value == 0.5);
}
