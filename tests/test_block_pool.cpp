// tests/test_block_pool.cpp — the CUDA caching allocator's bookkeeping (kernels/block_pool.h) on
// the CPU, with a fake driver that hands out address ranges, counts segments, can run out of
// memory at a given capacity and can fail the way a faulted CUDA context does.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <vector>

#include "kernels/block_pool.h"

using namespace ttt;

namespace {

constexpr size_t MiB = size_t{1} << 20;

// Address ranges 1 TiB apart (nothing is ever dereferenced), with a capacity in bytes.
struct FakeDriver {
  size_t capacity = SIZE_MAX, in_use = 0, mallocs = 0, frees = 0;
  uintptr_t next = uintptr_t{1} << 40;
  bool faulted = false;  // every call fails as with a sticky CUDA error
  std::map<uintptr_t, size_t> segments;

  BlockPool::Driver driver() {
    return {[this](size_t n) -> void* {
              if (faulted) throw std::runtime_error("cudaMalloc: an illegal memory access was encountered");
              if (in_use + n > capacity) return nullptr;
              ++mallocs;
              in_use += n;
              uintptr_t p = next;
              next += uintptr_t{1} << 40;
              segments[p] = n;
              return reinterpret_cast<void*>(p);
            },
            [this](void* p) {
              if (faulted) throw std::runtime_error("cudaFree: an illegal memory access was encountered");
              auto it = segments.find(reinterpret_cast<uintptr_t>(p));
              REQUIRE(it != segments.end());
              in_use -= it->second;
              segments.erase(it);
              ++frees;
            }};
  }
};

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

TEST_CASE("block pool: sizes round to 512 B; a freed block is reused; counters") {
  FakeDriver d;
  BlockPool pool(d.driver());
  void* a = pool.alloc(1000);
  CHECK(pool.block_size(a) == 1024);
  CHECK(pool.allocated() == 1024);
  CHECK(pool.reserved() == 2 * MiB);  // one small segment
  pool.free(a);
  CHECK(pool.allocated() == 0);
  CHECK(pool.peak() == 1024);
  void* b = pool.alloc(900);
  CHECK(b == a);  // best fit from the merged free segment starts at its base again
  CHECK(d.mallocs == 1);
  CHECK_THROWS_AS(pool.free(reinterpret_cast<void*>(addr(b) + 512)), std::logic_error);
  pool.free(b);
  pool.reset_peak();
  CHECK(pool.peak() == 0);
}

TEST_CASE("block pool: a cached large block serves smaller requests (split), neighbours merge on free") {
  FakeDriver d;
  BlockPool pool(d.driver());
  void* big = pool.alloc(64 * MiB);
  CHECK(pool.reserved() == 64 * MiB);
  pool.free(big);
  // Three smaller requests are carved out of the one cached segment: no new segment.
  void* x = pool.alloc(10 * MiB);
  void* y = pool.alloc(20 * MiB + 7);
  void* z = pool.alloc(30 * MiB);
  CHECK(d.mallocs == 1);
  CHECK(addr(x) == addr(big));
  CHECK(addr(y) == addr(big) + 10 * MiB);
  CHECK(pool.block_size(y) == 20 * MiB + 512);
  CHECK(pool.reserved() == 64 * MiB);
  // Freed in an order that needs merging on both sides: the whole segment becomes one block.
  pool.free(y);
  pool.free(x);
  pool.free(z);
  CHECK(pool.allocated() == 0);
  void* again = pool.alloc(64 * MiB);
  CHECK(again == big);
  CHECK(d.mallocs == 1);
  pool.free(again);
  CHECK(pool.release_free_segments() == 64 * MiB);
  CHECK(pool.reserved() == 0);
  CHECK(d.in_use == 0);
}

TEST_CASE("block pool: the waste of a block is bounded (< 512 B small, <= 1 MiB + 511 B large)") {
  FakeDriver d;
  BlockPool pool(d.driver());
  std::vector<void*> live;
  uint64_t s = 12345;
  for (int i = 0; i < 2000; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    const size_t n = 1 + (s >> 33) % (i % 3 == 0 ? 64 * MiB : 512 * 1024);
    void* p = pool.alloc(n);
    const size_t got = pool.block_size(p);
    REQUIRE(got >= n);
    if (n <= BlockPool::kSmallSize) CHECK(got - n < 512);
    else CHECK(got - n <= MiB + 511);
    live.push_back(p);
    if (live.size() > 40) {  // free a pseudo-random live block
      const size_t k = (s >> 17) % live.size();
      pool.free(live[k]);
      live.erase(live.begin() + static_cast<long>(k));
    }
  }
  for (void* p : live) pool.free(p);
  CHECK(pool.allocated() == 0);
  const size_t reserved = pool.reserved();
  CHECK(pool.release_free_segments() == reserved);  // every segment merged back into one free block
  CHECK(pool.reserved() == 0);
  CHECK(pool.segments() == 0);
  CHECK(d.in_use == 0);
}

TEST_CASE("block pool: evaluating at growing contexts reuses memory instead of growing the cache") {
  // Per context T, the tensors of one forward (sizes ∝ T and ∝ T²), all freed after it: each
  // context's blocks fit in the memory cached by the previous (smaller) ones only partly, but the
  // pool never holds much more than the largest working set. With exact size classes the cache
  // held every context's blocks at once (the sum over contexts).
  FakeDriver d;
  BlockPool pool(d.driver());
  size_t largest_working_set = 0, sum_of_working_sets = 0;
  for (int64_t T : {32768, 1024, 2048, 4096, 8192, 16384, 32768, 1024}) {
    std::vector<void*> blocks;
    size_t working = 0;
    for (int layer = 0; layer < 4; ++layer)
      for (size_t n : {static_cast<size_t>(T) * 768 * 4, static_cast<size_t>(T) * 3072 * 4,
                       static_cast<size_t>(T) * static_cast<size_t>(T) / 64, size_t{4096}}) {
        blocks.push_back(pool.alloc(n));
        working += n;
      }
    largest_working_set = std::max(largest_working_set, working);
    sum_of_working_sets += working;
    for (void* p : blocks) pool.free(p);
  }
  INFO("reserved " << pool.reserved() / MiB << " MiB, largest working set " << largest_working_set / MiB
                   << " MiB, sum " << sum_of_working_sets / MiB << " MiB");
  CHECK(pool.reserved() <= largest_working_set + largest_working_set / 8 + 64 * MiB);
  CHECK(pool.reserved() < sum_of_working_sets / 2);
}

TEST_CASE("block pool: out of memory returns the free segments and retries; then reports null") {
  FakeDriver d;
  d.capacity = 100 * MiB;
  BlockPool pool(d.driver());
  void* a = pool.alloc(60 * MiB);
  pool.free(a);                    // cached: the driver still has 60 MiB out
  void* b = pool.alloc(80 * MiB);  // no free block fits; the driver refuses 80 MiB more ...
  REQUIRE(b != nullptr);           // ... so the cached 60 MiB segment went back and the retry worked
  CHECK(d.frees == 1);
  CHECK(pool.reserved() == 80 * MiB);
  CHECK(pool.alloc(40 * MiB) == nullptr);  // really out of memory: null, nothing leaked
  CHECK(pool.allocated() == 80 * MiB);
  pool.free(b);
}

TEST_CASE("block pool: a graph's pool (keep_segments) keeps its free segments when the driver is out of memory") {
  // A CUDA graph's recorded kernels use the addresses of blocks freed during the recording again at
  // every replay: returning those segments to the driver under memory pressure made a later replay
  // read freed memory (an illegal access, Transformer++ decoding at batch 16 after 1k, 4k and 16k).
  FakeDriver d;
  d.capacity = 100 * MiB;
  BlockPool graph(d.driver(), /*keep_segments=*/true);
  void* a = graph.alloc(60 * MiB);
  graph.free(a);
  CHECK(graph.alloc(80 * MiB) == nullptr);  // the caller frees other memory and retries instead
  CHECK(d.frees == 0);
  CHECK(graph.reserved() == 60 * MiB);
  d.capacity = 200 * MiB;
  void* b = graph.alloc(80 * MiB);
  CHECK(b != nullptr);
  CHECK(graph.alloc(50 * MiB) == a);  // the kept segment still serves requests
  graph.free(b);
}

TEST_CASE("block pool: driver failures that are not out-of-memory propagate") {
  FakeDriver d;
  BlockPool pool(d.driver());
  void* a = pool.alloc(4 * MiB);
  void* s = pool.alloc(100);
  pool.free(a);
  pool.free(s);
  d.faulted = true;
  CHECK(pool.alloc(100) == s);  // served from the cached small segment, without the driver
  CHECK_THROWS_WITH_AS(pool.alloc(64 * MiB), doctest::Contains("illegal memory access"), std::runtime_error);
  CHECK_THROWS_WITH_AS(pool.release_free_segments(), doctest::Contains("cudaFree"), std::runtime_error);
}

TEST_CASE("block pool: owns() names the pool of a block (how the CUDA allocator routes a free to a graph's pool)") {
  FakeDriver d;
  BlockPool shared(d.driver()), graph(d.driver());
  void* a = shared.alloc(4096);
  void* b = graph.alloc(4096);
  void* split = graph.alloc(600);  // a block carved from the same small segment as b
  CHECK(shared.owns(a));
  CHECK_FALSE(shared.owns(b));
  CHECK(graph.owns(b));
  CHECK(graph.owns(split));
  CHECK_FALSE(graph.owns(reinterpret_cast<void*>(addr(b) + 512)));  // inside a block is not a block
  graph.free(b);
  CHECK_FALSE(graph.owns(b));  // free again: no longer handed out
  graph.free(split);
  CHECK(graph.allocated() == 0);
  CHECK(graph.release_free_segments() == 2 * MiB);  // a retired graph's pool gives its memory back
  shared.free(a);
}
