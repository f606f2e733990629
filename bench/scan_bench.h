// bench/scan_bench.h — what the fused-scan benchmarks (ttt_scan_bench, ttt_mlp_scan_bench) share:
// their options, the median wall time of synchronized runs and the [B, H, T, F] view of a tensor the
// scan calls take.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "bench/bench_util.h"  // median_ms
#include "kernels/backend.h"
#include "kernels/ttt_linear_scan.h"

namespace ttt::bench {

// --B --H --T --F --K --G --precision bf16|fp32 --io bf16|fp32 --device --reps (defaults: one 125M
// layer at 8 x 2048, checkpoint group 4, bf16 products, float32 storage of the [B, H, T, F] tensors;
// --io bf16 stores them as bf16, as a model under autocast hands them over).
struct ScanOptions {
  int64_t B = 8, H = 12, T = 2048, F = 64, K = 16, G = 4;
  bool low = true;
  bool bio = false;
  Device device = cuda();
  int reps = 20;
  int group = 1;  // ttt_scan_bench: also time this many forward calls as one group (a wavefront's wave)
  std::vector<int64_t> clusters = {1};  // ttt_mlp_scan_bench: blocks a head, each timed (TTTMLPScanShape::cluster)
  std::vector<std::string> walks = {"fused"};  // ttt_mlp_scan_bench: the backward's form(s), fused and / or split
};

// "a,b,c" as its comma-separated items.
inline std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> r;
  for (size_t at = 0; at <= list.size();) {
    const size_t end = std::min(list.find(',', at), list.size());
    r.push_back(list.substr(at, end - at));
    at = end + 1;
  }
  return r;
}

inline ScanOptions parse_scan_options(int argc, char** argv, const std::string& prog) {
  ScanOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(prog + ": " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--B") o.B = std::stoll(next());
    else if (a == "--H") o.H = std::stoll(next());
    else if (a == "--T") o.T = std::stoll(next());
    else if (a == "--F") o.F = std::stoll(next());
    else if (a == "--K") o.K = std::stoll(next());
    else if (a == "--G") o.G = std::stoll(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--group") o.group = std::stoi(next());
    else if (a == "--cluster") {
      o.clusters.clear();
      for (const std::string& c : split_list(next())) o.clusters.push_back(std::stoll(c));
    } else if (a == "--walk") {
      o.walks = split_list(next());
      for (const std::string& w : o.walks)
        if (w != "fused" && w != "split") throw std::invalid_argument(prog + ": --walk fused|split[,...]");
    }
    else if (a == "--device") o.device = parse_device(next());
    else if (a == "--precision") {
      const std::string p = next();
      if (p != "bf16" && p != "fp32") throw std::invalid_argument(prog + ": --precision bf16|fp32");
      o.low = p == "bf16";
    } else if (a == "--io") {
      const std::string p = next();
      if (p != "bf16" && p != "fp32") throw std::invalid_argument(prog + ": --io bf16|fp32");
      o.bio = p == "bf16";
    } else {
      throw std::invalid_argument(prog + ": unknown option " + a);
    }
  }
  return o;
}

inline BHTView bht(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; }

}  // namespace ttt::bench
