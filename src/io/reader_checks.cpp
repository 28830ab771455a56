#include "yocotron/reader_checks.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {

std::string printable(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max) return out + "...";
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

nlohmann::json read_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(cat(path, ": not valid JSON: ", printable(e.what(), 200)));
  }
}

bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

bool is_contained_path(const std::string& s) {
  if (s.empty() || s[0] == '/' || s.find('\0') != std::string::npos) return false;
  for (const auto& part : split(s, '/'))
    if (part == "." || part == "..") return false;
  return true;
}

}  // namespace yt
