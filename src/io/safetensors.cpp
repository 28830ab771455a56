#include "yocotron/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
const DtypeName kDtypes[] = {
    {at::kFloat, "F32"}, {at::kBFloat16, "BF16"}, {at::kHalf, "F16"}, {at::kDouble, "F64"},
    {at::kLong, "I64"},  {at::kInt, "I32"},       {at::kShort, "I16"}, {at::kByte, "U8"},
    {at::kChar, "I8"},   {at::kBool, "BOOL"},
};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw std::runtime_error(cat("safetensors: unsupported dtype ", c10::toString(t)));
}

bool dtype_from_name(const std::string& n, at::ScalarType* out) {
  for (const auto& d : kDtypes) {
    if (n == d.name) {
      *out = d.type;
      return true;
    }
  }
  return false;
}

}  // namespace

FileDigest save_safetensors(const std::string& path, const NamedTensors& tensors,
                            const std::map<std::string, std::string>& metadata, const std::function<void()>& before_each) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> cpu;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(at::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // align the data section to 8 bytes
  uint64_t n = text.size();
  AtomicFile f(path);
  f.write(&n, 8);
  f.write(text);
  for (const auto& c : cpu) {
    if (before_each) before_each();
    f.write(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  }
  f.commit();
  return {f.bytes_written(), f.crc32c()};
}

SafetensorsFile load_safetensors(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(cat(path, ": cannot open: ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  off_t file_size = ::lseek(fd, 0, SEEK_END);
  auto read_at = [&](void* dst, uint64_t bytes, uint64_t at) {
    char* p = static_cast<char*>(dst);
    while (bytes > 0) {
      ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(at));
      if (n <= 0) throw std::runtime_error(cat(path, ": truncated or unreadable at byte ", at));
      p += n;
      at += static_cast<uint64_t>(n);
      bytes -= static_cast<uint64_t>(n);
    }
  };
  uint64_t header_len = 0;
  if (file_size < 8) throw std::runtime_error(cat(path, ": not a safetensors file (", file_size, " bytes)"));
  read_at(&header_len, 8, 0);
  if (header_len > static_cast<uint64_t>(file_size) - 8 || header_len > (100u << 20))
    throw std::runtime_error(cat(path, ": corrupt safetensors header length ", header_len));
  std::string text(header_len, '\0');
  read_at(text.data(), header_len, 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(cat(path, ": corrupt safetensors header: ", e.what()));
  }
  if (!header.is_object()) throw std::runtime_error(cat(path, ": safetensors header is not a JSON object"));
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = static_cast<uint64_t>(file_size) - data_start;
  SafetensorsFile out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const auto& e = it.value();
    at::ScalarType type;
    try {
      if (!dtype_from_name(e.at("dtype").get<std::string>(), &type))
        throw std::runtime_error(cat("unsupported dtype ", e.at("dtype").get<std::string>()));
      auto shape = e.at("shape").get<std::vector<int64_t>>();
      auto offs = e.at("data_offsets").get<std::vector<uint64_t>>();
      auto t = at::empty(shape, at::TensorOptions().dtype(type));
      uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (offs.size() != 2 || offs[1] < offs[0] || offs[1] - offs[0] != bytes || offs[1] > data_size)
        throw std::runtime_error("data_offsets do not match its shape and the file size");
      read_at(t.data_ptr(), bytes, data_start + offs[0]);
      out.tensors[it.key()] = t;
    } catch (const nlohmann::json::exception& ex) {
      throw std::runtime_error(cat(path, ": tensor '", it.key(), "': malformed entry: ", ex.what()));
    } catch (const std::runtime_error& ex) {
      std::string what = ex.what();
      if (starts_with(what, path)) throw;
      throw std::runtime_error(cat(path, ": tensor '", it.key(), "': ", what));
    }
  }
  return out;
}

}  // namespace yt
