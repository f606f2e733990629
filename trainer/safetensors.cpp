// trainer/safetensors.cpp — see safetensors.h.
#include "trainer/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ttt {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this code");

namespace {

// The header may not be larger than this (the reference reader's limit, 100 MB).
constexpr uint64_t kMaxHeader = 100'000'000;

// Bytes per element of every dtype code the format defines (safetensors/src/tensor.rs Dtype).
int64_t dtype_bytes(const std::string& code) {
  static const std::map<std::string, int64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},  {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(code);
  return it == sizes.end() ? -1 : it->second;
}

// IEEE half -> float, exactly (every half is a float).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // normal: rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {  // subnormal half: normalize
    exp = 113;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

}  // namespace

std::string safetensors_dtype(DType d) {
  switch (d) {
    case DType::f64: return "F64";
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u16: return "U16";
  }
  throw std::invalid_argument("safetensors: no dtype code for " + std::string(dtype_name(d)));
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Host copies, in name order (the order of the header's JSON object).
  std::map<std::string, Tensor> host;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__") throw std::invalid_argument("safetensors: invalid tensor name '" + name + "'");
    if (!host.emplace(name, t.detach().to(cpu()).contiguous()).second)
      throw std::invalid_argument("safetensors: duplicate tensor name '" + name + "'");
  }
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : host) {
    const uint64_t n = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header[name] = {{"dtype", safetensors_dtype(t.dtype())}, {"shape", t.shape().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), static_cast<std::streamsize>(n));
    for (const auto& [name, t] : host)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * dtype_size(t.dtype())));
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp);
      throw std::runtime_error("writing '" + tmp + "' failed (disk full?)");
    }
  }
  fs::rename(tmp, path);
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& why) { throw std::runtime_error(path + ": not a valid safetensors file: " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  const uint64_t file_size = fs::file_size(path);
  uint64_t n = 0;
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(&n), 8)) fail("shorter than the 8-byte header size");
  if (n > kMaxHeader || n > file_size - 8) fail("header size " + std::to_string(n) + " exceeds the file");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail("header is not a JSON object");
  data_start_ = 8 + n;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail("__metadata__['" + k + "'] is not a string");
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(where + "needs dtype, shape and data_offsets");
    Entry e;
    if (!v["dtype"].is_string()) fail(where + "dtype is not a string");
    e.dtype = v["dtype"].get<std::string>();
    const int64_t item = dtype_bytes(e.dtype);
    if (item < 0) fail(where + "unknown dtype '" + e.dtype + "'");
    if (!v["shape"].is_array()) fail(where + "shape is not a list");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) fail(where + "shape has a non-integer or negative entry");
      e.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(where + "data_offsets is not [begin, end]");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin) fail(where + "data_offsets end before they begin");
    if (e.end - e.begin != static_cast<uint64_t>(e.shape.numel() * item))
      fail(where + "shape " + e.shape.str() + " of " + e.dtype + " needs " + std::to_string(e.shape.numel() * item) +
           " bytes, data_offsets give " + std::to_string(e.end - e.begin));
    ranges.emplace_back(e.begin, e.end);
    entries_.emplace(name, std::move(e));
  }
  // The ranges must tile [0, buffer size): sorted by start, each begins where the last ended.
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    if (b != at) fail(b < at ? "tensor byte ranges overlap" : "a gap between tensor byte ranges");
    at = e;
  }
  if (at != file_size - data_start_)
    fail("tensors cover " + std::to_string(at) + " bytes but the file holds " + std::to_string(file_size - data_start_));
}

Tensor SafetensorsReader::read(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw std::runtime_error(path_ + ": no tensor '" + name + "'");
  const Entry& e = it->second;
  static const std::map<std::string, DType> ours = {{"F64", DType::f64}, {"F32", DType::f32}, {"BF16", DType::bf16},
                                                    {"I64", DType::i64}, {"I32", DType::i32}, {"U16", DType::u16},
                                                    {"F16", DType::u16}};  // F16: read as bits, widened below
  auto d = ours.find(e.dtype);
  if (d == ours.end())
    throw std::runtime_error(path_ + ": tensor '" + name + "' has dtype " + e.dtype +
                             " (supported: F32, F64, BF16, F16, I64, I32, U16)");
  Tensor t = empty(e.shape, opts(d->second));
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  if (!in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin)))
    throw std::runtime_error(path_ + ": cannot read tensor '" + name + "'");
  if (e.dtype != "F16") return t;
  Tensor f = empty(e.shape, opts(DType::f32));
  const uint16_t* src = t.data<uint16_t>();
  float* dst = f.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = half_to_float(src[i]);
  return f;
}

}  // namespace ttt
