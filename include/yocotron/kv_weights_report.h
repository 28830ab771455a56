// Charts and tables of learned KV mixing weights per layer (the YOCO++ paper's Figure 2): one run's
// chart for `yocotron inspect --kv-weights --svg`, and several runs for `yocotron compare --kv-weights`
// (a chart per kind of weight with a line per run, and a markdown + csv table).
#pragma once
#include <string>
#include <vector>

#include "yocotron/compare.h"
#include "yocotron/kv_weights.h"
#include "yocotron/svg_chart.h"

namespace yt {

// One series per term label ("K from layer 1", "K own", ...): x = layer, y = effective weight (a
// vector's mean), in the order the layers first use the labels.
std::vector<ChartSeries> kv_weight_series(const KvWeights& w);

// One run's chart: a polyline per term label.
std::string kv_weights_chart_svg(const KvWeights& w);

// Reads each run's (or checkpoint's) weights and writes into out_dir: kv_weights_<label>.svg per term
// label (a line per run that has it), kv_weights.md and kv_weights.csv (a row per run, layer and
// term). Runs without mixing weights are listed in the table as such.
CompareOutput compare_kv_weights(const std::vector<std::string>& run_dirs, const std::string& out_dir);

}  // namespace yt
