#include "yocotron/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "yocotron/reader_checks.h"
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

namespace {

struct Entry {
  std::string name;
  at::ScalarType type;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};


// Checks one header entry against the data section's size before anything is allocated.
Entry parse_entry(const std::string& name, const nlohmann::json& e, uint64_t data_size) {
  Entry out;
  out.name = name;
  if (!e.is_object()) throw std::runtime_error(cat("expected an object {dtype, shape, data_offsets}, found ", json_excerpt(e)));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!e.contains(key)) throw std::runtime_error(cat("missing \"", key, "\""));
  const auto& dtype = e["dtype"];
  if (!dtype.is_string() || !dtype_from_name(dtype.get<std::string>(), &out.type))
    throw std::runtime_error(cat("unknown dtype ", json_excerpt(dtype), " (this build reads F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)"));
  const auto& shape = e["shape"];
  if (!shape.is_array()) throw std::runtime_error(cat("shape: expected a list of integers, found ", json_excerpt(shape)));
  if (shape.size() > 64) throw std::runtime_error(cat("shape has ", shape.size(), " dimensions (at most 64)"));
  // The product of the dimensions (zeros counted as ones, so that no stride overflows either) and
  // the byte size must fit in int64, the type torch sizes tensors with.
  uint64_t product = 1;
  bool empty = false;
  for (const auto& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned())
      throw std::runtime_error(cat("shape ", json_excerpt(shape), " has a negative dimension"));
    if (!d.is_number_unsigned()) throw std::runtime_error(cat("shape ", json_excerpt(shape), " holds ", json_excerpt(d), ", not an integer"));
    uint64_t v = d.get<uint64_t>();
    if (!mul_ok(product, std::max<uint64_t>(v, 1), &product) || product > static_cast<uint64_t>(INT64_MAX))
      throw std::runtime_error(cat("shape ", json_excerpt(shape), ": the element count overflows 64 bits"));
    empty = empty || v == 0;
    out.shape.push_back(static_cast<int64_t>(v));
  }
  const uint64_t numel = empty ? 0 : product;
  uint64_t bytes = 0;
  if (!mul_ok(numel, c10::elementSize(out.type), &bytes) || bytes > static_cast<uint64_t>(INT64_MAX))
    throw std::runtime_error(cat("shape ", json_excerpt(shape), ": the byte size overflows 64 bits"));
  const auto& offs = e["data_offsets"];
  if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
    throw std::runtime_error(cat("data_offsets: expected [begin, end] of non-negative integers, found ", json_excerpt(offs)));
  out.begin = offs[0].get<uint64_t>();
  out.end = offs[1].get<uint64_t>();
  if (out.begin > out.end) throw std::runtime_error(cat("data_offsets [", out.begin, ", ", out.end, "]: begin is after end"));
  if (out.end > data_size)
    throw std::runtime_error(cat("data_offsets [", out.begin, ", ", out.end, "] end past the data section (", data_size,
                                 " bytes): truncated or corrupt file"));
  if (out.end - out.begin != bytes)
    throw std::runtime_error(cat("data_offsets [", out.begin, ", ", out.end, "] hold ", out.end - out.begin, " bytes, but ",
                                 dtype.get<std::string>(), " ", json_excerpt(shape), " needs ", bytes));
  return out;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path, const std::function<bool(const std::string&)>& only) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block (checked below)
  if (fd < 0) throw std::runtime_error(cat(path, ": cannot open: ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw std::runtime_error(cat(path, ": cannot stat: ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw std::runtime_error(cat(path, ": not a safetensors file (", S_ISDIR(st.st_mode) ? "a directory" : "not a regular file", ")"));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
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
  if (header_len > file_size - 8)
    throw std::runtime_error(cat(path, ": corrupt safetensors header length ", header_len, " (past the end of the file's ",
                                 file_size, " bytes)"));
  if (header_len > (100u << 20))
    throw std::runtime_error(cat(path, ": corrupt safetensors header length ", header_len, " (more than 100 MiB)"));
  std::string text(header_len, '\0');
  read_at(text.data(), header_len, 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(cat(path, ": corrupt safetensors header: ", printable(e.what(), 200)));
  }
  if (!header.is_object()) throw std::runtime_error(cat(path, ": safetensors header is not a JSON object"));
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw std::runtime_error(cat(path, ": __metadata__ is not a JSON object"));
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string())
          throw std::runtime_error(cat(path, ": __metadata__ '", printable(m.key()), "' is not a string"));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    try {
      entries.push_back(parse_entry(it.key(), it.value(), data_size));
    } catch (const std::exception& ex) {
      throw std::runtime_error(cat(path, ": tensor '", printable(it.key()), "': ", ex.what()));
    }
  }
  // No two tensors may share bytes.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& a = *by_offset[i - 1];
    const Entry& b = *by_offset[i];
    if (b.begin < a.end)
      throw std::runtime_error(cat(path, ": tensor '", printable(b.name), "': data_offsets [", b.begin, ", ", b.end,
                                   "] overlap tensor '", printable(a.name), "' [", a.begin, ", ", a.end, "]"));
  }
  // Every size is now bounded by the file's: allocate and read.
  for (const auto& e : entries) {
    if (only && !only(e.name)) continue;  // validated like the rest, not read
    auto t = at::empty(e.shape, at::TensorOptions().dtype(e.type));
    read_at(t.data_ptr(), e.end - e.begin, data_start + e.begin);
    out.tensors[e.name] = t;
  }
  return out;
}

}  // namespace yt
