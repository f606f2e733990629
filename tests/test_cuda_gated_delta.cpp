// tests/test_cuda_gated_delta.cpp — the CUDA fused gated delta rule (kernels/cuda/gated_delta.cu,
// Gated DeltaNet) against the CPU reference (kernels/cpu/gated_delta.cpp, itself tested against the
// composite chunked form in test_gated_delta_kernel): o, M_T and every gradient in float32 on the
// same inputs, outputs and workspace NaN-poisoned; shapes of every row template, partial value
// slices, several checkpoints, no initial state, and the 125M layer's heads (d_k 96, d_v 192, 300
// tokens), each with and without the erase term, and Mamba 2's heads (d_k = N 128, d_v = P 64); then
// the Gated DeltaNet layer and the Mamba 2 layer (`mamba2.kernel: recurrent`) on the GPU against the
// same layers on the CPU; two runs are bit-identical (no atomics). The chunked kernels
// (GatedDeltaShape::chunked, kernels/cuda/gated_delta_chunk.cu) against the float64 reference, and
// the layer with `gdn.kernel: chunked`.
// Skips itself without a GPU (TTT_REQUIRE_GPU=1 makes that a failure). Run: ./build/tests/test_cuda_gated_delta
#include "autograd/engine.h"
#include "layers/gated_deltanet.h"
#include "layers/mamba2.h"
#include "tests/cuda_test_util.h"
#include "tests/gated_delta_cases.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// The CUDA kernels of `form` (the problem as it is: the token walk; chunked, chunked_tc: the chunked
// WY form, its products on the CUDA or the tensor cores) against the CPU reference in precision `ref`
// on every case, with and without the erase term; then groups of heads
// sharing q and k, an output without gradient, and a second run equal bit for bit to the first.
void check_cuda(const std::vector<Problem>& cases, Problem (*form)(Problem), DType ref, const std::string& what) {
  auto on_gpu = [&](const Problem& p) { return kernel(form(p), DType::f32, cuda()); };
  for (const Problem& p : cases) {
    CAPTURE(p.s.len);
    CAPTURE(p.s.dk);
    CAPTURE(p.s.dv);
    compare(on_gpu(p), kernel(p, ref), 1e-4, what);
    compare(on_gpu(linear(p)), kernel(linear(p), ref), 1e-4, what + ", no erase term");
  }
  const Problem groups = grouped(make(2, 100, 4, 128, 64, 64, true, 90), 1, 91);  // Mamba 2's one group
  compare(on_gpu(groups), kernel(groups, ref), 1e-4, what + ", groups");
  compare(on_gpu(linear(groups)), kernel(linear(groups), ref), 1e-4, what + ", groups, no erase term");
  const Problem no_do = without_do(cases[1]);  // only M_T has a gradient
  compare(on_gpu(no_do), kernel(no_do, ref), 1e-4, what + ", no output gradient", false);
  // The 125M Mamba 2's heads through the linear recurrence: N = 128 = d_k, P = 64 = d_v.
  const Problem m2 = linear(make(1, 200, 4, 128, 64, 64, true, 80));
  compare(on_gpu(m2), kernel(m2, ref), 1e-4, what + ", Mamba 2 heads");
  // Fixed-order reductions: a second run reproduces the first bit for bit.
  const Grads r1 = on_gpu(cases.back()), r2 = on_gpu(cases.back());
  for (const auto& [a, b] : {std::pair{r1.o, r2.o}, {r1.dq, r2.dq}, {r1.dk, r2.dk}, {r1.dv, r2.dv}, {r1.dg, r2.dg},
                             {r1.dbeta, r2.dbeta}, {r1.dM0, r2.dM0}})
    CHECK(max_abs_diff(a, b) == 0.0);
}

// The layer of config c built twice from one seed, one copy moved to the GPU: values and every gradient.
template <class Mixer> void check_layer_on_gpu(const ModelConfig& c) {
  Generator g1(5), g2(5);
  Mixer a(c, g1), b(c, g2);
  b.to(cuda());
  check_mixer_on_gpu(a, b, {2, 50, 64}, 2e-4, 5e-4);
}

}  // namespace

TEST_CASE("CUDA gated delta kernels == CPU reference (float32, o, M_T and every gradient)") {
  TTT_REQUIRE_GPU();
  check_cuda({make(2, 7, 2, 3, 5, 64, true, 10), make(1, 70, 1, 16, 40, 64, true, 20),
              make(1, 9, 2, 40, 32, 64, false, 30), make(1, 5, 1, 128, 8, 64, true, 50),
              make(1, 40, 2, 192, 48, 64, true, 55), make(1, 20, 1, 256, 64, 64, true, 56),
              make(1, 130, 1, 8, 8, 64, true, 60, 12.0),
              make(2, 300, 6, 96, 192, 64, true, 70)},  // the 125M layer's heads
             [](Problem p) { return p; }, DType::f32, "cuda");
  CHECK(gated_delta_unsupported(cuda(), GatedDeltaShape{1, 8, 2, 4, 4, 64, DType::bf16}) != "");  // float32 only
  CHECK(gated_delta_unsupported(cuda(), GatedDeltaShape{1, 8, 2, 257, 4, 64, DType::f32}) != "");  // d_k ≤ 256
}

TEST_CASE("CUDA chunked gated delta kernels == CPU reference (float64, o, M_T and every gradient)") {
  TTT_REQUIRE_GPU();
  const std::vector<Problem> cases = {make(2, 7, 2, 3, 5, 64, true, 10),    make(1, 70, 1, 16, 40, 64, true, 20),
                                      make(1, 9, 2, 40, 32, 64, false, 30), make(1, 33, 1, 128, 8, 64, true, 50),
                                      make(1, 130, 1, 8, 8, 64, true, 60, 12.0),
                                      make(2, 300, 6, 96, 192, 64, true, 70)};  // the 125M layer's heads
  check_cuda(cases, chunked, DType::f64, "cuda chunked");
  check_cuda(cases, chunked_tc, DType::f64, "cuda chunked, tensor cores");
  GatedDeltaShape wide{1, 8, 2, 129, 4, 64, DType::f32};
  wide.chunked = true;
  CHECK(gated_delta_unsupported(cuda(), wide) != "");  // the chunked kernels: d_k ≤ 128
}

TEST_CASE("Gated DeltaNet and Mamba 2 layers (every CUDA form of their scan) on the GPU == on the CPU: values and every gradient") {
  TTT_REQUIRE_GPU();
  ModelConfig c;
  c.d_model = 64;
  c.n_heads = 4;
  c.mixer = "gated_deltanet";
  c.gdn.chunk = 16;
  for (const char* kernel : {"fused", "chunked", "chunked_tc"}) {
    CAPTURE(kernel);
    c.gdn.kernel = kernel;
    check_layer_on_gpu<GatedDeltaNetMixer>(c);
  }
  c.mixer = "mamba2";
  c.mamba2.d_state = 32;
  c.mamba2.head_dim = 16;
  c.mamba2.n_groups = 2;
  c.mamba2.chunk = 16;
  for (const char* kernel : {"recurrent", "delta_chunked", "delta_chunked_tc"}) {
    CAPTURE(kernel);
    c.mamba2.kernel = kernel;
    check_layer_on_gpu<Mamba2Mixer>(c);
  }
}
