#include "yocotron/kv_weights.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "yocotron/checkpoint.h"
#include "yocotron/config.h"
#include "yocotron/errors.h"
#include "yocotron/hf.h"
#include "yocotron/kv_plan.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_mix_tensor(const std::string& name) { return ends_with(name, ".k_mix") || ends_with(name, ".v_mix"); }

std::string fixed4(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(4) << v;
  return s.str();
}

// The stored values of one source's weights as 2 rows. Fixed (non-learnable) weights are buffers the
// checkpoint does not hold: the recipe's values are what the model applied.
std::vector<std::vector<double>> stored_rows(const KvSource& s, const std::string& name, const LoadedCheckpoint& ck,
                                             int64_t head_dim) {
  if (!s.learnable) return {{s.w0_init}, {s.w1_init}};
  auto it = ck.tensors.model.find(name);
  if (it == ck.tensors.model.end())
    throw ConfigError({cat(ck.dir, ": the checkpoint has no tensor ", name, ", but its recipe (config.yaml) mixes with learned weights there")});
  const int64_t cols = s.kind == KvCombine::ScalarMix ? 1 : head_dim / 2;
  at::Tensor t = it->second.to(at::kDouble).contiguous();
  if (t.numel() != 2 * cols)
    throw ConfigError({cat(ck.dir, ": tensor ", name, " has ", t.numel(), " values; its recipe expects ", 2 * cols)});
  t = t.reshape({2, cols});
  std::vector<std::vector<double>> rows(2);
  for (int r = 0; r < 2; ++r)
    for (int64_t c = 0; c < cols; ++c) rows[r].push_back(t[r][c].item<double>());
  return rows;
}

KvMix read_mix(const LayerKvPlan& l, bool is_k, const LoadedCheckpoint& ck, int64_t head_dim) {
  const KvSource& s = is_k ? l.k : l.v;
  KvMix m;
  m.layer = l.layer + 1;
  m.tensor = is_k ? "K" : "V";
  m.combine = s.kind == KvCombine::ScalarMix ? "scalar" : "vector";
  m.scale = s.kind == KvCombine::ScalarMix ? s.scale : 1.0;  // combine_kv scales scalar mixes only
  m.learnable = s.learnable;
  m.raw = stored_rows(s, cat("layers.", l.layer, ".self_attn.", is_k ? "k_mix" : "v_mix"), ck, head_dim);
  const std::string second = s.kind == KvCombine::ScalarMix ? "own" : cat("layer ", s.from2 + 1);
  for (int r = 0; r < 2; ++r) {
    const auto& row = m.raw[r];
    double sum = 0;
    for (double v : row) sum += v;
    // scale > 0 (validated), so it keeps min and max in place.
    m.terms.push_back({r == 0 ? cat("layer ", s.from + 1) : second, m.scale * (sum / static_cast<double>(row.size())),
                       m.scale * *std::min_element(row.begin(), row.end()),
                       m.scale * *std::max_element(row.begin(), row.end())});
  }
  return m;
}

// One line per kind of mix present, saying what the numbers are.
std::vector<std::string> formula_lines(const KvWeights& w) {
  std::vector<std::string> out;
  for (const char* combine : {"scalar", "vector"}) {
    const KvMix* first = nullptr;
    std::vector<std::string> tensors;  // "K", "V": which ones this kind mixes
    for (const auto& m : w.mixes)
      if (m.combine == combine) {
        if (!first) first = &m;
        if (std::find(tensors.begin(), tensors.end(), m.tensor) == tensors.end()) tensors.push_back(m.tensor);
      }
    if (!first) continue;
    const std::string over = cat(" for X = ", join(tensors, ", "));
    if (first->combine == "scalar") {
      const bool scaled = first->scale != 1.0;
      out.push_back(cat("X~_i = ", scaled ? "s*(w0*X_1 + w1*X_i)" : "w0*X_1 + w1*X_i", over,
                        scaled ? cat(", s = ", format_double(first->scale)) : "",
                        first->learnable ? "" : " (w fixed by the recipe, not learned)", "; shown: ",
                        scaled ? "the effective weights s*w0 (from layer 1) and s*w1 (own)" : "w0 (from layer 1) and w1 (own)"));
    } else {
      const std::string middle = first->terms[1].source.substr(std::string("layer ").size());  // "layer 2" -> "2"
      out.push_back(cat("X_i = w0 . X_1 + w1 . X_", middle, over, ", w0 and w1 vectors of head_dim/2 = ",
                        first->raw[0].size(), " (each applied to both halves of a head); shown: each vector's mean [min, max]"));
    }
  }
  return out;
}

}  // namespace

KvWeights read_kv_weights(const std::string& path) {
  if (!fs::is_directory(path)) throw ConfigError({cat(path, ": no such run or checkpoint directory")});
  std::string dir;
  LoadedCheckpoint ck;
  Config cfg;
  try {
    dir = resolve_checkpoint_path(path);
    // resolve_checkpoint_path has verified a run directory's checkpoint; one named directly is verified here.
    ck = load_checkpoint(dir, /*verify=*/dir == path, is_mix_tensor);
    cfg = config_from_yaml(ck.state.config_yaml, {}, (fs::path(dir) / "config.yaml").string());
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {  // the messages name the directory or file
    throw ConfigError({error_text(e)});
  }
  KvWeights w;
  w.checkpoint = dir;
  w.step = ck.state.step;
  w.tokens = ck.state.tokens;
  w.arch = cfg.model.arch;
  w.n_layers = static_cast<int>(cfg.model.n_layers);
  for (const auto& l : make_kv_plan(cfg.model).layers) {
    if (l.k.has_weights()) w.mixes.push_back(read_mix(l, true, ck, cfg.model.head_dim()));
    if (l.v.has_weights()) w.mixes.push_back(read_mix(l, false, ck, cfg.model.head_dim()));
  }
  return w;
}

std::string term_label(const KvMix& m, const KvWeightTerm& t) {
  return t.source == "own" ? m.tensor + " own" : m.tensor + " from " + t.source;
}

std::vector<std::string> term_labels(const KvWeights& w) {
  std::vector<std::string> labels;
  for (const auto& m : w.mixes)
    for (const auto& t : m.terms)
      if (std::find(labels.begin(), labels.end(), term_label(m, t)) == labels.end()) labels.push_back(term_label(m, t));
  return labels;
}

std::vector<int> mixing_layers(const KvWeights& w) {
  std::vector<int> layers;
  for (const auto& m : w.mixes)
    if (layers.empty() || layers.back() != m.layer) layers.push_back(m.layer);
  return layers;
}

KvTermRef find_term(const KvWeights& w, int layer, const std::string& label) {
  for (const auto& m : w.mixes)
    for (const auto& t : m.terms)
      if (m.layer == layer && term_label(m, t) == label) return {&m, &t};
  return {};
}

std::string term_cell(const KvTermRef& r) {
  if (!r.term) return "-";
  if (r.mix->combine == "scalar") return fixed4(r.term->weight);
  return fixed4(r.term->weight) + " [" + fixed4(r.term->min) + ", " + fixed4(r.term->max) + "]";
}

std::string no_kv_weights_line(const KvWeights& w) {
  return cat(w.checkpoint, ": model.arch=", w.arch,
             " has no KV mixing weights (no layer mixes its keys or values with weights)");
}

json kv_weights_json(const KvWeights& w) {
  json layers = json::array();
  for (const auto& m : w.mixes) {
    if (layers.empty() || layers.back()["layer"] != m.layer) layers.push_back({{"layer", m.layer}});
    json terms = json::array();
    for (const auto& t : m.terms)
      terms.push_back({{"source", t.source}, {"label", term_label(m, t)}, {"weight", t.weight}, {"min", t.min}, {"max", t.max}});
    json raw = m.combine == "scalar" ? json{m.raw[0][0], m.raw[1][0]} : json(m.raw);
    layers.back()[m.tensor == "K" ? "k" : "v"] = {
        {"combine", m.combine}, {"scale", m.scale}, {"learnable", m.learnable}, {"raw", raw}, {"weights", terms}};
  }
  json j = {{"checkpoint", w.checkpoint}, {"step", w.step},     {"tokens", w.tokens},
            {"arch", w.arch},             {"n_layers", w.n_layers}, {"has_kv_weights", !w.mixes.empty()},
            {"layers", layers}};
  if (w.mixes.empty()) j["note"] = no_kv_weights_line(w);
  return j;
}

std::string kv_weights_text(const KvWeights& w) {
  std::ostringstream out;
  out << "checkpoint   " << w.checkpoint << " (step " << w.step << ", " << w.tokens << " tokens)\n";
  if (w.mixes.empty()) return out.str() + no_kv_weights_line(w) + "\n";
  out << "arch         " << w.arch << ", " << w.n_layers << " layers\n";
  for (const auto& f : formula_lines(w)) out << "weights      " << f << "\n";
  // A column per term label, a row per layer.
  const std::vector<std::string> labels = term_labels(w);
  const std::vector<int> layers = mixing_layers(w);
  auto cell = [&](int layer, const std::string& label) { return term_cell(find_term(w, layer, label)); };
  std::vector<size_t> width;
  for (const auto& label : labels) {
    size_t wd = label.size();
    for (int l : layers) wd = std::max(wd, cell(l, label).size());
    width.push_back(wd + 2);
  }
  out << "\nlayer";
  for (size_t c = 0; c < labels.size(); ++c) out << std::setw(static_cast<int>(width[c])) << labels[c];
  out << "\n";
  for (int l : layers) {
    out << std::setw(5) << l;
    for (size_t c = 0; c < labels.size(); ++c) out << std::setw(static_cast<int>(width[c])) << cell(l, labels[c]);
    out << "\n";
  }
  return out.str();
}

}  // namespace yt
