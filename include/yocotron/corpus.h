// Reading raw corpora: files, directories and globs of .txt (one document per file, or split on
// blank lines), .jsonl (one JSON object per line, text in a configurable field) and .jsonl.zst
// (a zstd stream of the same), mixed freely.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace yt {

struct CorpusOptions {
  bool txt_split_blank_lines = false;  // .txt: split into documents at blank lines (else one per file)
  std::string jsonl_field = "text";
};

// Expands files, directories (recursively: .txt, .jsonl, .jsonl.zst) and glob patterns into a
// sorted, de-duplicated file list. A path that does not exist or a pattern that matches nothing
// is an error naming it.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

// One raw record: a .txt document, or one line of a JSON-lines file (parsed by record_text, on a
// worker thread).
struct Record {
  std::string data;
  bool is_json = false;
  uint32_t file_index = 0;
  uint64_t line = 0;  // 1-based line of a JSON record
};

class CorpusReader {
 public:
  CorpusReader(std::vector<std::string> files, CorpusOptions opts);
  ~CorpusReader();
  // False at the end of the last file. Throws naming the file on I/O or decompression errors.
  bool next(Record& r);
  uint64_t bytes_read() const { return bytes_; }  // uncompressed bytes so far
  const std::vector<std::string>& files() const { return files_; }

 private:
  struct LineSource;
  bool open_next_file();
  std::vector<std::string> files_;
  CorpusOptions opts_;
  size_t file_ = 0;
  bool started_ = false;
  std::unique_ptr<LineSource> lines_;
  std::vector<std::string> pending_;  // blank-line-split documents of the current .txt file
  size_t pending_pos_ = 0;
  uint64_t bytes_ = 0;
};

// The document text of a record, or false with the reason (not JSON, no such field, not a string,
// invalid UTF-8, empty).
bool record_text(const Record& r, const CorpusOptions& opts, std::string& text, std::string& why);
bool valid_utf8(std::string_view s);

}  // namespace yt
