// Small string helpers shared by every module: building messages without fmt (torch and spdlog
// ship clashing fmt versions on GPU nodes), joining, and "did you mean" suggestions.
#pragma once
#include <sstream>
#include <string>
#include <vector>

namespace yt {

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

std::string join(const std::vector<std::string>& parts, const std::string& sep);
// "a", "a or b", "a, b, or c": the alternatives an error message offers.
std::string join_or(const std::vector<std::string>& parts);
std::vector<std::string> split(const std::string& s, char sep);
bool starts_with(const std::string& s, const std::string& prefix);
bool ends_with(const std::string& s, const std::string& suffix);

// Levenshtein distance; used to suggest the closest known name for a typo.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `name`, or "" when nothing is reasonably close.
std::string closest_match(const std::string& name, const std::vector<std::string>& candidates);

// Shortest decimal text that reads back to the same double ("0.1", "1e-05", "35").
std::string format_double(double v);

// "512 bytes", "1.50 KiB", ..., "2.00 EiB".
std::string format_bytes(double bytes);

}  // namespace yt
