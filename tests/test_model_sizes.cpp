// tests/test_model_sizes.cpp — the paper's model sizes (Table 2): the analytic parameter count
// (layers/presets.h) equals the real module's count (tiny configs, 125M), and every size is within
// 10% of its nominal count. See Note [Nominal sizes] in layers/presets.h for the vocabulary.
// Run: ./build/tests/test_model_sizes
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <yaml-cpp/yaml.h>

#include "layers/language_model.h"
#include "layers/presets.h"
#include "trainer/config.h"

using namespace ttt;

namespace {

// Builds the model unless its mixer is not implemented in this build (the TTT layers before they land).
std::unique_ptr<LanguageModel> try_build(const ModelConfig& c) {
  try {
    return std::make_unique<LanguageModel>(c);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find("not implemented") == std::string::npos) throw;
    const std::string why = "skipping " + c.mixer + ": " + e.what();
    MESSAGE(why);
    return nullptr;
  }
}

struct Variant {
  const char* mixer;
  const char* backbone;
};
constexpr Variant kVariants[] = {{"attention", "transformer"}, {"ttt_linear", "mamba"}, {"ttt_mlp", "mamba"},
                                 {"ttt_linear", "transformer"}, {"ttt_mlp", "transformer"}};

}  // namespace

TEST_CASE("count_parameters equals num_parameters: tiny configs, every mixer, backbone, tying") {
  for (std::string mixer : {"attention", "linear_attention", "ttt_linear", "ttt_mlp"})
    for (std::string backbone : {"transformer", "mamba"})
      for (bool tie : {true, false}) {
        ModelConfig c = preset("tiny", mixer, backbone);
        c.tie_embeddings = tie;
        auto lm = try_build(c);
        if (!lm) continue;
        CHECK_MESSAGE(lm->num_parameters() == count_parameters(c), mixer, "/", backbone, " tie=", tie);
      }
}

// The 125M shapes (d_model 768, 12 heads, d_ff 2048) with one block and a 1024-token vocab: every
// term of the count at its real size, at a fraction of the init time (the full 125M model takes
// ~15 s of CPU to draw its weights). Embedding and block counts scale linearly in V and n_layers.
TEST_CASE("count_parameters equals num_parameters with the 125M block shapes (allocated for real)") {
  for (const Variant& v : kVariants) {
    ModelConfig c = preset("125m", v.mixer, v.backbone);
    c.n_layers = 1;
    c.vocab_size = 1024;
    auto lm = try_build(c);
    if (!lm) continue;
    CHECK_MESSAGE(lm->num_parameters() == count_parameters(c), v.mixer, "/", v.backbone);
  }
}

TEST_CASE("every paper size is within 10% of its nominal parameter count") {
  for (const std::string& size : preset_sizes()) {
    const double nominal = static_cast<double>(nominal_parameters(size));
    for (const Variant& v : kVariants) {
      ModelConfig c = preset(size, v.mixer, v.backbone);
      const double llama = static_cast<double>(count_parameters(c));  // vocab 32000, as trained in the paper
      c.vocab_size = 50280;  // the GPT-NeoX vocab the nominal names were computed with (Mamba paper Table 12)
      const double neox = static_cast<double>(count_parameters(c));
      std::printf("%-5s %-10s %-11s  %8.2fM (vocab 32000)  %8.2fM (vocab 50280)\n", size.c_str(), v.mixer,
                  v.backbone, llama / 1e6, neox / 1e6);
      CHECK_MESSAGE(std::fabs(neox / nominal - 1) < 0.10, size, " ", v.mixer, "/", v.backbone);
      if (size != "125m") CHECK_MESSAGE(std::fabs(llama / nominal - 1) < 0.10, size, " ", v.mixer);
      // 125M with the 32000 vocab is 12% small: the paper keeps the name (see presets.h).
      if (size == "125m") CHECK(llama / nominal == doctest::Approx(0.88).epsilon(0.02));
    }
  }
}

TEST_CASE("presets: Table 2 rows, default backbones, errors") {
  ModelConfig c = preset("760m", "ttt_linear");
  CHECK(c.n_layers == 24);
  CHECK(c.d_model == 1536);
  CHECK(c.n_heads == 16);
  CHECK(c.head_dim() == 96);  // the one size with head_dim 96 (1536 / 16 heads, official JAX CONFIGS)
  CHECK(c.d_ff == 4096);
  CHECK(c.backbone == "mamba");
  CHECK(preset("1.3b").backbone == "transformer");
  CHECK(preset("1.3b").n_heads == 32);
  CHECK(peak_lr("350m") == 1.5e-3);
  CHECK_THROWS_AS(preset("7b"), std::invalid_argument);
  CHECK_THROWS_AS(preset("125m", "rwkv"), std::invalid_argument);
}

// The YAML presets in configs/ carry the same numbers as preset() (the trainer maps the `model:`
// keys onto ModelConfig by name; this reads the few keys that define the size).
TEST_CASE("configs/*.yaml match the presets") {
  // TTT_SOURCE_DIR, not __FILE__: ccache with CCACHE_BASEDIR compiles with relative paths, and
  // ctest runs this binary from build/tests.
  const auto dir = std::filesystem::path(TTT_SOURCE_DIR) / "configs";
  int files = 0;
  for (const std::string& size : {std::string("tiny"), std::string("125m"), std::string("350m"),
                                  std::string("760m"), std::string("1.3b")})
    for (const std::string& name : {std::string("transformer"), std::string("ttt_linear"), std::string("ttt_mlp"),
                                    std::string("ttt_linear_tbackbone"), std::string("ttt_mlp_tbackbone"),
                                    std::string("linear_attention"), std::string("mamba"), std::string("mamba2"),
                                    std::string("gated_deltanet"), std::string("ttt_kvb")}) {
      const auto path = dir / (size + "_" + name + ".yaml");
      if (!std::filesystem::exists(path)) continue;
      ++files;
      const YAML::Node m = YAML::LoadFile(path.string())["model"];
      REQUIRE_MESSAGE(m, path.string());
      const std::string mixer = name == "transformer" ? "attention" : name.substr(0, name.find("_tbackbone"));
      const std::string backbone = name.find("tbackbone") != std::string::npos ? "transformer" : "";
      ModelConfig p = preset(size, mixer, backbone);
      INFO(path.string());
      CHECK(m["vocab_size"].as<int64_t>() == p.vocab_size);
      CHECK(m["d_model"].as<int64_t>() == p.d_model);
      CHECK(m["n_layers"].as<int64_t>() == p.n_layers);
      CHECK(m["n_heads"].as<int64_t>() == p.n_heads);
      CHECK(m["d_ff"].as<int64_t>() == p.d_ff);
      CHECK(m["mixer"].as<std::string>() == p.mixer);
      CHECK(m["backbone"].as<std::string>() == p.backbone);
      CHECK(m["tie_embeddings"].as<bool>() == p.tie_embeddings);
      if (size != "tiny") CHECK(YAML::LoadFile(path.string())["train"]["lr"].as<double>() == peak_lr(size));
    }
  // tiny x 4 mixers, 4 sizes x (transformer + 2 TTT x 2 backbones); baselines: tiny x 4, Mamba x 4
  // sizes, 125M Mamba 2, Gated DeltaNet, TTT-KVB.
  CHECK(files == 4 + 4 * 5 + 4 + 4 + 3);
}

// Every YAML preset loads through the trainer's config reader (nested sections included) and its
// analytic parameter count equals the built model's at the tiny size.
TEST_CASE("configs/*.yaml load and count") {
  const auto dir = std::filesystem::path(TTT_SOURCE_DIR) / "configs";
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml" || e.path().filename() == "defaults.yaml") continue;
    INFO(e.path().string());
    RunConfig rc = load_config(e.path().string(), {});
    CHECK(count_parameters(rc.model) > 0);
    if (e.path().filename().string().rfind("tiny_", 0) == 0) {
      auto lm = try_build(rc.model);
      if (lm) CHECK(lm->num_parameters() == count_parameters(rc.model));
    }
    ++files;
  }
  CHECK(files >= 30);
}
