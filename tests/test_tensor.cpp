// tests/test_tensor.cpp — Tensor layout, views sharing storage, factories, RNG, dtype conversion.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"

using namespace ttt;

TEST_CASE("factories and item") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  CHECK(z.is_contiguous());
  Tensor f = full({2}, 2.5, opts(DType::f64));
  CHECK(f.tolist<double>() == std::vector<double>{2.5, 2.5});
  Tensor a = arange(0, 5);
  CHECK(a.tolist<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(5, 0, -2).tolist<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(scalar_tensor(3.0).item() == 3.0);
  CHECK_THROWS_WITH_AS(zeros({2, 2}).item(), doctest::Contains("more than one element"), std::invalid_argument);
}

TEST_CASE("views share storage") {
  Tensor x = from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = x.t();
  CHECK(t.shape() == Shape{3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.shares_storage(x));
  CHECK(t.tolist<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor n = x.narrow(1, 1, 2);
  CHECK(n.tolist<double>() == std::vector<double>{1, 2, 4, 5});
  Tensor r = n.reshape({4});  // not viewable: copies
  CHECK(r.tolist<double>() == std::vector<double>{1, 2, 4, 5});
  Tensor e = from_vector({1, 2}, {2, 1}).expand({2, 3});
  CHECK(e.tolist<double>() == std::vector<double>{1, 1, 1, 2, 2, 2});
  CHECK(e.strides()[1] == 0);
  Tensor u = x.unsqueeze(0);
  CHECK(u.shape() == Shape{1, 2, 3});
  CHECK(u.squeeze(0).shape() == Shape{2, 3});
  // Splitting a dim of a sliced tensor stays a view.
  Tensor wide = zeros({4, 12});
  Tensor part = wide.narrow(1, 4, 4).reshape({4, 2, 2});
  CHECK(part.shares_storage(wide));
  CHECK(x.select(1, 2).tolist<double>() == std::vector<double>{2, 5});
}

TEST_CASE("in-place ops bump the version and refuse tensors requiring grad") {
  Tensor x = zeros({3});
  uint32_t v = x.version();
  x.fill_(2.0);
  CHECK(x.version() == v + 1);
  x.add_(ones({3}), 3.0);
  CHECK(x.tolist<double>() == std::vector<double>{5, 5, 5});
  Tensor p = zeros({3}).set_requires_grad(true);
  CHECK_THROWS_AS(p.fill_(1.0), std::invalid_argument);
  {
    NoGradGuard ng;
    p.fill_(1.0);
  }
  CHECK(p.tolist<double>() == std::vector<double>{1, 1, 1});
}

TEST_CASE("in-place ops refuse a destination whose elements overlap in memory") {
  Tensor one = from_vector({1}, {1});
  Tensor e = one.expand({3});  // three elements, one memory location
  CHECK_THROWS_WITH_AS(e.add_(from_vector({1, 2, 3}, {3})), doctest::Contains("overlap"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(e.fill_(2.0), doctest::Contains("overlap"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(e.copy_(from_vector({1, 2, 3}, {3})), doctest::Contains("overlap"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(e.mul_(2.0), doctest::Contains("overlap"), std::invalid_argument);
  CHECK(one.item() == 1.0);  // nothing was written
  // Views whose elements are distinct stay writable: transposed, narrowed, size-1 expansions.
  Tensor x = from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  x.t().narrow(0, 1, 2).add_(ones({2, 2}));
  CHECK(x.tolist<double>() == std::vector<double>{0, 2, 3, 3, 5, 6});
  Tensor col = zeros({2, 1});
  col.expand({2, 1}).fill_(7.0);
  CHECK(col.tolist<double>() == std::vector<double>{7, 7});
  // The layout rule itself: overlap-free layouts of views, and overlapping ones.
  CHECK_FALSE(may_self_overlap({2, 3, 4}, {12, 4, 1}));
  CHECK_FALSE(may_self_overlap({4, 3, 2}, {1, 4, 12}));  // permuted
  CHECK_FALSE(may_self_overlap({2, 2}, {8, 1}));         // narrowed rows
  CHECK_FALSE(may_self_overlap({3, 0}, {0, 0}));         // empty
  CHECK(may_self_overlap({2, 3}, {3, 0}));               // expanded last dim
  CHECK(may_self_overlap({3, 2}, {1, 1}));               // sliding window: (0,1) and (1,0) meet
  CHECK(may_self_overlap({2, 4}, {2, 1}));               // rows of 4 every 2 elements
}

TEST_CASE("dtype conversion, bf16 rounding") {
  Tensor x = from_vector({1.0, 1.00390625, 1.005859375, -3.14159}, {4});
  Tensor b = x.to(DType::bf16);
  auto v = b.tolist<double>();
  CHECK(v[0] == 1.0);
  CHECK(v[1] == 1.0);       // halfway between 1 and 1+2^-7: ties to even (1.0)
  CHECK(v[2] == 1.0078125);  // above halfway: rounds up
  CHECK(std::fabs(v[3] + 3.140625) < 1e-12);
  CHECK(x.to(DType::i64).tolist<int64_t>() == std::vector<int64_t>{1, 1, 1, -3});
}

TEST_CASE("Philox RNG: deterministic, offset-consistent, right moments") {
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, g1);
  Tensor b = randn({400}, g2);
  Tensor c = randn({600}, g2);
  auto va = a.tolist<double>(), vb = b.tolist<double>(), vc = c.tolist<double>();
  for (int i = 0; i < 400; ++i) CHECK(va[i] == vb[i]);
  for (int i = 0; i < 600; ++i) CHECK(va[400 + i] == vc[i]);
  Generator g3(7);
  Tensor big = randn({200000}, g3, opts(DType::f64));
  double m = mean(big).item(), s = std::sqrt(mean(square(big)).item() - m * m);
  CHECK(std::fabs(m) < 0.01);
  CHECK(std::fabs(s - 1.0) < 0.01);
  Tensor u = rand({100000}, g3, opts(DType::f64), 2.0, 4.0);
  CHECK(min(u).item() >= 2.0);
  CHECK(max(u).item() < 4.0);
  CHECK(std::fabs(mean(u).item() - 3.0) < 0.01);
}

TEST_CASE("clear errors for bad shapes and dtypes") {
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})), doctest::Contains("[2, 3] and [4]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(mul(zeros({2}), zeros({2}, opts(DType::f64))), doctest::Contains("dtype mismatch"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 2})), doctest::Contains("inner dimensions"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(zeros({6}).reshape({4, -1}), doctest::Contains("cannot reshape"), std::invalid_argument);
  CHECK_THROWS_AS(zeros({2}).to(parse_device("cuda:7")), std::runtime_error);
  CHECK_THROWS_AS(parse_dtype("float17"), std::invalid_argument);
}
