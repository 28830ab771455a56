// The learned KV mixing weights of a trained model, per layer, as the model applies them (the YOCO++
// paper's Figure 2): read from a checkpoint (only those tensors of its model files) and interpreted
// through the checkpoint's recipe and KV plan, so any architecture whose plan mixes K/V with weights
// (YOCO++ and ResFormer scalars, FusedKV vectors) is covered without naming it here.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace yt {

// The weight one layer gives one source of its K (or V).
struct KvWeightTerm {
  std::string source;  // "layer 1", "own", "layer 11" (layers 1-based, as in the papers)
  double weight = 0;   // effective: scale * w for a scalar; the vector's mean for a vector
  double min = 0, max = 0;  // over the vector's elements (= weight for a scalar)
};

// One layer's mix of K or V: what is stored and what it means.
struct KvMix {
  int layer = 0;            // 1-based
  std::string tensor;       // "K" or "V"
  std::string combine;      // "scalar" (scale * (w0 * from + w1 * own)) or "vector" (w0 ⊙ from + w1 ⊙ from2)
  double scale = 1;         // scalar mixes: the fixed factor (YOCO++ s)
  bool learnable = true;    // false: fixed values from the recipe (ResFormer without learnable λ)
  std::vector<std::vector<double>> raw;  // as stored: 2 rows of 1 (scalar) or head_dim/2 (vector) values
  std::vector<KvWeightTerm> terms;       // the two terms, the earlier layer first
};

struct KvWeights {
  std::string checkpoint;  // the checkpoint directory read
  int64_t step = 0, tokens = 0;
  std::string arch;
  int n_layers = 0;
  std::vector<KvMix> mixes;  // by layer, K before V; empty for architectures without mixing weights
};

// Reads the newest valid checkpoint of a run directory, or a checkpoint directory. Throws ConfigError
// (bad input: the CLI's one line and exit 2) naming the path or file when there is none, or it is
// corrupt or incomplete.
KvWeights read_kv_weights(const std::string& run_or_checkpoint);

// "K from layer 1", "V own": the name a term goes by in tables and chart legends.
std::string term_label(const KvMix& m, const KvWeightTerm& t);
// Every term label, in the order the layers first use them; the layers that mix, ascending.
std::vector<std::string> term_labels(const KvWeights& w);
std::vector<int> mixing_layers(const KvWeights& w);
// The term `layer` gives `label`, with its mix; both null when the layer has none.
struct KvTermRef {
  const KvMix* mix = nullptr;
  const KvWeightTerm* term = nullptr;
};
KvTermRef find_term(const KvWeights& w, int layer, const std::string& label);
// A table cell: the weight to 4 decimals, a vector's as "mean [min, max]"; "-" for no term.
std::string term_cell(const KvTermRef& t);

// The line saying an architecture has no mixing weights (e.g. "model.arch=transformer has no ...").
std::string no_kv_weights_line(const KvWeights& w);

nlohmann::json kv_weights_json(const KvWeights& w);
std::string kv_weights_text(const KvWeights& w);

}  // namespace yt
