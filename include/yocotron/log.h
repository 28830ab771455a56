// Logging facade. spdlog lives behind this header in a library that never sees torch's include
// path (torch's bundled fmt clashes with the system spdlog on GPU nodes). Every line carries the
// MPI rank; rank 0 prints to the console, and any rank can also write RUN/logs/rank<N>.log.
#pragma once
#include <string>

#include "yocotron/str.h"

namespace yt::log {

enum class Level { Debug, Info, Warn, Error };

// Call once per process after the rank is known. Console output goes to stderr for every rank
// when `all_ranks_to_console` is set, else only rank 0 prints info/debug (warnings and errors
// always print, prefixed with the rank, so a failing rank is never silent).
void init(int rank, bool all_ranks_to_console = false);
void set_level(Level level);
Level parse_level(const std::string& name);  // "debug|info|warn|error"; throws on anything else
// Also write every message of this rank to `path` (directories are created).
void add_file(const std::string& path);
void write(Level level, const std::string& msg);
void flush();

template <class... A>
void debug(const A&... a) { write(Level::Debug, cat(a...)); }
template <class... A>
void info(const A&... a) { write(Level::Info, cat(a...)); }
template <class... A>
void warn(const A&... a) { write(Level::Warn, cat(a...)); }
template <class... A>
void error(const A&... a) { write(Level::Error, cat(a...)); }

}  // namespace yt::log
