// kernels/block_pool.h — the bookkeeping of the CUDA caching allocator (kernels/cuda/allocator.cu),
// free of CUDA so that it is tested on the CPU with a fake driver (tests/test_block_pool.cpp).
//
// Memory comes from the driver in segments. A request takes the smallest free block that fits
// (best fit) and splits off what it does not need when that rest is big enough to serve another
// request; a freed block merges with the free neighbours of its segment. So blocks cached after
// one shape serve any smaller request later — evaluating at contexts 1k, 2k, ..., 32k reuses the
// memory of the larger contexts instead of growing the cache with blocks of every exact size until
// an out-of-memory flushes it — and the waste of a handed-out block is bounded:
//   - requests round up to 512 B;
//   - small requests (<= 1 MiB) are carved from 2 MiB segments and split down to 512 B, so a small
//     block wastes < 512 B;
//   - large requests come from segments of 20 MiB (requests < 10 MiB) or of the request rounded up
//     to 2 MiB; a rest is split off when it exceeds 1 MiB, so a large block wastes <= 1 MiB + 511 B;
//   - small and large blocks live in separate pools, so small tensors never pin a large segment.
// When the driver refuses a segment (out of memory), every fully free segment is returned to it
// and the request is retried once; only then does alloc() report failure. A pool made with
// keep_segments (a CUDA graph's: the addresses of its free blocks are baked into the recorded
// kernels, which use them again at every replay) never returns segments on its own.
// This is the scheme of PyTorch's CUDACachingAllocator (block splitting, best fit, small/large
// pools), reduced to what one stream per device needs: no per-stream pools, no events.
//
// Not thread-safe: the CUDA allocator wraps it in a mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <stdexcept>
#include <unordered_map>

namespace ttt {

class BlockPool {
 public:
  static constexpr size_t kRound = 512;                   // every size is a multiple of this
  static constexpr size_t kSmallSize = size_t{1} << 20;   // requests up to this are small
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  static constexpr size_t kMinLargeSplit = size_t{1} << 20;  // large rests above this are split off
  static constexpr size_t kLargeSegment = size_t{20} << 20;  // for large requests below kMidSize
  static constexpr size_t kMidSize = size_t{10} << 20;
  static constexpr size_t kLargeRound = size_t{2} << 20;     // larger requests: own segment, rounded

  // The driver: segment_alloc returns null when the device is out of memory and throws for any
  // other failure; segment_free throws on failure.
  struct Driver {
    std::function<void*(size_t)> segment_alloc;
    std::function<void(void*)> segment_free;
  };

  explicit BlockPool(Driver d, bool keep_segments = false) : driver_(std::move(d)), keep_segments_(keep_segments) {}
  ~BlockPool() {
    // Blocks still handed out keep their segments (freed with the process); free ones are only
    // bookkeeping here: the CUDA backends live until exit and never destroy their pool.
    for (Block* b : all_) delete b;
  }
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  static size_t round_size(size_t n) { return n == 0 ? kRound : (n + kRound - 1) / kRound * kRound; }
  // The segment a request of (rounded) `size` gets when no free block fits.
  static size_t segment_size(size_t size) {
    if (size <= kSmallSize) return kSmallSegment;
    if (size < kMidSize) return kLargeSegment;
    return (size + kLargeRound - 1) / kLargeRound * kLargeRound;
  }

  // A block of at least nbytes, or null when the driver is out of memory even after the free
  // segments were returned to it.
  void* alloc(size_t nbytes) {
    const size_t size = round_size(nbytes);
    const bool small = size <= kSmallSize;
    FreeSet& pool = small ? small_free_ : large_free_;
    Block probe{0, size};
    auto it = pool.lower_bound(&probe);
    Block* b = nullptr;
    if (it != pool.end()) {
      b = *it;
      pool.erase(it);
    } else {
      const size_t seg = segment_size(size);
      void* p = driver_.segment_alloc(seg);
      if (!p && !keep_segments_) {
        release_free_segments();
        p = driver_.segment_alloc(seg);
      }
      if (!p) return nullptr;
      b = new Block{reinterpret_cast<uintptr_t>(p), seg};
      b->small = small;
      all_.insert(b);
      reserved_ += seg;
      ++segments_;
    }
    split(b, size, pool);
    b->free = false;
    live_.emplace(b->addr, b);
    allocated_ += b->size;
    if (allocated_ > peak_) peak_ = allocated_;
    return reinterpret_cast<void*>(b->addr);
  }

  // Returns p's block to its pool (merged with free neighbours). Throws for a pointer this pool
  // did not hand out.
  void free(void* p) {
    if (!p) return;
    auto it = live_.find(reinterpret_cast<uintptr_t>(p));
    if (it == live_.end()) throw std::logic_error("CUDA allocator: free of a pointer it did not allocate");
    Block* b = it->second;
    live_.erase(it);
    allocated_ -= b->size;
    b->free = true;
    FreeSet& pool = b->small ? small_free_ : large_free_;
    if (b->prev && b->prev->free) b = merge(b->prev, b, pool);
    if (b->next && b->next->free) b = merge(b, b->next, pool);
    pool.insert(b);
  }

  // Gives every fully free segment back to the driver; returns the bytes released.
  size_t release_free_segments() {
    size_t released = 0;
    for (FreeSet* pool : {&small_free_, &large_free_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        it = pool->erase(it);
        driver_.segment_free(reinterpret_cast<void*>(b->addr));
        released += b->size;
        reserved_ -= b->size;
        --segments_;
        all_.erase(b);
        delete b;
      }
    }
    return released;
  }

  size_t allocated() const { return allocated_; }  // bytes of the blocks handed out (rounded sizes)
  size_t peak() const { return peak_; }
  void reset_peak() { peak_ = allocated_; }
  size_t reserved() const { return reserved_; }    // bytes of all segments (handed out + free)
  size_t segments() const { return segments_; }
  size_t live_blocks() const { return live_.size(); }
  bool owns(const void* p) const { return live_.count(reinterpret_cast<uintptr_t>(p)) != 0; }
  // Size of the block behind a pointer this pool handed out (0 if it did not).
  size_t block_size(const void* p) const {
    auto it = live_.find(reinterpret_cast<uintptr_t>(p));
    return it == live_.end() ? 0 : it->second->size;
  }

 private:
  struct Block {
    uintptr_t addr;
    size_t size;
    bool free = true;
    bool small = false;
    Block* prev = nullptr;  // neighbours within the same segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->addr < b->addr;
    }
  };
  using FreeSet = std::set<Block*, BySizeThenAddress>;

  // Keeps `size` bytes in b and returns the rest to `pool` as a new free block, when the rest is
  // worth keeping apart (see the file comment).
  void split(Block* b, size_t size, FreeSet& pool) {
    const size_t rest = b->size - size;
    if (b->small ? rest < kRound : rest <= kMinLargeSplit) return;
    Block* r = new Block{b->addr + size, rest};
    r->small = b->small;
    r->prev = b;
    r->next = b->next;
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    all_.insert(r);
    pool.insert(r);
  }

  // Merges the free neighbour pair (a, b) of one segment into a; b is deleted. Whichever of the
  // two was in the pool leaves it (erasing the other is a no-op); the caller inserts the result.
  Block* merge(Block* a, Block* b, FreeSet& pool) {
    pool.erase(a);
    pool.erase(b);
    a->size += b->size;
    a->next = b->next;
    if (b->next) b->next->prev = a;
    all_.erase(b);
    delete b;
    return a;
  }

  Driver driver_;
  bool keep_segments_ = false;
  FreeSet small_free_, large_free_;
  std::unordered_map<uintptr_t, Block*> live_;
  std::set<Block*> all_;  // every block, for the destructor
  size_t allocated_ = 0, peak_ = 0, reserved_ = 0, segments_ = 0;
};

}  // namespace ttt
