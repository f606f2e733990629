// kernels/philox.h — Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), shared by the CPU and CUDA backends so a seed gives identical numbers on both.
//
// Element i of a draw at generator offset o has absolute index n = o + i and uses lane n % 4 of
// Philox block n / 4. uniform = (u32 >> 8) * 2^-24 in [0, 1). normal = Box-Muller on the lane of
// block (n/4, z=0) and the same lane of block (n/4, z=1), computed in double, so CPU and CUDA
// agree to rounding and any element can be generated independently of the others.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/dtype.h"

namespace ttt::philox {

struct U4 { uint32_t x, y, z, w; };

TTT_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// counter (c0, c1, c2, c3), key (k0, k1)
TTT_HD U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(M0, c.x, hi0, lo0);
    mulhilo(M1, c.z, hi1, lo1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += W0;
    k1 += W1;
  }
  return c;
}

TTT_HD uint32_t lane(const U4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Two uniform floats in (0, 1] and [0, 1) for element index `idx` (absolute: offset + i).
TTT_HD void uniform_pair(uint64_t seed, uint64_t idx, float& u1, float& u2) {
  uint64_t block = idx >> 2;
  int l = static_cast<int>(idx & 3);
  U4 c{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u};
  U4 r = philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  c.z = 1u;
  U4 s = philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  u1 = (static_cast<float>(lane(r, l) >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
  u2 = static_cast<float>(lane(s, l) >> 8) * (1.0f / 16777216.0f);           // [0, 1)
}

TTT_HD float uniform(uint64_t seed, uint64_t idx) {
  uint64_t block = idx >> 2;
  U4 c{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u};
  U4 r = philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(lane(r, static_cast<int>(idx & 3)) >> 8) * (1.0f / 16777216.0f);
}

// Standard normal via Box-Muller, computed in double so CPU and CUDA agree to ~1 ulp of float.
TTT_HD double normal(uint64_t seed, uint64_t idx) {
  float u1, u2;
  uniform_pair(seed, idx, u1, u2);
  return sqrt(-2.0 * log(static_cast<double>(u1))) * cos(6.283185307179586 * static_cast<double>(u2));
}

}  // namespace ttt::philox
