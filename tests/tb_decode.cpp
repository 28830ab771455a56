#include "tb_decode.h"

#include <cstring>

#include "catch.hpp"
#include "yocotron/tensorboard.h"

namespace yt::test {

std::vector<PbField> decode_protobuf(const std::string& b) {
  std::vector<PbField> out;
  size_t p = 0;
  auto vi = [&] {
    uint64_t v = 0;
    int shift = 0;
    while (true) {
      auto c = static_cast<unsigned char>(b.at(p++));
      v |= static_cast<uint64_t>(c & 0x7F) << shift;
      shift += 7;
      if (!(c & 0x80)) return v;
    }
  };
  while (p < b.size()) {
    uint64_t key = vi();
    PbField f{static_cast<int>(key >> 3), static_cast<int>(key & 7), 0, {}};
    if (f.wire == 0) f.varint = vi();
    else if (f.wire == 1) f.bytes = b.substr(p, 8), p += 8;
    else if (f.wire == 5) f.bytes = b.substr(p, 4), p += 4;
    else {
      uint64_t n = vi();
      f.bytes = b.substr(p, n);
      p += n;
    }
    out.push_back(f);
  }
  return out;
}

std::map<std::string, std::map<int64_t, float>> tb_scalars(const std::filesystem::path& tb_dir, int* repeats) {
  std::map<std::string, std::map<int64_t, float>> out;
  if (repeats) *repeats = 0;
  for (const auto& e : std::filesystem::directory_iterator(tb_dir))
    for (const auto& rec : read_tfrecords(e.path().string())) {
      auto fields = decode_protobuf(rec);  // Event: 1 wall_time, 2 step, 5 summary
      if (fields.size() < 3 || fields[2].number != 5) continue;
      REQUIRE(fields[1].number == 2);
      const auto step = static_cast<int64_t>(fields[1].varint);
      for (const auto& v : decode_protobuf(fields[2].bytes)) {  // Summary.Value: 1 tag, 2 simple_value
        auto kv = decode_protobuf(v.bytes);
        REQUIRE((kv.size() == 2 && kv[0].number == 1 && kv[1].number == 2 && kv[1].wire == 5));
        float f;
        std::memcpy(&f, kv[1].bytes.data(), 4);
        if (repeats && out[kv[0].bytes].count(step)) ++*repeats;
        out[kv[0].bytes][step] = f;
      }
    }
  return out;
}

}  // namespace yt::test
