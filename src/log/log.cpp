// The only translation unit that includes spdlog. It must never include torch headers.
#include "yocotron/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace yt::log {
namespace {

struct State {
  std::mutex mu;
  int rank = 0;
  bool all_ranks = false;
  std::shared_ptr<spdlog::logger> console;
  std::shared_ptr<spdlog::logger> file;
  Level level = Level::Info;
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::Debug: return spdlog::level::debug;
    case Level::Info: return spdlog::level::info;
    case Level::Warn: return spdlog::level::warn;
    case Level::Error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> make_console(int rank) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto lg = std::make_shared<spdlog::logger>("yocotron", sink);
  lg->set_pattern("[%H:%M:%S] [rank " + std::to_string(rank) + "] %^%l%$: %v");
  lg->set_level(spdlog::level::debug);
  return lg;
}

}  // namespace

void init(int rank, bool all_ranks_to_console) {
  auto& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.rank = rank;
  s.all_ranks = all_ranks_to_console;
  s.console = make_console(rank);
}

void set_level(Level level) {
  auto& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.level = level;
}

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "warn") return Level::Warn;
  if (name == "error") return Level::Error;
  throw std::invalid_argument("unknown log level '" + name + "' (expected debug|info|warn|error)");
}

void add_file(const std::string& path) {
  auto& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  s.file = std::make_shared<spdlog::logger>("yocotron-file", sink);
  s.file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(s.rank) + "] %l: %v");
  s.file->set_level(spdlog::level::debug);
  s.file->flush_on(spdlog::level::warn);
}

void write(Level level, const std::string& msg) {
  auto& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (level < s.level) return;
  if (!s.console) s.console = make_console(s.rank);
  bool to_console = s.rank == 0 || s.all_ranks || level >= Level::Warn;
  if (to_console) s.console->log(to_spd(level), msg);
  if (s.file) s.file->log(to_spd(level), msg);
}

void flush() {
  auto& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (s.console) s.console->flush();
  if (s.file) s.file->flush();
}

}  // namespace yt::log
