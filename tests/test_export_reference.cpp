// tests/test_export_reference.cpp — an export is usable from PyTorch: scripts/load_export.py reads
// it with numpy, undoes the official/HF layouts itself, rebuilds the independent PyTorch reference
// model of scripts/golden and reproduces our float32 logits to 1e-5 (TTT-Linear and TTT-MLP in
// both backbones, Transformer++ tied and untied). For Llama exports it also runs HF Llama's forward
// (rotate-half RoPE) on the exported tensors unchanged, which must agree too. Needs Debian's
// python3-torch (scripts/setup.sh installs it).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tests/export_test_util.h"
#include "tests/trainer_test_util.h"
#include "trainer/export.h"
#include "trainer/safetensors.h"

using namespace ttt;
using namespace ttt::testing;
namespace fs = std::filesystem;

namespace {

const std::string kPython = "/usr/bin/python3";

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto x = a.to(DType::f32).tolist<float>(), y = b.to(DType::f32).tolist<float>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (float v : a.to(DType::f32).tolist<float>()) m = std::max(m, std::abs(static_cast<double>(v)));
  return m;
}

// A case: a perturbed tiny model exported to <base>/out, ids [2, 11] in <base>/inputs.safetensors
// (two full TTT mini-batches of 4 and a remainder of 3) and our float32 logits for them.
struct Case {
  std::string name, base;
  bool llama = false;
  Tensor ours;
};

Case prepare(const std::string& name, const RunConfig& cfg) {
  Case c{name, tmp_path("export_ref_" + name), cfg.model.mixer == "attention", {}};
  fs::remove_all(c.base);
  auto model = write_tiny_checkpoint(cfg, c.base + "/ckpt.h5");
  export_safetensors(c.base + "/ckpt.h5", c.base + "/out", false);
  std::vector<int64_t> ids;
  for (int i = 0; i < 22; ++i) ids.push_back((i * 7 + 3) % cfg.model.vocab_size);
  Tensor x = from_vector_i64(ids, {2, 11});
  model->train(false);
  NoGradGuard ng;
  c.ours = model->forward(x);
  write_safetensors(c.base + "/inputs.safetensors", {{"ids", x}});
  return c;
}

void check(const Case& c) {
  CAPTURE(c.name);
  SafetensorsReader out(c.base + "/logits.safetensors");
  const Tensor ref = out.read("logits");
  CHECK(ref.dtype() == DType::f32);
  const double scale = max_abs(c.ours), diff = max_abs_diff(c.ours, ref);
  MESSAGE(c.name << ": max |logit| " << scale << ", max |ours - reference| " << diff);
  CHECK(scale > 0.5);  // logits of size: a 1e-5 agreement means something
  CHECK(diff <= 1e-5);
  if (c.llama) {
    REQUIRE(out.contains("logits_hf"));
    CHECK(max_abs_diff(c.ours, out.read("logits_hf")) <= 1e-5);
  }
  fs::remove_all(c.base);
}

}  // namespace

TEST_CASE("scripts/load_export.py rebuilds the PyTorch reference from an export and matches our logits") {
  auto torch = run_command(kPython + " -c 'import torch, numpy'");
  REQUIRE_MESSAGE(torch.code == 0, "Debian's python3-torch and python3-numpy are needed (scripts/setup.sh): ", torch.output);
  std::vector<Case> cases = {
      prepare("linear_mamba", tiny_export_config("ttt_linear", "mamba")),
      prepare("mlp_mamba", tiny_export_config("ttt_mlp", "mamba", {"model.tie_embeddings=false"})),
      prepare("linear_transformer", tiny_export_config("ttt_linear", "transformer", {"model.ttt.base_lr=0.5"})),
      prepare("mlp_transformer", tiny_export_config("ttt_mlp", "transformer")),
      prepare("llama", tiny_export_config("attention", "transformer", {"model.rope_theta=500"})),
      prepare("llama_untied", tiny_export_config("attention", "transformer", {"model.tie_embeddings=false"}))};
  // One case through the command line, the others through the module's functions in one process
  // (torch takes a while to import).
  const std::string script = std::string(TTT_SOURCE_DIR) + "/scripts/load_export.py";
  const Case& cli = cases.back();
  auto r = run_command(kPython + " " + script + " " + cli.base + "/out --inputs " + cli.base + "/inputs.safetensors --out " +
                       cli.base + "/logits.safetensors");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  std::string dirs;
  for (size_t i = 0; i + 1 < cases.size(); ++i) dirs += " " + cases[i].base;
  const std::string code =
      "import sys; sys.path.insert(0, sys.argv[1]); import load_export as le\n"
      "for d in sys.argv[2:]:\n"
      "    ids = le.read_safetensors(d + '/inputs.safetensors')['ids']\n"
      "    out = {'logits': le.reference_logits(d + '/out', ids)}\n"
      "    if le.load_export(d + '/out')[0]['model_type'] == 'llama': out['logits_hf'] = le.hf_llama_logits(d + '/out', ids)\n"
      "    le.write_safetensors(d + '/logits.safetensors', out)\n";
  std::ofstream(tmp_path("export_ref.py")) << code;
  r = run_command(kPython + " " + tmp_path("export_ref.py") + " " + std::string(TTT_SOURCE_DIR) + "/scripts" + dirs);
  fs::remove(tmp_path("export_ref.py"));
  REQUIRE_MESSAGE(r.code == 0, r.output);
  for (const auto& c : cases) check(c);
}

TEST_CASE("the loader alone (numpy): a summary of the export") {
  const std::string base = tmp_path("export_ref_summary");
  fs::remove_all(base);
  const auto cfg = tiny_export_config("ttt_linear", "mamba");
  auto model = write_tiny_checkpoint(cfg, base + "/ckpt.h5");
  export_safetensors(base + "/ckpt.h5", base + "/out", false);
  auto r = run_command(kPython + " " + TTT_SOURCE_DIR + "/scripts/load_export.py " + base + "/out");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(r.output.find("ttt (ttt_linear, mamba backbone), 2 layers, d_model 16") != std::string::npos);
  CHECK(r.output.find(std::to_string(model->num_parameters()) + " parameters") != std::string::npos);
  fs::remove_all(base);
}
