// tests/test_cuda_tensor.cpp — the public Tensor/ops API on the GPU: device round trips,
// factories, and autograd graphs (forward + backward) run on CUDA and on the CPU from the same
// leaves must agree. This shows the autograd layer runs on the GPU unchanged. Skips without a GPU.
#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

// Runs f on copies of `leaves` placed on `dev` (as fresh leaves requiring grad), backpropagates
// the scalar it returns, and gives back [loss, grad of each leaf] on the CPU.
template <class F> tensor_list run_graph(const tensor_list& leaves, Device dev, F&& f) {
  tensor_list xs;
  for (const Tensor& l : leaves) {
    Tensor x = l.to(dev).detach();
    x.set_requires_grad(true);
    xs.push_back(x);
  }
  Tensor loss = f(xs);
  loss.backward();
  tensor_list out{loss.to(cpu())};
  for (const Tensor& x : xs) out.push_back(x.grad().to(cpu()));
  return out;
}

template <class F> void check_graph(const tensor_list& leaves, Tol tol, const std::string& what, F&& f) {
  tensor_list c = run_graph(leaves, cpu(), f), g = run_graph(leaves, cuda(), f);
  for (size_t i = 0; i < c.size(); ++i)
    expect_close(g[i], c[i], tol, what + (i == 0 ? " loss" : " grad of leaf " + std::to_string(i - 1)));
}

}  // namespace

TEST_CASE("cuda tensors: to(cuda()) and back keeps every dtype, from any layout") {
  TTT_REQUIRE_GPU();
  Generator gen(31);
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::i64, DType::i32, DType::u16}) {
    Tensor x = random_cpu({37, 1003}, dt, gen, 0, 1000).transpose(0, 1);
    Tensor g = x.to(cuda());
    CHECK(g.device() == cuda());
    CHECK(g.is_contiguous());
    expect_close(g.to(cpu()), x, {0, 0}, "round trip " + dname(dt));
    // A strided view of a GPU tensor copied back to the host.
    expect_close(g.narrow(0, 5, 300).transpose(0, 1), x.narrow(0, 5, 300).transpose(0, 1), {0, 0},
                 "strided view " + dname(dt));
  }
}

TEST_CASE("cuda tensors: factories give the CPU's values") {
  TTT_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    Generator gc(77), gg(77);
    expect_close(randn({1001}, gg, opts(dt, cuda()), 0.5, 2), randn({1001}, gc, opts(dt), 0.5, 2),
                 dt == DType::f64 ? Tol{1e-14, 1e-14} : dt == DType::f32 ? Tol{0, 2.4e-7} : Tol{0, 7.9e-3}, "randn " + dname(dt));
    expect_close(rand({1001}, gg, opts(dt, cuda()), -1, 3), rand({1001}, gc, opts(dt), -1, 3), {0, 0},
                 "rand " + dname(dt));
    CHECK(gc.offset == gg.offset);
  }
  expect_close(arange(3, 1000, 7, opts(DType::i64, cuda())), arange(3, 1000, 7), {0, 0}, "arange");
  expect_close(full({5, 3}, 2.5, opts(DType::bf16, cuda())), full({5, 3}, 2.5, opts(DType::bf16)), {0, 0}, "full");
}

TEST_CASE("cuda autograd: matmul, activations, reductions and broadcasting, forward + backward") {
  TTT_REQUIRE_GPU();
  Generator gen(32);
  tensor_list leaves{random_cpu({2, 5, 64}, DType::f32, gen), random_cpu({64, 48}, DType::f32, gen),
                     random_cpu({48}, DType::f32, gen), random_cpu({2, 5, 48}, DType::f32, gen)};
  check_graph(leaves, {1e-5, 1e-4}, "mlp", [](const tensor_list& x) {
    Tensor h = add(matmul(x[0], x[1]), x[2]);                   // batched @ shared, bias broadcast
    Tensor a = mul(gelu(h), sigmoid(x[3]));                     // gated activation
    Tensor m = max(a, {2}, true);                               // row max, broadcast back
    Tensor s = sub(a, m);
    return add(mean(mul(s, s)), sum(tanh(cumsum(a, 1))));
  });
  // Transposed operands and a batched product of two batched tensors.
  tensor_list l2{random_cpu({3, 16, 9}, DType::f32, gen), random_cpu({3, 16, 7}, DType::f32, gen)};
  check_graph(l2, {1e-5, 1e-4}, "batched A^T B", [](const tensor_list& x) {
    Tensor c = matmul(transpose(x[0], 1, 2), x[1]);  // [3, 9, 7]
    return sum(mul(c, c));
  });
}

TEST_CASE("cuda autograd: bfloat16 compute with float32 leaves") {
  TTT_REQUIRE_GPU();
  Generator gen(33);
  tensor_list leaves{random_cpu({32, 64}, DType::f32, gen), random_cpu({64, 16}, DType::f32, gen)};
  // bf16 GEMM (fp32 accumulation) inside, gradients flow back to the f32 leaves through to_dtype.
  check_graph(leaves, {2e-2, 2e-2}, "bf16 matmul", [](const tensor_list& x) {
    Tensor y = matmul(to_dtype(x[0], DType::bf16), to_dtype(x[1], DType::bf16));
    return sum(to_dtype(silu(y), DType::f32));
  });
}

TEST_CASE("cuda autograd: softmax, norms, cross-entropy, embedding and masking, forward + backward") {
  TTT_REQUIRE_GPU();
  Generator gen(34);
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tol tol = dt == DType::f32 ? Tol{1e-5, 1e-4} : Tol{2e-2, 2e-2};
    tensor_list leaves{random_cpu({4, 6, 40}, dt, gen, -2, 2), random_cpu({40}, dt, gen, 0.5, 1.5),
                       random_cpu({40}, dt, gen), random_cpu({4, 6, 40}, dt, gen)};
    check_graph(leaves, tol, "norms and softmax " + dname(dt), [](const tensor_list& x) {
      Tensor ln = layer_norm(x[0], x[1], x[2]);
      Tensor rn = rms_norm(add(ln, x[3]), x[1]);
      Tensor sm = softmax(mul(rn, x[3]), -1);
      Tensor ls = log_softmax(transpose(rn, 1, 2), 1);  // softmax over a non-last dim
      return add(sum(mul(sm, x[3])), mean(ls));
    });
    // Language-model head: embedding lookup, causal mask, cross-entropy with ignored targets.
    Tensor ids = random_cpu({2, 9}, DType::i64, gen, 0, 50);
    std::vector<int64_t> tg;
    for (double v : random_cpu({18}, DType::f64, gen, 0, 50).tolist<double>()) tg.push_back(static_cast<int64_t>(v));
    tg[3] = tg[11] = -100;
    Tensor targets = from_vector_i64(tg, {2, 9});
    tensor_list head{random_cpu({50, 16}, dt, gen), random_cpu({16, 50}, dt, gen)};
    check_graph(head, tol, "embedding + cross_entropy " + dname(dt), [&](const tensor_list& x) {
      const Device d = x[0].device();
      Tensor h = embedding(x[0], ids.to(d));                            // [2, 9, 16]
      Tensor att = tril(matmul(h, transpose(h, 1, 2)));                  // [2, 9, 9], causal
      Tensor mask = eq(att, zeros_like(att));
      Tensor p = softmax(masked_fill(att, mask, -1e4), -1);
      Tensor logits = matmul(matmul(p, h), x[1]);                        // [2, 9, 50]
      return cross_entropy(logits, targets.to(d), -100);
    });
  }
}

TEST_CASE("cuda autograd: autocast runs float32 matmuls as bf16 GEMMs with float32 results") {
  TTT_REQUIRE_GPU();
  Generator gen(35);
  tensor_list leaves{random_cpu({3, 24, 64}, DType::f32, gen), random_cpu({64, 32}, DType::f32, gen)};
  check_graph(leaves, {2e-3, 1e-2}, "autocast matmul", [](const tensor_list& x) {
    AutocastGuard ac;
    Tensor y = matmul(x[0], x[1]);
    CHECK(y.dtype() == DType::f32);
    return sum(gelu(y));
  });
}

TEST_CASE("cuda caching allocator: cached memory serves smaller requests; reserved >= allocated") {
  TTT_REQUIRE_GPU();
  Backend& be = backend(cuda());
  be.synchronize();
  const size_t MiB = size_t{1} << 20;
  {
    Tensor big = empty({int64_t(64 * MiB / 4)}, opts(DType::f32, cuda()));
    CHECK(be.memory_reserved() >= be.memory_allocated());
  }
  const size_t reserved = be.memory_reserved();
  {
    // Three tensors of different sizes fit in the freed 64 MiB block: no new cudaMalloc.
    Tensor a = empty({int64_t(10 * MiB / 4)}, opts(DType::f32, cuda()));
    Tensor b = empty({int64_t(20 * MiB / 4) + 3}, opts(DType::f32, cuda()));
    Tensor c = empty({int64_t(30 * MiB / 4)}, opts(DType::f32, cuda()));
    CHECK(be.memory_reserved() == reserved);
    CHECK(be.memory_allocated() >= 60 * MiB);
  }
}
