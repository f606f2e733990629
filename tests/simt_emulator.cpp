// tests/simt_emulator.cpp — see simt_emulator.h.
#include "tests/simt_emulator.h"

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace ttt::simt {

namespace {

constexpr size_t kStack = 256 * 1024;

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
  const void* waiting = nullptr;  // the barrier it waits at
};

// A barrier over a set of fibers: generation counting.
struct Barrier {
  int count = 0;
  uint64_t gen = 0;
};

// Per-warp exchange slots for the collective operations.
struct WarpSlots {
  Barrier bar;
  float f[32];
  const void* addr[32];
  uint32_t a[32][4], b[32][2];
};

// One thread block of the cluster: its barrier and shared memory.
struct Block {
  Barrier bar;
  std::vector<char> smem_storage;
  char* smem = nullptr;
};

// The fibers of a cluster of `blocks` thread blocks (a lone block is a cluster of one): fiber i is
// thread i % threads of block i / threads, and warp i / 32 of the cluster.
struct Cluster {
  int threads = 0;  // per block
  size_t smem_bytes = 0;
  std::vector<Block> blocks;
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int current = -1;
  Barrier bar;  // the cluster barrier
  std::vector<WarpSlots> warps;
  uint64_t events = 0;  // arrivals, barrier releases and finished fibers: what the deadlock check watches
  // Asynchronous stores in flight (simt_async.cuh): to the last block, held until nothing else can
  // move; to the others, delivered after each scheduling pass.
  struct InFlight {
    int rank;
    size_t dst, bar;  // offsets in the receiver's shared memory
    float v[2];
    int n;
  };
  std::vector<InFlight> in_flight;
  const std::function<void()>* body = nullptr;
  std::string error;
  Block& block() { return blocks[static_cast<size_t>(current / threads)]; }
};

Cluster* g_cluster = nullptr;

void yield() { swapcontext(&g_cluster->fibers[g_cluster->current].ctx, &g_cluster->scheduler); }

// Waits until all `n` participants arrived at barrier b.
void arrive_and_wait(Barrier& b, int n) {
  const uint64_t gen = b.gen;
  ++g_cluster->events;
  if (++b.count == n) {
    b.count = 0;
    ++b.gen;
    return;
  }
  g_cluster->fibers[g_cluster->current].waiting = &b;
  while (b.gen == gen) yield();
  g_cluster->fibers[g_cluster->current].waiting = nullptr;
}

// Who waits where, for the deadlock message.
std::string describe_waits(const Cluster& cl) {
  int done = 0, at_block = 0, at_cluster = 0, at_xbar = 0;
  std::string warps;
  for (size_t i = 0; i < cl.fibers.size(); ++i) {
    const Fiber& f = cl.fibers[i];
    if (f.done) ++done;
    else if (f.waiting == &cl.blocks[i / static_cast<size_t>(cl.threads)].bar) ++at_block;
    else if (f.waiting == &cl.bar) ++at_cluster;
    else if (f.waiting && f.waiting != &cl.warps[i / 32].bar) ++at_xbar;
  }
  for (size_t w = 0; w < cl.warps.size(); ++w) {
    int n = 0;
    for (int l = 0; l < 32; ++l)
      if (cl.fibers[w * 32 + l].waiting == &cl.warps[w].bar) ++n;
    if (n) warps += " warp " + std::to_string(w) + ": " + std::to_string(n) + " lanes in a collective;";
  }
  std::string s = std::to_string(done) + " threads finished, " + std::to_string(at_block) + " at a block barrier";
  if (cl.blocks.size() > 1) s += ", " + std::to_string(at_cluster) + " at the cluster barrier";
  if (at_xbar) s += ", " + std::to_string(at_xbar) + " waiting for a transaction barrier";
  return s + ";" + warps;
}

void trampoline(int index) {
  Cluster* cl = g_cluster;
  try {
    (*cl->body)();
  } catch (const std::exception& e) {
    if (cl->error.empty())
      cl->error = "block " + std::to_string(index / cl->threads) + " thread " + std::to_string(index % cl->threads) +
                  ": " + e.what();
  }
  cl->fibers[index].done = true;
  ++cl->events;
  swapcontext(&cl->fibers[index].ctx, &cl->scheduler);
}

WarpSlots& my_warp() { return g_cluster->warps[g_cluster->current / 32]; }
int my_lane() { return g_cluster->current % 32; }
void warp_sync() { arrive_and_wait(my_warp().bar, 32); }

uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
float bf(uint32_t reg, int half) {
  bf16 v;
  v.bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu);
  return v.to_float();
}

// Lane l's part of D += A B for an m16n8kK MMA (its C fragment: rows g, g + 8, columns 2t, 2t + 1).
template <int K>
void accumulate_fragment(float d[4], const float (&A)[16][K], const float (&B)[K][8], int l) {
  const int g = l / 4, t = l % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >> 1) * 8, col = 2 * t + (e & 1);
    float s = d[e];
    for (int k = 0; k < K; ++k) s += A[row][k] * B[k][col];
    d[e] = s;
  }
}

}  // namespace

int emu_tid() { return g_cluster->current % g_cluster->threads; }
int emu_block_threads() { return g_cluster->threads; }
void emu_sync() { arrive_and_wait(g_cluster->block().bar, g_cluster->threads); }
int emu_cluster_rank() { return g_cluster->current / g_cluster->threads; }
int emu_cluster_size() { return static_cast<int>(g_cluster->blocks.size()); }
void emu_cluster_sync() { arrive_and_wait(g_cluster->bar, static_cast<int>(g_cluster->fibers.size())); }

// The address of the same byte of block `rank`'s shared memory as p of the caller's block (mapa).
void* emu_map_rank(const void* p, int rank) {
  Cluster& cl = *g_cluster;
  const char* c = static_cast<const char*>(p);
  const char* own = cl.block().smem;
  if (c < own || c >= own + cl.smem_bytes)
    throw std::runtime_error("map_rank: the address is not in the calling block's shared memory");
  if (rank < 0 || rank >= static_cast<int>(cl.blocks.size()))
    throw std::runtime_error("map_rank: block rank " + std::to_string(rank) + " is not in the cluster");
  return cl.blocks[static_cast<size_t>(rank)].smem + (c - own);
}
void emu_syncwarp() { warp_sync(); }

float emu_shfl_xor(float v, int mask) {
  WarpSlots& w = my_warp();
  const int l = my_lane();
  w.f[l] = v;
  warp_sync();
  const float r = w.f[l ^ mask];
  warp_sync();
  return r;
}

// ldmatrix .x4 (.trans): lane l supplies the address of row (l % 8) of matrix l / 8. Without
// .trans, lane L receives elements (row L/4, cols 2(L%4), 2(L%4)+1) of each matrix; with .trans,
// the same positions of the transposed matrix.
void emu_ldmatrix(uint32_t* r, int n, const void* addr, bool trans) {
  WarpSlots& w = my_warp();
  const int l = my_lane();
  w.addr[l] = addr;
  warp_sync();
  for (int j = 0; j < n; ++j) {
    uint16_t e[2];
    for (int h = 0; h < 2; ++h) {
      if (!trans) {
        const char* row = static_cast<const char*>(w.addr[j * 8 + l / 4]);
        e[h] = load_u16(row + 2 * (2 * (l % 4) + h));
      } else {
        const char* row = static_cast<const char*>(w.addr[j * 8 + 2 * (l % 4) + h]);
        e[h] = load_u16(row + 2 * (l / 4));
      }
    }
    r[j] = static_cast<uint32_t>(e[0]) | (static_cast<uint32_t>(e[1]) << 16);
  }
  warp_sync();
}

// mma.m16n8k16 row.col f32.bf16.bf16.f32: d += A B with
//   A (16x16): a[0] rows g, cols 2t..2t+1; a[1] rows g+8; a[2] rows g, cols +8; a[3] rows g+8, cols +8
//   B (16x8):  b[0] rows 2t..2t+1, col g; b[1] rows +8
//   D (16x8):  d[0..1] row g, cols 2t..2t+1; d[2..3] row g+8
void emu_mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  WarpSlots& w = my_warp();
  const int l = my_lane();
  std::memcpy(w.a[l], a, sizeof(w.a[l]));
  std::memcpy(w.b[l], b, sizeof(w.b[l]));
  warp_sync();
  float A[16][16], B[16][8];
  for (int L = 0; L < 32; ++L) {
    const int g = L / 4, t = L % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = bf(w.a[L][0], h);
      A[g + 8][2 * t + h] = bf(w.a[L][1], h);
      A[g][2 * t + 8 + h] = bf(w.a[L][2], h);
      A[g + 8][2 * t + 8 + h] = bf(w.a[L][3], h);
      B[2 * t + h][g] = bf(w.b[L][0], h);
      B[2 * t + 8 + h][g] = bf(w.b[L][1], h);
    }
  }
  warp_sync();
  accumulate_fragment(d, A, B, l);
}

// mma.m16n8k8 row.col f32.tf32.tf32.f32: d += A B with
//   A (16x8): a[0] row g, col t; a[1] row g+8; a[2] row g, col t+4; a[3] row g+8, col t+4
//   B (8x8):  b[0] row t, col g; b[1] row t+4
//   D (16x8): as m16n8k16's
// The hardware reads the top 19 bits of each operand (sign, exponent, 10 mantissa bits): so does this.
void emu_mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  WarpSlots& w = my_warp();
  const int l = my_lane();
  std::memcpy(w.a[l], a, sizeof(w.a[l]));
  std::memcpy(w.b[l], b, sizeof(w.b[l]));
  warp_sync();
  auto tf = [](uint32_t bits) {
    bits &= 0xffffe000u;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  };
  float A[16][8], B[8][8];
  for (int L = 0; L < 32; ++L) {
    const int g = L / 4, t = L % 4;
    A[g][t] = tf(w.a[L][0]);
    A[g + 8][t] = tf(w.a[L][1]);
    A[g][t + 4] = tf(w.a[L][2]);
    A[g + 8][t + 4] = tf(w.a[L][3]);
    B[t][g] = tf(w.b[L][0]);
    B[t + 4][g] = tf(w.b[L][1]);
  }
  warp_sync();
  accumulate_fragment(d, A, B, l);
}

namespace {

// Transaction barriers (kernels/cuda/simt_async.cuh), kept in the barrier's 8 bytes of shared
// memory: the transaction count, whether the phase's one arrival is pending, and the phase.
struct XbarState {
  int32_t tx;
  uint16_t pending;
  uint16_t phase;
};
static_assert(sizeof(XbarState) == 8, "an mbarrier is 8 bytes");

XbarState load_xbar(const uint64_t* bar) {
  XbarState s;
  std::memcpy(&s, bar, 8);
  return s;
}
// Stores s; completes the phase when its arrival and every byte have come (and says so).
bool store_xbar(uint64_t* bar, XbarState s) {
  const bool complete = s.pending == 0 && s.tx == 0;
  if (complete) {
    s.phase ^= 1;
    s.pending = 1;
    ++g_cluster->events;
  }
  std::memcpy(bar, &s, 8);
  return complete;
}

}  // namespace

void emu_xbar_init(uint64_t* bar) {
  const XbarState s{0, 1, 0};
  std::memcpy(bar, &s, 8);
}
// Arms as late as it can: only once every other thread of the cluster waits (or is done), so that
// the senders' bytes come before the arm (the transaction count below zero) as far as the kernel
// lets them.
void emu_xbar_expect(uint64_t* bar, uint32_t bytes) {
  Cluster& cl = *g_cluster;
  Fiber& me = cl.fibers[static_cast<size_t>(cl.current)];
  me.waiting = bar;
  for (;;) {
    bool others_wait = true;
    for (const Fiber& f : cl.fibers) others_wait = others_wait && (&f == &me || f.done || f.waiting);
    if (others_wait) break;
    yield();
  }
  me.waiting = nullptr;
  XbarState s = load_xbar(bar);
  if (s.pending != 1) throw std::runtime_error("xbar_expect: the phase's arrival came already");
  s.pending = 0;
  s.tx += static_cast<int32_t>(bytes);
  ++g_cluster->events;
  store_xbar(bar, s);
}
void emu_xbar_wait(uint64_t* bar, uint32_t parity) {
  g_cluster->fibers[g_cluster->current].waiting = bar;
  while (load_xbar(bar).phase == parity) yield();
  g_cluster->fibers[g_cluster->current].waiting = nullptr;
}
// The store is in flight until the scheduler delivers it (deliver_in_flight): stores to the last
// block of the cluster arrive late and newest first, so that a kernel sending a phase's bytes to a
// block before that block's previous phase completed mixes the two phases' counts (a deadlock, or
// a phase completing before its data came: wrong results).
void emu_st_async(float* dst, int rank, const float* src, int n, uint64_t* bar) {
  Cluster& cl = *g_cluster;
  const char* own = cl.block().smem;
  emu_map_rank(dst, rank);  // checks the address and the rank
  emu_map_rank(bar, rank);
  Cluster::InFlight f{rank, static_cast<size_t>(reinterpret_cast<char*>(dst) - own),
                      static_cast<size_t>(reinterpret_cast<char*>(bar) - own), {src[0], n > 1 ? src[1] : 0.f}, n};
  cl.in_flight.push_back(f);
  ++cl.events;
}

namespace {

// Lands one store; true when it completed its barrier's phase.
bool deliver(Cluster& cl, const Cluster::InFlight& f) {
  char* smem = cl.blocks[static_cast<size_t>(f.rank)].smem;
  std::memcpy(smem + f.dst, f.v, sizeof(float) * static_cast<size_t>(f.n));
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem + f.bar);
  XbarState s = load_xbar(bar);
  s.tx -= static_cast<int32_t>(sizeof(float)) * f.n;
  ++cl.events;
  return store_xbar(bar, s);
}

// Delivers the stores in flight to every block but the last, in order. With `late`, those to the
// last block too, newest first, up to the first that completes a phase: its waiting threads then
// run before the older stores land (a phase completed by a later phase's bytes shows as missing
// data). Returns whether any was delivered.
bool deliver_in_flight(Cluster& cl, bool late) {
  const int slow = static_cast<int>(cl.blocks.size()) - 1;
  std::vector<Cluster::InFlight> keep;
  bool any = false;
  for (const Cluster::InFlight& f : cl.in_flight) {
    if (f.rank == slow) {
      keep.push_back(f);
      continue;
    }
    deliver(cl, f);
    any = true;
  }
  while (late && !keep.empty()) {
    const Cluster::InFlight f = keep.back();
    keep.pop_back();
    any = true;
    if (deliver(cl, f)) break;
  }
  cl.in_flight = std::move(keep);
  return any;
}

}  // namespace

char* block_smem() { return g_cluster->block().smem; }

Schedule schedule_from_env() {
  const char* v = std::getenv("TTT_SIMT_ORDER");
  const std::string s = v ? v : "";
  if (s.empty() || s == "forward") return Schedule::forward;
  if (s == "reverse") return Schedule::reverse;
  if (s == "shuffle") return Schedule::shuffle;
  if (s == "blocks") return Schedule::blocks;
  if (s == "blocks_last") return Schedule::blocks_last;
  throw std::invalid_argument("TTT_SIMT_ORDER must be forward, reverse, shuffle, blocks or blocks_last, got '" + s +
                              "'");
}

void emulate_cluster(int blocks, int threads, size_t smem_bytes, const std::function<void()>& body) {
  if (threads <= 0 || threads % 32 != 0) throw std::invalid_argument("emulate: threads must be a multiple of 32");
  if (blocks <= 0) throw std::invalid_argument("emulate_cluster: blocks must be positive");
  Cluster cl;
  cl.threads = threads;
  cl.smem_bytes = smem_bytes;
  cl.body = &body;
  const int n = blocks * threads;
  cl.warps.resize(static_cast<size_t>(n / 32));
  // Shared memory starts as NaN, as an uninitialised GPU buffer might hold anything.
  cl.blocks.resize(static_cast<size_t>(blocks));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Block& b : cl.blocks) {
    b.smem_storage.resize(smem_bytes + 16);
    b.smem = b.smem_storage.data() + (16 - reinterpret_cast<uintptr_t>(b.smem_storage.data()) % 16) % 16;
    for (size_t i = 0; i + 4 <= smem_bytes; i += 4) std::memcpy(b.smem + i, &nan, 4);
  }
  cl.fibers.resize(static_cast<size_t>(n));
  Cluster* outer = g_cluster;
  g_cluster = &cl;
  for (int i = 0; i < n; ++i) {
    Fiber& f = cl.fibers[static_cast<size_t>(i)];
    f.stack.reset(new char[kStack]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, reinterpret_cast<void (*)()>(trampoline), 1, i);
  }
  // Round robin until every fiber is done, in the order of TTT_SIMT_ORDER (schedule_from_env); a
  // full round in which no fiber arrived at a barrier, none was released and none finished is a
  // deadlock.
  const Schedule schedule = schedule_from_env();
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (schedule == Schedule::reverse) std::reverse(order.begin(), order.end());
  static uint64_t clusters_run = 0;  // seeds the shuffles: every cluster, and every run, the same way
  std::mt19937_64 rng(0x5eed + clusters_run++);
  auto fail = [&](const std::string& what) {
    g_cluster = outer;
    throw std::runtime_error(what);
  };
  // One pass over `fibers` (each run until it waits or finishes); true when all of them are done.
  auto run_once = [&](const std::vector<int>& fibers) {
    bool all_done = true;
    for (int i : fibers) {
      Fiber& f = cl.fibers[static_cast<size_t>(i)];
      if (f.done) continue;
      cl.current = i;
      swapcontext(&cl.scheduler, &f.ctx);
      all_done = all_done && f.done;
    }
    return all_done;
  };
  for (;;) {
    bool all_done = true;
    const uint64_t before = cl.events;
    if (schedule == Schedule::shuffle) std::shuffle(order.begin(), order.end(), rng);
    if (schedule == Schedule::blocks || schedule == Schedule::blocks_last) {
      // Each block runs on alone while its fibers move (to a cluster barrier, or its end), then the
      // next: the first block (blocks_last: the last) is as far ahead of the others as the cluster
      // barriers let it be.
      for (int i = 0; i < blocks; ++i) {
        const int b = schedule == Schedule::blocks ? i : blocks - 1 - i;
        const std::vector<int> mine(order.begin() + b * threads, order.begin() + (b + 1) * threads);
        bool done = false;
        for (uint64_t e = cl.events - 1; e != cl.events && cl.error.empty();) {
          e = cl.events;
          done = run_once(mine);
          deliver_in_flight(cl, false);
        }
        all_done = all_done && done;
      }
    } else {
      all_done = run_once(order);
      deliver_in_flight(cl, false);
    }
    if (all_done) break;
    if (cl.events == before && deliver_in_flight(cl, true)) continue;  // the late stores, when nothing else moves
    if (cl.events == before)
      fail("emulate: deadlock (a barrier or warp-collective call not reached by all threads: " + describe_waits(cl) +
           ")" + (cl.error.empty() ? std::string() : "; first error: " + cl.error));
    if (!cl.error.empty()) fail("emulate: " + cl.error);
  }
  while (deliver_in_flight(cl, true)) {}  // stores no thread waited for still land before the cluster ends
  g_cluster = outer;
  if (!cl.error.empty()) throw std::runtime_error("emulate: " + cl.error);
}

void emulate_block(int threads, size_t smem_bytes, const std::function<void()>& body) {
  emulate_cluster(1, threads, smem_bytes, body);
}

}  // namespace ttt::simt
