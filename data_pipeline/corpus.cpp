#include "yocotron/corpus.h"

#include <glob.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

bool is_corpus_file(const std::string& p) {
  return ends_with(p, ".txt") || ends_with(p, ".jsonl") || ends_with(p, ".jsonl.zst");
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& p) {
    if (seen.insert(p).second) out.push_back(p);
  };
  for (const auto& in : inputs) {
    std::vector<std::string> matches;
    if (has_glob_chars(in)) {
      glob_t g{};
      int rc = ::glob(in.c_str(), 0, nullptr, &g);
      if (rc == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) matches.emplace_back(g.gl_pathv[i]);
      ::globfree(&g);
      if (matches.empty()) throw std::runtime_error(cat(in, ": the pattern matches no file"));
    } else {
      if (!fs::exists(in)) throw std::runtime_error(cat(in, ": no such file or directory"));
      matches.push_back(in);
    }
    for (const auto& m : matches) {
      if (fs::is_directory(m)) {
        std::vector<std::string> found;
        for (const auto& e : fs::recursive_directory_iterator(m))
          if (e.is_regular_file() && is_corpus_file(e.path().string())) found.push_back(e.path().string());
        if (found.empty()) throw std::runtime_error(cat(m, ": directory holds no .txt, .jsonl or .jsonl.zst file"));
        std::sort(found.begin(), found.end());
        for (const auto& f : found) add(f);
      } else {
        if (!is_corpus_file(m))
          throw std::runtime_error(cat(m, ": unsupported input (expected .txt, .jsonl or .jsonl.zst)"));
        add(m);
      }
    }
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Reject overlong encodings, surrogates and code points past U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// Lines of a plain or zstd-compressed file.
struct CorpusReader::LineSource {
  std::string path;
  FILE* f = nullptr;
  ZSTD_DStream* z = nullptr;
  std::vector<char> in_buf, out_buf;
  ZSTD_inBuffer zin{nullptr, 0, 0};
  size_t last_ret = 0;
  std::string buf;
  size_t pos = 0;
  bool eof = false;
  uint64_t line_no = 0;
  uint64_t* bytes;

  LineSource(const std::string& p, uint64_t* byte_counter) : path(p), bytes(byte_counter) {
    std::error_code ec;  // a FIFO or device would block or never end
    if (!std::filesystem::is_regular_file(p, ec)) throw std::runtime_error(cat(p, ": not a regular file (a FIFO, socket, device or directory)"));
    f = std::fopen(p.c_str(), "rb");
    if (!f) throw std::runtime_error(cat(p, ": cannot open: ", std::strerror(errno)));
    if (ends_with(p, ".zst")) {
      z = ZSTD_createDStream();
      ZSTD_initDStream(z);
      in_buf.resize(ZSTD_DStreamInSize());
      out_buf.resize(ZSTD_DStreamOutSize());
    } else {
      in_buf.resize(1 << 20);
    }
  }
  ~LineSource() {
    if (f) std::fclose(f);
    if (z) ZSTD_freeDStream(z);
  }

  // Appends more decompressed bytes to buf; false at the end of the file.
  bool fill() {
    if (eof) return false;
    if (!z) {
      size_t n = std::fread(in_buf.data(), 1, in_buf.size(), f);
      if (n == 0) {
        if (std::ferror(f)) throw std::runtime_error(cat(path, ": read error"));
        eof = true;
        return false;
      }
      buf.append(in_buf.data(), n);
      *bytes += n;
      return true;
    }
    while (true) {
      if (zin.pos == zin.size) {
        size_t n = std::fread(in_buf.data(), 1, in_buf.size(), f);
        if (n == 0) {
          eof = true;
          if (last_ret != 0) throw std::runtime_error(cat(path, ": truncated zstd stream (the last frame is incomplete)"));
          return false;
        }
        zin = {in_buf.data(), n, 0};
      }
      ZSTD_outBuffer zout{out_buf.data(), out_buf.size(), 0};
      last_ret = ZSTD_decompressStream(z, &zout, &zin);
      if (ZSTD_isError(last_ret)) throw std::runtime_error(cat(path, ": corrupt zstd data: ", ZSTD_getErrorName(last_ret)));
      if (zout.pos > 0) {
        buf.append(out_buf.data(), zout.pos);
        *bytes += zout.pos;
        return true;
      }
    }
  }

  bool next_line(std::string& line) {
    while (true) {
      size_t nl = buf.find('\n', pos);
      if (nl != std::string::npos) {
        line.assign(buf, pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        return true;
      }
      buf.erase(0, pos);
      pos = 0;
      if (!fill()) {
        if (buf.empty()) return false;
        line.swap(buf);
        buf.clear();
        ++line_no;
        return true;
      }
    }
  }

  std::string whole() {
    while (fill()) {
    }
    return std::move(buf);
  }
};

CorpusReader::CorpusReader(std::vector<std::string> files, CorpusOptions opts)
    : files_(std::move(files)), opts_(std::move(opts)) {}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::open_next_file() {
  if (started_) ++file_;
  started_ = true;
  lines_.reset();
  pending_.clear();
  pending_pos_ = 0;
  if (file_ >= files_.size()) return false;
  const std::string& p = files_[file_];
  auto src = std::make_unique<LineSource>(p, &bytes_);
  if (ends_with(p, ".txt")) {
    std::string text = src->whole();
    if (!opts_.txt_split_blank_lines) {
      pending_.push_back(std::move(text));
      return true;
    }
    std::string cur, line;
    size_t start = 0;
    auto flush = [&] {
      if (!cur.empty()) pending_.push_back(std::move(cur));
      cur.clear();
    };
    while (start <= text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      line.assign(text, start, nl - start);
      bool blank = line.find_first_not_of(" \t\r") == std::string::npos;
      if (blank) flush();
      else cur += (cur.empty() ? "" : "\n") + line;
      start = nl + 1;
    }
    flush();
    return true;
  }
  lines_ = std::move(src);
  return true;
}

bool CorpusReader::next(Record& r) {
  while (true) {
    if (!started_ && !open_next_file()) return false;
    if (pending_pos_ < pending_.size()) {
      r.data = std::move(pending_[pending_pos_++]);
      r.is_json = false;
      r.file_index = static_cast<uint32_t>(file_);
      r.line = 0;
      return true;
    }
    if (lines_) {
      std::string line;
      while (lines_->next_line(line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines between records
        r.data = std::move(line);
        r.is_json = true;
        r.file_index = static_cast<uint32_t>(file_);
        r.line = lines_->line_no;
        return true;
      }
    }
    if (!open_next_file()) return false;
  }
}

bool record_text(const Record& r, const CorpusOptions& opts, std::string& text, std::string& why) {
  if (!valid_utf8(r.data)) {
    why = "invalid UTF-8";
    return false;
  }
  if (r.is_json) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(r.data);
    } catch (const nlohmann::json::exception&) {
      why = "not JSON";
      return false;
    }
    if (!j.is_object() || !j.contains(opts.jsonl_field)) {
      why = "no field \"" + opts.jsonl_field + "\"";
      return false;
    }
    if (!j[opts.jsonl_field].is_string()) {
      why = "field \"" + opts.jsonl_field + "\" is not a string";
      return false;
    }
    text = j[opts.jsonl_field].get<std::string>();
  } else {
    text = r.data;
  }
  if (text.empty()) {
    why = "empty document";
    return false;
  }
  return true;
}

}  // namespace yt
