// tests/test_graph_memory.cpp — saved_bytes_by_op (autograd/graph_memory.h): hand-counted graphs.
#include <doctest/doctest.h>

#include "autograd/graph_memory.h"
#include "autograd/ops.h"

using namespace ttt;

namespace {
const SavedBytes* find(const std::vector<SavedBytes>& rows, const std::string& op) {
  for (const SavedBytes& r : rows)
    if (r.op == op) return &r;
  return nullptr;
}
}  // namespace

TEST_CASE("saved_bytes_by_op charges each saved storage once, to the op met first from the root") {
  Tensor x = ones({4, 5}).set_requires_grad(true);  // 80 bytes
  Tensor y = mul(x, x);                             // saves x twice: one storage
  Tensor z = exp(y);                                // saves its output z (80 bytes)
  Tensor w = mul(z, y);                             // saves z (already charged? no: met first) and y
  Tensor loss = sum(w);
  const std::vector<SavedBytes> rows = saved_bytes_by_op(loss);
  // Breadth-first from sum: the outer mul (saves z, y: 160 bytes), then exp (z again: nothing new)
  // and the inner mul (x: 80 bytes).
  const SavedBytes* m = find(rows, "mul");
  REQUIRE(m != nullptr);
  CHECK(m->nodes == 2);
  CHECK(m->storages == 3);
  CHECK(m->bytes == 240);
  const SavedBytes* e = find(rows, "exp");
  REQUIRE(e != nullptr);
  CHECK(e->nodes == 1);
  CHECK(e->bytes == 0);
  CHECK(rows.front().op == "mul");  // largest first
  int64_t total = 0;
  for (const SavedBytes& r : rows) total += r.bytes;
  CHECK(total == 240);  // x, y, z: three distinct 80-byte storages
}

TEST_CASE("saved_bytes_by_op: a view keeps its whole storage; no graph gives no rows") {
  Tensor x = ones({8, 8}).set_requires_grad(true);
  Tensor y = mul(x, x);                     // 256 bytes, saves x (256)
  Tensor v = narrow(y, 0, 0, 2);            // a view of y
  Tensor loss = sum(mul(v, v));             // saves v: y's whole storage (256)
  int64_t total = 0;
  for (const SavedBytes& r : saved_bytes_by_op(loss)) total += r.bytes;
  CHECK(total == 512);
  CHECK(saved_bytes_by_op(ones({2})).empty());
}
