// tests/op_cases/indexing_cases.cpp — op-table entries: embedding, index ops, cat / stack /
// split, where, masked_fill, tril / triu.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

Input mask(Shape s) { return Input{s, Gen::mask, false}; }

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  // 8 ids out of 6 rows: some rows repeat (their gradients accumulate), some are unused.
  v.push_back(make("embedding", "weight [6,3], ids [2,4]", {{{6, 3}}, index_input({2, 4}, 6)},
                   [](const tensor_list& x) { return one(embedding(x[0], x[1])); }));
  v.push_back(make("embedding", "int32 ids [5]", {{{4, 2}}, index_input({5}, 4, DType::i32)},
                   [](const tensor_list& x) { return one(embedding(x[0], x[1])); }));
  v.push_back(make("index_select", "[5,3] dim 0, 6 indices", {{{5, 3}}, index_input({6}, 5)},
                   [](const tensor_list& x) { return one(index_select(x[0], 0, x[1])); }));
  v.push_back(make("index_select", "[2,4,3] dim 1, uint16 indices", {{{2, 4, 3}}, index_input({3}, 4, DType::u16)},
                   [](const tensor_list& x) { return one(index_select(x[0], 1, x[1])); }));
  v.push_back(make("index_add_zeros", "[4,3] into 5 rows", {{{4, 3}}, index_input({4}, 5)},
                   [](const tensor_list& x) { return one(index_add_zeros(x[0], 0, x[1], 5)); }));
  v.push_back(make("index_add_zeros", "[2,3] dim 1 into 4", {{{2, 3}}, index_input({3}, 4)},
                   [](const tensor_list& x) { return one(index_add_zeros(x[0], 1, x[1], 4)); }));

  v.push_back(make("cat", "three along dim 1", {{{2, 3}}, {{2, 1}}, {{2, 2}}},
                   [](const tensor_list& x) { return one(cat(x, 1)); }));
  v.push_back(make("cat", "two along dim 0", {{{1, 3}}, {{2, 3}}}, [](const tensor_list& x) { return one(cat(x, 0)); }));
  v.push_back(make("stack", "two [2,3] at dim 1", {{{2, 3}}, {{2, 3}}},
                   [](const tensor_list& x) { return one(stack(x, 1)); }));
  v.push_back(make("stack", "three [3] at dim -1", {{{3}}, {{3}}, {{3}}},
                   [](const tensor_list& x) { return one(stack(x, -1)); }));
  v.push_back(make("split", "[5,3] sizes {2,3} dim 0", {{{5, 3}}},
                   [](const tensor_list& x) { return split(x[0], {2, 3}, 0); }));
  v.push_back(make("split", "chunk [3,7] into 3 along dim 1", {{{3, 7}}},
                   [](const tensor_list& x) { return chunk(x[0], 3, 1); }));

  v.push_back(make("where", "cond [3,1], a [3,4], b [4]", {mask({3, 1}), {{3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(where(x[0], x[1], x[2])); }));
  v.push_back(make("where", "same shapes", {mask({2, 3}), {{2, 3}}, {{2, 3}}},
                   [](const tensor_list& x) { return one(where(x[0], x[1], x[2])); }));
  v.push_back(make("masked_fill", "x [3,4], mask [4]", {{{3, 4}}, mask({4})},
                   [](const tensor_list& x) { return one(masked_fill(x[0], x[1], -2.5)); }));
  v.push_back(make("masked_fill", "same shapes", {{{2, 3}}, mask({2, 3})},
                   [](const tensor_list& x) { return one(masked_fill(x[0], x[1], 0.0)); }));

  v.push_back(make("tril", "[3,4]", {{{3, 4}}}, [](const tensor_list& x) { return one(tril(x[0])); }));
  v.push_back(make("tril", "[2,4,3] diagonal -1", {{{2, 4, 3}}}, [](const tensor_list& x) { return one(tril(x[0], -1)); }));
  v.push_back(make("triu", "[2,3,4] diagonal 1", {{{2, 3, 4}}}, [](const tensor_list& x) { return one(triu(x[0], 1)); }));
  return v;
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
