// Task files -> McTask. Each reader turns one public file format into items exactly as lm-eval
// 0.4.9.1's task yaml (doc_to_text / doc_to_choice / doc_to_target) builds them, so the requests
// scored here are the strings lm-eval scores.
#include "yocotron/eval_tasks.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "yocotron/config.h"
#include "yocotron/fileio.h"
#include "yocotron/reader_checks.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A file's lines, each parsed as a JSON object; `f` turns one into an item. Every problem is a
// ConfigError "FILE:LINE: what".
McTask read_lines(const std::string& file, const std::string& name,
                  const std::function<McItem(const json&, const std::function<void(const std::string&)>&)>& f) {
  std::string text;
  try {
    text = read_text_file(file);
  } catch (const std::runtime_error& e) {
    throw ConfigError({e.what()});
  }
  McTask t{name, file, {}};
  std::vector<std::string> lines = split(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string line = lines[i];
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto bad = [&](const std::string& what) { throw ConfigError({cat(file, ":", i + 1, ": ", what)}); };
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      bad(cat("not a JSON line (a task file holds one JSON object per line): ", printable(line, 60)));
    }
    if (!j.is_object()) bad("not a JSON object");
    McItem item;
    try {
      item = f(j, bad);
    } catch (const json::exception& e) {  // a field of the wrong type
      bad(cat("malformed item (", e.what(), ")"));
    }
    const int64_t n = static_cast<int64_t>(item.n_choices());
    if (n < 2) bad(cat("an item needs at least 2 choices, found ", n));
    if (item.gold < 0 || item.gold >= n) bad(cat("gold index ", item.gold, " is out of range for ", n, " choices"));
    t.items.push_back(std::move(item));
  }
  if (t.items.empty()) throw ConfigError({cat(file, ": no items (a task file holds one JSON object per line)")});
  return t;
}

std::string str_field(const json& j, const char* key, const std::function<void(const std::string&)>& bad) {
  if (!j.contains(key)) bad(cat("missing \"", key, "\""));
  if (!j[key].is_string()) bad(cat("\"", key, "\" is not a string"));
  return j[key].get<std::string>();
}

std::vector<std::string> str_list(const json& j, const char* key, const std::function<void(const std::string&)>& bad) {
  if (!j.contains(key) || !j[key].is_array()) bad(cat("missing \"", key, "\" (a list of strings)"));
  std::vector<std::string> v;
  for (const auto& e : j[key]) {
    if (!e.is_string()) bad(cat("\"", key, "\" holds a non-string"));
    v.push_back(e.get<std::string>());
  }
  return v;
}

// An integer given as a number or a string of digits (HellaSwag's label is either, by source).
int64_t int_field(const json& j, const char* key, const std::function<void(const std::string&)>& bad) {
  if (!j.contains(key)) bad(cat("missing \"", key, "\""));
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      return std::stoll(s);
  }
  bad(cat("\"", key, "\" is not an integer"));
  return 0;
}

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) out += s.substr(pos, hit - pos) + to;
  return out + s.substr(pos);
}

struct KnownTask {
  const char* name;
  std::vector<std::string> files;  // looked for under --data DIR, in order
};

const std::vector<KnownTask>& known_tasks() {
  static const std::vector<KnownTask> all = {
      {"hellaswag", {"hellaswag_val.jsonl", "hellaswag/hellaswag_val.jsonl"}},
      {"arc_easy", {"ARC-Easy-Test.jsonl", "arc/ARC-Easy-Test.jsonl", "ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Test.jsonl"}},
      {"arc_challenge", {"ARC-Challenge-Test.jsonl", "arc/ARC-Challenge-Test.jsonl",
                         "ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Test.jsonl"}},
      {"openbookqa", {"openbookqa/test.jsonl", "OpenBookQA-V1-Sep2018/Data/Main/test.jsonl"}},
      {"piqa", {"piqa/valid.jsonl", "valid.jsonl"}},
      {"winogrande", {"winogrande/dev.jsonl", "winogrande_1.1/dev.jsonl", "dev.jsonl"}},
  };
  return all;
}

// PIQA's labels live beside its questions: valid.jsonl -> valid-labels.lst.
std::string piqa_labels_for(const std::string& file) {
  fs::path p(file);
  return (p.parent_path() / (p.stem().string() + "-labels.lst")).string();
}

bool looks_like_openbookqa(const std::string& file) {
  std::string low = file;
  std::transform(low.begin(), low.end(), low.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return low.find("openbookqa") != std::string::npos || low.find("obqa") != std::string::npos;
}

// Reads a file whose format is recognised by the keys of its first JSON line.
McTask read_any(const std::string& file, const std::string& name, bool openbookqa) {
  std::string text;
  try {
    text = read_text_file(file);
  } catch (const std::runtime_error& e) {
    throw ConfigError({e.what()});
  }
  const size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) throw ConfigError({cat(file, ": no items (a task file holds one JSON object per line)")});
  const std::string first = start == std::string::npos ? "" : text.substr(start, text.find('\n', start) - start);
  json j;
  try {
    j = json::parse(first);
  } catch (const json::exception&) {
  }
  if (!j.is_object()) {
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<long>(start), '\n'));
    throw ConfigError({cat(file, ":", line, ": not a JSON line (a task file holds one JSON object per line: ",
                           "{\"context\", \"choices\", \"gold\"}, or a raw HellaSwag, ARC, OpenBookQA, PIQA or WinoGrande file)")});
  }
  if (j.contains("context") || j.contains("contexts")) return read_generic_jsonl(file, name);
  if (j.contains("ctx_a") && j.contains("endings")) return read_hellaswag_jsonl(file, name);
  if (j.contains("goal") && j.contains("sol1")) return read_piqa_jsonl(file, j.contains("label") ? "" : piqa_labels_for(file), name);
  if (j.contains("sentence") && j.contains("option1")) return read_winogrande_jsonl(file, name);
  if (j.contains("question") && j.contains("answerKey")) return read_arc_jsonl(file, name, openbookqa);
  throw ConfigError({cat(file, ":1: unknown task format (expected {\"context\", \"choices\", \"gold\"}, ",
                         "{\"contexts\", \"continuation\", \"gold\"}, or a raw HellaSwag, ARC, OpenBookQA, PIQA or WinoGrande line)")});
}

}  // namespace

McRequest request_for(const McItem& item, size_t choice) {
  const std::string& ctx = item.contexts[item.multiple_contexts() ? choice : 0];
  const std::string& cont = item.continuations[item.multiple_contexts() ? 0 : choice];
  return {ctx, " " + cont};
}

TokenizedRequest encode_request(const McRequest& r, const EncodeFn& encode, int64_t prefix_token) {
  if (r.context.empty()) return {{prefix_token}, encode(r.continuation)};
  const size_t keep = r.context.find_last_not_of(" \t\n\r\v\f") + 1;  // 0 when all whitespace
  const std::string context = r.context.substr(0, keep);
  const std::string continuation = r.context.substr(keep) + r.continuation;
  std::vector<int64_t> whole = encode(context + continuation), ctx = encode(context);
  TokenizedRequest t;
  t.continuation.assign(whole.begin() + static_cast<long>(std::min(ctx.size(), whole.size())), whole.end());
  t.context = std::move(ctx);
  // A context of whitespace only: lm-eval would score from nothing (a bug there); start from the prefix token.
  if (t.context.empty()) t.context = {prefix_token};
  return t;
}

std::string python_capitalize(const std::string& text) {
  std::string s = text;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) s[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
  }
  return s;
}

std::string hellaswag_preprocess(const std::string& text) {
  std::string s = replace_all(strip(text), " [title]", ". ");
  std::string out;  // re.sub("\\[.*?\\]", "", s): each "[" up to the nearest "]" on its line
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      size_t close = s.find(']', i + 1);
      size_t nl = s.find('\n', i + 1);
      if (close != std::string::npos && (nl == std::string::npos || close < nl)) {
        i = close;
        continue;
      }
    }
    out += s[i];
  }
  return replace_all(out, "  ", " ");
}

McTask read_generic_jsonl(const std::string& file, const std::string& name) {
  return read_lines(file, name, [&](const json& j, const auto& bad) {
    McItem it;
    if (j.contains("contexts")) {  // WinoGrande form: a context per choice, one continuation
      it.contexts = str_list(j, "contexts", bad);
      it.continuations = {str_field(j, "continuation", bad)};
      if (it.contexts.size() < 2) bad(cat("an item needs at least 2 choices, found ", it.contexts.size()));
    } else {
      it.contexts = {str_field(j, "context", bad)};
      it.continuations = str_list(j, "choices", bad);
    }
    it.gold = int_field(j, "gold", bad);
    return it;
  });
}

McTask read_hellaswag_jsonl(const std::string& file, const std::string& name) {
  return read_lines(file, name, [&](const json& j, const auto& bad) {
    McItem it;
    const std::string ctx = str_field(j, "ctx_a", bad) + " " + python_capitalize(str_field(j, "ctx_b", bad));
    it.contexts = {hellaswag_preprocess(str_field(j, "activity_label", bad) + ": " + ctx)};
    for (const auto& e : str_list(j, "endings", bad)) it.continuations.push_back(hellaswag_preprocess(e));
    it.gold = int_field(j, "label", bad);
    return it;
  });
}

McTask read_arc_jsonl(const std::string& file, const std::string& name, bool stem_only) {
  return read_lines(file, name, [&](const json& j, const auto& bad) {
    McItem it;
    std::string stem;
    std::vector<std::string> labels;
    if (!j.contains("question")) bad("missing \"question\"");
    if (j["question"].is_object()) {  // the raw AI2 files: {"question": {"stem", "choices": [{"text", "label"}]}}
      const json& q = j["question"];
      stem = str_field(q, "stem", bad);
      if (!q.contains("choices") || !q["choices"].is_array()) bad("missing \"question.choices\"");
      for (const auto& c : q["choices"]) {
        if (!c.is_object()) bad("\"question.choices\" holds a non-object");
        it.continuations.push_back(str_field(c, "text", bad));
        labels.push_back(str_field(c, "label", bad));
      }
    } else {  // the Hugging Face rows: {"question", "question_stem", "choices": {"text": [...], "label": [...]}}
      stem = str_field(j, j.contains("question_stem") ? "question_stem" : "question", bad);
      if (!j.contains("choices") || !j["choices"].is_object()) bad("missing \"choices\" ({\"text\": [...], \"label\": [...]})");
      it.continuations = str_list(j["choices"], "text", bad);
      labels = str_list(j["choices"], "label", bad);
      if (labels.size() != it.continuations.size()) bad("\"choices.text\" and \"choices.label\" differ in length");
    }
    // lm-eval: choices.label.index(answerKey) (OpenBookQA: answerKey.lstrip()); labels are A-E or 1-4.
    std::string key = str_field(j, "answerKey", bad);
    if (stem_only) key = key.substr(std::min(key.size(), key.find_first_not_of(" \t")));
    auto at = std::find(labels.begin(), labels.end(), key);
    if (at == labels.end()) bad(cat("answerKey '", key, "' is not one of the choice labels (", join(labels, ", "), ")"));
    it.gold = at - labels.begin();
    it.contexts = {stem_only ? stem : "Question: " + stem + "\nAnswer:"};
    return it;
  });
}

McTask read_piqa_jsonl(const std::string& file, const std::string& labels_file, const std::string& name) {
  std::vector<std::string> labels;
  if (!labels_file.empty()) {
    if (!fs::is_regular_file(labels_file))
      throw ConfigError({cat(file, ": PIQA questions without their labels (", labels_file, " is missing)")});
    labels = split(read_text_file(labels_file), '\n');
    while (!labels.empty() && strip(labels.back()).empty()) labels.pop_back();
  }
  size_t index = 0;
  McTask t = read_lines(file, name, [&](const json& j, const auto& bad) {
    McItem it;
    it.contexts = {"Question: " + str_field(j, "goal", bad) + "\nAnswer:"};
    it.continuations = {str_field(j, "sol1", bad), str_field(j, "sol2", bad)};
    if (labels_file.empty()) {
      it.gold = int_field(j, "label", bad);
    } else {
      if (index >= labels.size()) bad(cat("no label for this item (", labels_file, " has ", labels.size(), " lines)"));
      const std::string l = strip(labels[index]);
      if (l != "0" && l != "1") throw ConfigError({cat(labels_file, ":", index + 1, ": a PIQA label is 0 or 1, found '", printable(l, 20), "'")});
      it.gold = l == "1";
    }
    ++index;
    return it;
  });
  if (!labels_file.empty() && index != labels.size())
    throw ConfigError({cat(labels_file, ": ", labels.size(), " labels for ", index, " questions in ", file)});
  return t;
}

McTask read_winogrande_jsonl(const std::string& file, const std::string& name) {
  return read_lines(file, name, [&](const json& j, const auto& bad) {
    McItem it;
    const std::string s = str_field(j, "sentence", bad);
    const size_t blank = s.find('_');
    if (blank == std::string::npos) bad("\"sentence\" has no '_' blank");
    // lm-eval's preprocess_winogrande.py: the sentence up to the blank plus each option, and the
    // rest of the sentence after the blank (stripped) as the shared continuation.
    it.contexts = {s.substr(0, blank) + str_field(j, "option1", bad), s.substr(0, blank) + str_field(j, "option2", bad)};
    it.continuations = {strip(s.substr(blank + 1))};
    const std::string answer = j.contains("answer") && j["answer"].is_number_integer() ? std::to_string(j["answer"].get<int>())
                                                                                        : str_field(j, "answer", bad);
    if (answer != "1" && answer != "2") bad(cat("\"answer\" is \"1\" or \"2\", found '", printable(answer, 20), "'"));
    it.gold = answer == "2";
    return it;
  });
}

const std::vector<std::string>& known_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& t : known_tasks()) v.push_back(t.name);
    return v;
  }();
  return names;
}

McTask load_task(const std::string& name_or_file, const std::string& data_dir, int64_t limit) {
  McTask t;
  auto known = std::find_if(known_tasks().begin(), known_tasks().end(), [&](const KnownTask& k) { return name_or_file == k.name; });
  if (known != known_tasks().end()) {
    std::vector<std::string> looked;
    std::string found;
    for (const auto& f : known->files) {
      fs::path p = fs::path(data_dir.empty() ? "." : data_dir) / f;
      looked.push_back(p.string());
      if (found.empty() && fs::is_regular_file(p)) found = p.string();
    }
    if (found.empty())
      throw ConfigError({cat("task ", name_or_file, ": its file is not under ", data_dir.empty() ? "." : data_dir, " (looked for ",
                             join(looked, ", "), "; give --data DIR, docs/evaluation.md says where to download it)")});
    t = read_any(found, name_or_file, name_or_file == "openbookqa");
  } else if (ends_with(name_or_file, ".jsonl") || fs::exists(name_or_file)) {
    if (!fs::is_regular_file(name_or_file)) throw ConfigError({cat(name_or_file, ": no such task file")});
    t = read_any(name_or_file, fs::path(name_or_file).stem().string(), looks_like_openbookqa(name_or_file));
  } else {
    std::string near = closest_match(name_or_file, known_task_names());
    throw ConfigError({cat("unknown task '", name_or_file, "' (", join(known_task_names(), ", "), ", or a FILE.jsonl)",
                           near.empty() ? "" : "; did you mean '" + near + "'?")});
  }
  if (limit > 0 && static_cast<int64_t>(t.items.size()) > limit) t.items.resize(static_cast<size_t>(limit));
  return t;
}

}  // namespace yt
