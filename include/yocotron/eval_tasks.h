// Multiple-choice evaluation tasks as text: the generic jsonl forms and readers for the raw public
// files of HellaSwag, ARC, OpenBookQA, PIQA and WinoGrande, turned into the (context, continuation)
// pairs lm-evaluation-harness 0.4.9.1 scores. Torch-free: the scorer (eval_scorer.h) tokenizes and
// scores them. A bad file is a ConfigError of one line naming the file and line.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace yt {

// One item. The usual form has one context and a continuation per choice; the WinoGrande form has
// a context per choice and one shared continuation. Continuations are stored without the " " that
// lm-eval's target_delimiter puts in front of them (requests() adds it).
struct McItem {
  std::vector<std::string> contexts;       // 1, or one per choice (WinoGrande form)
  std::vector<std::string> continuations;  // one per choice, or 1 (WinoGrande form)
  int64_t gold = 0;
  size_t n_choices() const { return contexts.size() > 1 ? contexts.size() : continuations.size(); }
  bool multiple_contexts() const { return contexts.size() > 1; }
};

struct McTask {
  std::string name;    // "hellaswag", or the file's stem
  std::string source;  // the file it was read from
  std::vector<McItem> items;
  // acc_norm is reported where lm-eval reports it: not for WinoGrande-form tasks (acc only).
  bool has_acc_norm() const { return items.empty() || !items[0].multiple_contexts(); }
};

// One log-likelihood request: log P(continuation | context), as lm-eval's loglikelihood() receives it.
struct McRequest {
  std::string context, continuation;
};
// Choice c of `item`: (context, " " + continuation), lm-eval's target_delimiter included.
McRequest request_for(const McItem& item, size_t choice);

// A request's tokens as lm-eval's loglikelihood() forms them (api/model.py _encode_pair): the
// context's trailing whitespace moves to the front of the continuation; context and
// context+continuation are encoded separately and the continuation is what the whole adds past the
// context's tokens; no BOS. An empty context is [prefix_token] (lm-eval's prefix_token_id, the BOS)
// with the continuation encoded alone.
struct TokenizedRequest {
  std::vector<int64_t> context, continuation;
};
using EncodeFn = std::function<std::vector<int64_t>(const std::string&)>;
TokenizedRequest encode_request(const McRequest& r, const EncodeFn& encode, int64_t prefix_token);

// The known task names: hellaswag, arc_easy, arc_challenge, openbookqa, piqa, winogrande.
const std::vector<std::string>& known_task_names();

// A task named on the command line or in train.eval_tasks: a known name (its raw file looked up
// under `data_dir` by its usual file name) or a .jsonl file in the generic or a raw format (the
// format is recognised from the first line). `limit` > 0 keeps the first `limit` items.
McTask load_task(const std::string& name_or_file, const std::string& data_dir, int64_t limit = 0);

// Readers of one format each (exposed for tests). `file` names the file in errors.
McTask read_generic_jsonl(const std::string& file, const std::string& name);
McTask read_hellaswag_jsonl(const std::string& file, const std::string& name);
McTask read_arc_jsonl(const std::string& file, const std::string& name, bool stem_only);  // stem_only: OpenBookQA
McTask read_piqa_jsonl(const std::string& file, const std::string& labels_file, const std::string& name);
McTask read_winogrande_jsonl(const std::string& file, const std::string& name);

// lm-eval's HellaSwag text clean-up (tasks/hellaswag/utils.py preprocess): strip, " [title]" -> ". ",
// drop "[...]" (non-greedy), "  " -> " " (once, not repeatedly).
std::string hellaswag_preprocess(const std::string& text);
// Python's str.capitalize() on ASCII letters: the first character upper case, the rest lower case.
std::string python_capitalize(const std::string& text);

}  // namespace yt
