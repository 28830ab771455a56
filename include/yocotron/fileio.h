// Durable file I/O: whole-file reads with errors that name the file, writes that land atomically
// (temporary file beside the target, fsync, rename, fsync of the directory), and checksums.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace yt {

std::string read_text_file(const std::string& path);

// Streams bytes into `path + ".tmp-<pid>"`, then commit() flushes, fsyncs and renames it onto
// `path`. A writer destroyed without commit() removes its temporary file. Errors (a full disk, a
// missing directory) throw std::runtime_error naming the file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();
  uint64_t bytes_written() const { return written_; }
  uint32_t crc32c() const { return crc_; }  // of everything written so far

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  uint32_t crc_ = 0;
};

// A directory built in `staging` (created fresh, beside `target`) and then put in `target`'s place
// whole: commit() moves an existing target aside, renames staging onto it and removes the old one,
// so that target is at every moment the old directory or the new one. Destroyed without commit(),
// it removes staging (a failed or stopped writer leaves nothing). `owner` false: another process
// made staging and commits it; this one only writes into it.
class StagedDirectory {
 public:
  StagedDirectory(std::string target, std::string staging, bool owner = true);
  ~StagedDirectory();
  const std::string& path() const { return staging_; }
  void commit();

  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

 private:
  std::string target_, staging_;
  bool owner_, committed_ = false;
};

struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};

FileDigest write_text_file_atomic(const std::string& path, const std::string& text);
// fsync a directory, so that renames inside it survive a crash.
void fsync_directory(const std::string& dir);

// Removes a file or a directory tree (like `rm -rf`; a missing path is not an error). POSIX nftw,
// not std::filesystem::remove_all: the torch wheel's libtorch.so exports its own copy of the latter,
// which the dynamic linker binds to and which crashes on non-empty directories on GPU nodes.
void remove_tree(const std::string& path);

// CRC-32C (Castagnoli), continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t bytes, uint32_t crc = 0);
// CRC-32C of a whole file, read in chunks; throws naming the file when it cannot be read.
uint32_t crc32c_file(const std::string& path, uint64_t* size_out = nullptr);

}  // namespace yt
