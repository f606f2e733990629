// autograd/graph_memory.cpp — see graph_memory.h.
#include "autograd/graph_memory.h"

#include <algorithm>
#include <deque>
#include <map>
#include <unordered_set>

#include "autograd/node.h"

namespace ttt {

std::vector<SavedBytes> saved_bytes_by_op(const Tensor& root) {
  std::map<std::string, SavedBytes> by_op;
  if (!root.defined() || !root.grad_fn()) return {};
  std::unordered_set<const Node*> seen{root.grad_fn().get()};
  std::unordered_set<const Storage*> counted;
  std::deque<const Node*> queue{root.grad_fn().get()};
  while (!queue.empty()) {
    const Node* n = queue.front();
    queue.pop_front();
    SavedBytes& row = by_op[n->name()];
    row.op = n->name();
    ++row.nodes;
    if (const auto* fn = dynamic_cast<const FunctionNode*>(n)) {
      for (const SavedTensor& st : fn->saved) {
        const Tensor& t = st.data();
        if (!t.defined()) continue;
        const Storage* storage = t.impl_ptr()->storage.get();
        if (!counted.insert(storage).second) continue;
        row.bytes += static_cast<int64_t>(storage->nbytes);
        ++row.storages;
      }
    }
    for (const Edge& e : n->next_edges)
      if (e.fn && seen.insert(e.fn.get()).second) queue.push_back(e.fn.get());
  }
  std::vector<SavedBytes> rows;
  for (auto& [name, row] : by_op) rows.push_back(row);
  std::sort(rows.begin(), rows.end(), [](const SavedBytes& a, const SavedBytes& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.op < b.op;
  });
  return rows;
}

}  // namespace ttt
