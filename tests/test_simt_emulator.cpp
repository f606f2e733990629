// tests/test_simt_emulator.cpp — the host SIMT emulator's thread block clusters (simt_emulator.h,
// the cluster primitives of kernels/cuda/simt.cuh): block ranks, per-block barriers and shared
// memory, the cluster barrier, distributed shared memory (map_rank), and the errors it reports
// (a cluster barrier not every block reaches, an address outside the block's shared memory); and
// the transaction barriers of kernels/cuda/simt_async.cuh (asynchronous stores that complete a
// receiver's phase once all its expected bytes came).
#define TTT_SIMT_EMULATE 1
#include "kernels/cuda/simt.cuh"
#include "kernels/cuda/simt_async.cuh"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "tests/simt_emulator.h"

using namespace ttt;

namespace {

constexpr int kBlocks = 4, kThreads = 64;

// Each thread writes rank · 1000 + tid into slot tid of the next block's shared memory, waits at
// the cluster barrier when `barrier`, then reads its own slot: seen[rank][tid].
std::vector<std::vector<float>> ring_exchange(bool barrier) {
  std::vector<std::vector<float>> seen(kBlocks, std::vector<float>(kThreads, -1.f));
  simt::emulate_cluster(kBlocks, kThreads, kThreads * sizeof(float), [&] {
    const int r = simt::cluster_rank(), t = simt::tid();
    float* own = reinterpret_cast<float*>(simt::block_smem());
    simt::map_rank(own, (r + 1) % simt::cluster_size())[t] = static_cast<float>(r * 1000 + t);
    if (barrier) simt::cluster_sync();
    seen[r][t] = own[t];
    if (barrier) simt::cluster_sync();  // no block leaves while another may still write to it
  });
  return seen;
}

}  // namespace

TEST_CASE("emulated cluster: each block reads what the block before it wrote into its shared memory") {
  const auto seen = ring_exchange(true);
  for (int r = 0; r < kBlocks; ++r)
    for (int t = 0; t < kThreads; ++t) CHECK(seen[r][t] == static_cast<float>(((r + kBlocks - 1) % kBlocks) * 1000 + t));
}

TEST_CASE("emulated cluster: without the cluster barrier some block reads its shared memory before it is written") {
  // Whatever the schedule order, the fiber that runs first reads a slot no other block has reached.
  const auto seen = ring_exchange(false);
  int unwritten = 0;
  for (const auto& b : seen)
    for (float v : b) unwritten += std::isnan(v) ? 1 : 0;
  CHECK(unwritten > 0);
}

TEST_CASE("emulated cluster: block barriers and ranks are per block") {
  std::vector<int> ranks(kBlocks * kThreads, -1), size(kBlocks * kThreads, -1);
  std::vector<float> sums(kBlocks, 0.f);
  simt::emulate_cluster(kBlocks, kThreads, sizeof(float) * kThreads, [&] {
    const int r = simt::cluster_rank(), t = simt::tid();
    ranks[r * kThreads + t] = r;
    size[r * kThreads + t] = simt::threads();
    float* s = reinterpret_cast<float*>(simt::block_smem());
    s[t] = static_cast<float>(r + 1);
    // Blocks pass different numbers of block barriers: they must not wait for each other.
    for (int i = 0; i <= r; ++i) simt::sync();
    if (t == 0) {
      float a = 0;
      for (int i = 0; i < kThreads; ++i) a += s[i];
      sums[r] = a;
    }
  });
  for (int i = 0; i < kBlocks * kThreads; ++i) {
    CHECK(ranks[i] == i / kThreads);
    CHECK(size[i] == kThreads);
  }
  for (int r = 0; r < kBlocks; ++r) CHECK(sums[r] == static_cast<float>(kThreads * (r + 1)));
}

TEST_CASE("emulated cluster: a cluster barrier one block never reaches is reported as a deadlock") {
  CHECK_THROWS_WITH_AS(simt::emulate_cluster(2, 32, 16,
                                             [&] {
                                               if (simt::cluster_rank() == 0) simt::cluster_sync();
                                             }),
                       doctest::Contains("at the cluster barrier"), std::runtime_error);
}

TEST_CASE("emulated cluster: map_rank takes only addresses of the block's shared memory and ranks of the cluster") {
  float outside = 0;
  CHECK_THROWS_WITH_AS(simt::emulate_cluster(2, 32, 16, [&] { simt::map_rank(&outside, 1); }),
                       doctest::Contains("not in the calling block's shared memory"), std::runtime_error);
  CHECK_THROWS_WITH_AS(simt::emulate_cluster(2, 32, 16,
                                             [&] {
                                               simt::map_rank(reinterpret_cast<float*>(simt::block_smem()), 2);
                                             }),
                       doctest::Contains("not in the cluster"), std::runtime_error);
}

namespace {

// Shared memory of the transaction-barrier exchange: two barriers and two slot sets, alternating
// by round, and a pair of floats a thread.
struct XShared {
  alignas(8) uint64_t bar[2];
  float slot[2][kBlocks][kThreads];
  float pair[2][kBlocks][kThreads][2];
};

// Each of `rounds` rounds: every thread of block r sends round · 10000 + r · 1000 + tid to slot
// [r][tid] of every block (one float, then the value and its negation as two), counted on that
// block's barrier of the round's parity, which its thread 0 arms for `expect` bytes; then waits for
// that barrier's phase and sums what it received into seen[r][round][tid]. Barriers and slots
// alternate by round: a block sends round i + 2 only after its wait for round i + 1, which needs
// every block's round i + 1, sent after that block's wait and reads of round i (simt_async.cuh).
std::vector<std::vector<float>> xbar_all_to_all(int rounds, uint32_t expect) {
  std::vector<std::vector<float>> seen(kBlocks, std::vector<float>(static_cast<size_t>(rounds) * kThreads, -1.f));
  simt::emulate_cluster(kBlocks, kThreads, sizeof(XShared), [&] {
    const int r = simt::cluster_rank(), t = simt::tid();
    auto& S = *reinterpret_cast<XShared*>(simt::block_smem());
    if (t == 0) {
      simt::xbar_init(&S.bar[0]);
      simt::xbar_init(&S.bar[1]);
      simt::xbar_init_fence();
    }
    simt::cluster_sync();
    for (int i = 0; i < rounds; ++i) {
      const int b = i % 2;
      if (t == 0) simt::xbar_expect(&S.bar[b], expect);
      const float v = static_cast<float>(i * 10000 + r * 1000 + t);
      for (int to = 0; to < kBlocks; ++to) {
        simt::st_async(&S.slot[b][r][t], to, v, &S.bar[b]);
        simt::st_async2(&S.pair[b][r][t][0], to, v, -v, &S.bar[b]);
      }
      simt::xbar_wait(&S.bar[b], static_cast<uint32_t>((i / 2) % 2));
      float sum = 0;
      for (int from = 0; from < kBlocks; ++from)
        sum += S.slot[b][from][t] + S.pair[b][from][t][0] + S.pair[b][from][t][1];
      seen[r][i * kThreads + t] = sum;
    }
    simt::cluster_sync();  // no block leaves while another's stores to it may be in flight
  });
  return seen;
}

constexpr uint32_t kRoundBytes = kBlocks * kThreads * 3 * sizeof(float);

}  // namespace

TEST_CASE("emulated transaction barriers: each round's phase completes when its bytes came, and the data is there") {
  constexpr int rounds = 5;
  const auto seen = xbar_all_to_all(rounds, kRoundBytes);
  for (int r = 0; r < kBlocks; ++r)
    for (int i = 0; i < rounds; ++i)
      for (int t = 0; t < kThreads; ++t) {
        float want = 0;  // each block's value once (its pair cancels)
        for (int from = 0; from < kBlocks; ++from) want += static_cast<float>(i * 10000 + from * 1000 + t);
        CHECK(seen[r][i * kThreads + t] == want);
      }
}

TEST_CASE("emulated transaction barriers: a phase expecting more bytes than come is reported as a deadlock") {
  CHECK_THROWS_WITH_AS(xbar_all_to_all(2, kRoundBytes + 4), doctest::Contains("waiting for a transaction barrier"),
                       std::runtime_error);
}
