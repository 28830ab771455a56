#include "yocotron/run_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

std::string read_fd(int fd) {
  std::string out;
  char buf[512];
  off_t off = 0;
  while (true) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
    if (out.size() > 4096) break;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\0')) out.pop_back();
  return out;
}

std::string now_text() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

}  // namespace

std::unique_ptr<RunDirLock> RunDirLock::try_acquire(const std::string& run_dir, const std::string& what,
                                                    std::string* holder, std::string* warning) {
  fs::create_directories(run_dir);
  const std::string path = (fs::path(run_dir) / ".lock").string();
  // O_NOFOLLOW: a symlink planted as .lock must not make us truncate whatever it points at.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno == ELOOP)
    throw std::runtime_error(cat(path, ": is a symbolic link, not the run directory's lock file (remove it)"));
  if (fd < 0) throw std::runtime_error(cat(path, ": cannot open the run directory's lock file: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(cat(path, ": is not a regular file, so not the run directory's lock file (remove it)"));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      // The holder writes its description right after locking: give it a moment if it has just started.
      std::string text;
      for (int i = 0; i < 20 && (text = read_fd(fd)).empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ::close(fd);
      const std::string prefix = what + " on ";
      if (starts_with(text, prefix)) text = text.substr(prefix.size());
      *holder = text.empty() ? "a process that has not described itself yet" : text;
      return nullptr;
    }
    if (err == ENOSYS || err == ENOLCK || err == EOPNOTSUPP || err == EINVAL) {
      *warning = cat(path, ": this filesystem does not support flock (", std::strerror(err),
                     "); running without the run-directory lock, so make sure no other trainer uses ", run_dir);
      return std::unique_ptr<RunDirLock>(new RunDirLock(fd));
    }
    ::close(fd);
    throw std::runtime_error(cat(path, ": cannot lock the run directory: ", std::strerror(err)));
  }
  char host[256] = "unknown";
  ::gethostname(host, sizeof host - 1);
  const std::string text = cat(what, " on host ", host, ", pid ", ::getpid(), ", since ", now_text(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(cat(path, ": cannot write the lock file: ", std::strerror(err)));
  }
  return std::unique_ptr<RunDirLock>(new RunDirLock(fd));
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace yt
