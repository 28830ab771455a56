// Helpers for readers of files we did not just write: overflow-checked arithmetic, names from a file
// made fit for a one-line message, and path checks (no escaping the directory a manifest describes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace yt {

// *out = a * b (a + b); false when the result does not fit in 64 bits.
inline bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool add_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// `s` for a one-line message: control and non-ASCII bytes as \xNN, at most `max` bytes of it then "...".
std::string printable(const std::string& s, size_t max = 120);

// A JSON value as found in a file, for "expected X, found Y" (a template: this header stays JSON-free).
template <class Json>
std::string json_excerpt(const Json& v) {
  return printable(v.dump(), 60);
}

// A whole JSON file; not being JSON is an error naming the file ("PATH: not valid JSON: ...").
nlohmann::json read_json_file(const std::string& path);

// A file name with no directory part: not empty, not "." or "..", no '/' and no NUL.
bool is_plain_file_name(const std::string& s);

// A relative path that stays inside its directory: not empty, not absolute, no NUL, and no "." or
// ".." component (so "train/shard_00000.bin" is fine, "../x" and "/etc/x" are not).
bool is_contained_path(const std::string& s);

}  // namespace yt
