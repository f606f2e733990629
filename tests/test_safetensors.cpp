// tests/test_safetensors.cpp — the safetensors reader/writer (trainer/safetensors.h): a file
// written byte by byte here from the format's specification reads back the hand-chosen values
// (float32, float16 incl. a subnormal and inf, bfloat16, int64); what the writer produces has the
// specified layout and reads back bit for bit; malformed files are refused with the reason.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/trainer_test_util.h"
#include "trainer/safetensors.h"

using namespace ttt;
namespace fs = std::filesystem;

namespace {

// A file: 8-byte little-endian header size, the header text, then `data`.
void write_raw(const std::string& path, const std::string& header, const std::string& data, int64_t claimed = -1) {
  const uint64_t n = claimed >= 0 ? static_cast<uint64_t>(claimed) : header.size();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary) << bytes << header << data;
}

template <class T> std::string bytes_of(std::initializer_list<T> v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsReader r(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a file written by hand from the specification reads back its values") {
  const std::string path = testing::tmp_path("st_hand.safetensors");
  // F16 bits: 1.0, -2.0, the smallest subnormal 2^-24, +inf; BF16 bits: 1.0, -0.5.
  const std::string data = bytes_of<float>({1.0f, -2.5f, 3.25f}) + bytes_of<uint16_t>({0x3C00, 0xC000, 0x0001, 0x7C00}) +
                           bytes_of<uint16_t>({0x3F80, 0xBF00}) + bytes_of<int64_t>({-7, 1LL << 40});
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"h":{"dtype":"F16","shape":[2,2],"data_offsets":[12,20]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[20,24]},"i":{"dtype":"I64","shape":[1,2],"data_offsets":[24,40]},)"
      R"("__metadata__":{"format":"pt"}}  )";  // trailing spaces are allowed
  write_raw(path, header, data);
  SafetensorsReader r(path);
  CHECK(r.entries().size() == 4);
  CHECK(r.metadata().at("format") == "pt");
  CHECK(r.read("a").tolist<float>() == std::vector<float>{1.0f, -2.5f, 3.25f});
  Tensor h = r.read("h");
  CHECK(h.dtype() == DType::f32);
  CHECK(h.shape() == Shape{2, 2});
  CHECK(h.tolist<float>() == std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), std::numeric_limits<float>::infinity()});
  CHECK(r.read("b").dtype() == DType::bf16);
  CHECK(r.read("b").to(DType::f32).tolist<float>() == std::vector<float>{1.0f, -0.5f});
  CHECK(r.read("i").tolist<int64_t>() == std::vector<int64_t>{-7, 1LL << 40});
  CHECK_THROWS_WITH_AS(r.read("zz"), doctest::Contains("no tensor 'zz'"), std::runtime_error);
  fs::remove(path);
}

TEST_CASE("the writer lays tensors out by name, pads the header to 8 bytes, and reads back bit for bit") {
  const std::string path = testing::tmp_path("st_write.safetensors");
  Generator g(3);
  Tensor w = randn({3, 5}, g), d = randn({2}, g, opts(DType::f64)), b = randn({4}, g).to(DType::bf16);
  Tensor ids = from_vector_i64({4, -1, 9}, {3});
  write_safetensors(path, {{"w", w}, {"d", d}, {"ids", ids}, {"b", b}}, {{"format", "pt"}});
  CHECK_FALSE(fs::exists(path + ".tmp"));

  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  auto header = nlohmann::json::parse(text);
  // Names in order b, d, ids, w; each range starts where the previous ended.
  CHECK(header["b"]["data_offsets"] == nlohmann::json({0, 8}));
  CHECK(header["d"]["data_offsets"] == nlohmann::json({8, 24}));
  CHECK(header["ids"]["data_offsets"] == nlohmann::json({24, 48}));
  CHECK(header["w"]["data_offsets"] == nlohmann::json({48, 108}));
  CHECK(header["w"]["dtype"] == "F32");
  CHECK(header["w"]["shape"] == nlohmann::json({3, 5}));
  CHECK(header["ids"]["dtype"] == "I64");
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(fs::file_size(path) == 8 + n + 108);

  SafetensorsReader r(path);
  CHECK(r.read("w").tolist<float>() == w.tolist<float>());
  CHECK(r.read("d").tolist<double>() == d.tolist<double>());
  CHECK(r.read("b").to(DType::f32).tolist<float>() == b.to(DType::f32).tolist<float>());
  CHECK(r.read("ids").tolist<int64_t>() == std::vector<int64_t>{4, -1, 9});

  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"x", w}, {"x", d}}), doctest::Contains("duplicate tensor name 'x'"),
                       std::invalid_argument);
  fs::remove(path);
}

TEST_CASE("malformed files are refused with the reason") {
  const std::string path = testing::tmp_path("st_bad.safetensors");
  const std::string eight = bytes_of<float>({1.0f, 2.0f});
  auto entry = [](const char* name, const char* dtype, const char* shape, int b, int e) {
    std::string s = "\"";
    s.append(name).append("\":{\"dtype\":\"").append(dtype).append("\",\"shape\":").append(shape);
    s.append(",\"data_offsets\":[").append(std::to_string(b)).append(",").append(std::to_string(e)).append("]}");
    return s;
  };
  // {e1,e2,...}: built by appending (GCC 12 warns wrongly about "{" + std::string&&).
  auto obj = [](std::initializer_list<std::string> entries) {
    std::string s = "{";
    for (const auto& e : entries) s.append(s.size() > 1 ? "," : "").append(e);
    return s.append("}");
  };
  struct Case {
    std::string header, data, message;
    int64_t claimed = -1;
  };
  const std::vector<Case> cases = {
      {obj({entry("a", "F32", "[2]", 0, 8)}), eight, "exceeds the file", 4096},
      {"{not json", eight, "header is not JSON"},
      {"[1,2]", eight, "not a JSON object"},
      {obj({entry("a", "F32", "[3]", 0, 8)}), eight, "needs 12 bytes"},
      {obj({entry("a", "Q7", "[2]", 0, 8)}), eight, "unknown dtype 'Q7'"},
      {obj({entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 2, 6)}), eight, "overlap"},
      {obj({entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 8, 12)}), eight + eight, "gap"},
      {obj({entry("a", "F32", "[1]", 0, 4)}), eight, "cover 4 bytes but the file holds 8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight, "needs dtype, shape and data_offsets"},
  };
  for (const auto& c : cases) {
    write_raw(path, c.header, c.data, c.claimed);
    CAPTURE(c.header);
    const std::string err = error_of(path);
    CHECK(err.find("not a valid safetensors file") != std::string::npos);
    CHECK(err.find(c.message) != std::string::npos);
  }
  std::ofstream(path, std::ios::binary) << "abc";
  CHECK(error_of(path).find("shorter than the 8-byte header size") != std::string::npos);
  // A dtype the format knows but our tensors do not hold opens, and is refused when read.
  write_raw(path, obj({entry("u", "U8", "[8]", 0, 8)}), eight);
  CHECK_THROWS_WITH_AS(SafetensorsReader(path).read("u"), doctest::Contains("has dtype U8"), std::runtime_error);
  fs::remove(path);
}
