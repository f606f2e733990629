// trainer/safetensors.h — the safetensors file format (Hugging Face), read and written with
// nlohmann-json; no other dependency.
//
// Layout (the format's specification, github.com/huggingface/safetensors README):
//   bytes 0..7   N, the header size, unsigned 64-bit little-endian
//   bytes 8..8+N the header: a JSON object {name: {"dtype": "F32", "shape": [..], "data_offsets":
//                [begin, end]}, ..., "__metadata__": {string: string}} (utf-8; may end in spaces)
//   the rest     the byte buffer: each tensor row-major, little-endian, at [begin, end) of it
// The writer pads the header with spaces to a multiple of 8 bytes (so tensors stay aligned, as
// the reference writer does), orders the tensors by name (the JSON object's order) and writes
// them back to back; the reader checks what the reference reader checks: the header parses,
// every entry has a known dtype, a shape whose size matches its byte range, and the ranges tile
// the buffer exactly (no gap, no overlap, nothing after the last one).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

// Writes `tensors` (any device; copied to the host) to `path` through `path.tmp` and a rename,
// so an interrupted write never leaves a partial file under the final name. Names must be unique.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

class SafetensorsReader {
 public:
  struct Entry {
    std::string dtype;      // the file's code: F32, BF16, F16, F64, I64, I32, U16, ...
    Shape shape;
    uint64_t begin = 0;     // byte range in the buffer after the header
    uint64_t end = 0;
  };
  // Reads and checks the header; throws std::runtime_error naming the file and what is wrong.
  explicit SafetensorsReader(const std::string& path);
  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // The tensor on the CPU in the file's dtype (F16 is widened to float32, exactly: no tensor dtype
  // of ours holds it). Throws naming the file and tensor for a missing name or an unsupported dtype.
  Tensor read(const std::string& name) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// "F32" for DType::f32 etc.; throws for a dtype safetensors has no code for.
std::string safetensors_dtype(DType d);

}  // namespace ttt
