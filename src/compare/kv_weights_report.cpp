#include "yocotron/kv_weights_report.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <sstream>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

// "K from layer 1" -> "k_from_layer_1": the label as a file name.
std::string slug(const std::string& label) {
  std::string s;
  for (char c : label) s += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  return s;
}

// x from layer 1 to layer L, half a layer of margin so that the end points are not on the frame.
ChartOptions layer_chart_options(const std::string& title, int n_layers) {
  ChartOptions o;
  o.title = title;
  o.x_min = 0.5;
  o.x_max = n_layers + 0.5;
  o.x_label = "layer";
  o.y_label = "effective weight (vectors: their mean)";
  o.x_as_count = false;
  o.x_integers = true;
  return o;
}

}  // namespace

std::vector<ChartSeries> kv_weight_series(const KvWeights& w) {
  std::vector<ChartSeries> out;
  for (const auto& label : term_labels(w)) {
    ChartSeries s{label, {}, {}, true};
    for (int l : mixing_layers(w))
      if (KvTermRef r = find_term(w, l, label); r.term) s.x.push_back(l), s.y.push_back(r.term->weight);
    out.push_back(s);
  }
  return out;
}

std::string kv_weights_chart_svg(const KvWeights& w) {
  return line_chart_svg(kv_weight_series(w), layer_chart_options(cat(w.arch, ": KV mixing weights per layer at step ", w.step), w.n_layers));
}

CompareOutput compare_kv_weights(const std::vector<std::string>& run_dirs, const std::string& out_dir) {
  if (run_dirs.empty()) throw std::runtime_error("compare --kv-weights: give at least one run directory");
  const std::vector<std::string> names = run_names(run_dirs);
  std::vector<KvWeights> runs;
  for (const auto& d : run_dirs) runs.push_back(read_kv_weights(d));
  int n_layers = 1;
  for (const auto& w : runs) n_layers = std::max(n_layers, w.n_layers);
  auto run_label = [&](size_t i) { return names[i] == runs[i].arch ? names[i] : names[i] + " (" + runs[i].arch + ")"; };

  // A chart per term label, a line per run that has it.
  std::vector<std::string> labels;
  std::map<std::string, std::vector<ChartSeries>> panels;
  for (size_t i = 0; i < runs.size(); ++i)
    for (auto s : kv_weight_series(runs[i])) {
      if (!panels.count(s.label)) labels.push_back(s.label);
      panels[s.label].push_back({run_label(i), s.x, s.y, true});
    }
  CompareOutput out;
  fs::create_directories(out_dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::string p = (fs::path(out_dir) / name).string();
    write_text_file_atomic(p, text);
    out.files.push_back(p);
  };
  std::ostringstream md, csv;
  md << "# KV mixing weights per layer\n\n";
  for (const auto& label : labels) {
    const std::string file = "kv_weights_" + slug(label) + ".svg";
    write(file, line_chart_svg(panels[label], layer_chart_options(label + ": effective weight per layer", n_layers)));
    md << "![" << label << "](" << file << ")\n\n";
  }
  if (!labels.empty()) {
    md << "| run | arch | step | layer |";
    for (const auto& label : labels) md << " " << label << " |";
    md << "\n|---|---|---|---|";
    for (size_t c = 0; c < labels.size(); ++c) md << "---|";
    md << "\n";
  }
  csv << "run,arch,step,layer,tensor,source,label,weight,min,max\n";
  std::vector<std::string> without;
  for (size_t i = 0; i < runs.size(); ++i) {
    const KvWeights& w = runs[i];
    if (w.mixes.empty()) without.push_back(run_label(i));
    for (int l : mixing_layers(w)) {
      md << "| " << names[i] << " | " << w.arch << " | " << w.step << " | " << l << " |";
      for (const auto& label : labels) md << " " << term_cell(find_term(w, l, label)) << " |";
      md << "\n";
    }
    for (const auto& m : w.mixes)
      for (const auto& t : m.terms)
        csv << names[i] << "," << w.arch << "," << w.step << "," << m.layer << "," << m.tensor << "," << t.source << ","
            << term_label(m, t) << "," << format_double(t.weight) << "," << format_double(t.min) << "," << format_double(t.max) << "\n";
  }
  md << "\nEffective weights as each layer applies them: s·w for YOCO++'s scalars (s = "
        "model.yocopp.scaling_factor), λ for ResFormer, and for FusedKV's vectors their mean [min, max] "
        "over head_dim/2 elements. Each run is read at its newest valid checkpoint (step shown).\n";
  if (!without.empty()) md << "\nNo KV mixing weights: " << join(without, ", ") << ".\n";
  out.report_md = md.str();
  write("kv_weights.md", out.report_md);
  write("kv_weights.csv", csv.str());
  return out;
}

}  // namespace yt
