// trainer/cli_info.cpp — `ttt info [--config X]`: the build and devices, and for a config its
// parameter count (analytic, so the paper's 1.3B needs no memory), parameters by part, and the
// training plan the config implies (batch, accumulation, steps, tokens).
#include <algorithm>
#include <cstdio>

#include "layers/e2e_config.h"
#include "layers/presets.h"
#include "trainer/cli_common.h"
#include "trainer/commands.h"
#include "trainer/train_plan.h"

namespace ttt {

namespace {

void print_config_info(const RunConfig& cfg) {
  const ModelConfig& mc = cfg.model;
  validate(mc);
  const int64_t total = count_parameters(mc);
  const int64_t embed = mc.vocab_size * mc.d_model * (mc.tie_embeddings ? 1 : 2);
  int64_t mixer = 0;  // model.pattern may give every block its own mixer
  for (int64_t i = 0; i < mc.n_layers; ++i) mixer += count_mixer_parameters(block_config(mc, i));
  std::printf("config: %s%s\n", cfg.source.c_str(), cfg.name.empty() ? "" : (" (" + cfg.name + ")").c_str());
  std::printf("model: %s, %s backbone, %lld blocks, d_model %lld, %lld heads, d_ff %lld, vocab %lld\n",
              mc.pattern.empty() ? mc.mixer.c_str() : ("pattern " + mc.pattern).c_str(), mc.backbone.c_str(),
              static_cast<long long>(mc.n_layers),
              static_cast<long long>(mc.d_model), static_cast<long long>(mc.n_heads), static_cast<long long>(mc.d_ff),
              static_cast<long long>(mc.vocab_size));
  std::printf("parameters: %lld (%.1fM)\n", static_cast<long long>(total), total / 1e6);
  std::printf("  embeddings%s: %lld\n", mc.tie_embeddings ? " (tied with the LM head)" : " + LM head",
              static_cast<long long>(embed));
  std::printf("  sequence mixers: %lld (%lld per block on average)\n", static_cast<long long>(mixer),
              static_cast<long long>(mixer / std::max<int64_t>(mc.n_layers, 1)));
  std::printf("  rest (norms, SwiGLU, convs): %lld\n", static_cast<long long>(total - embed - mixer));
  std::printf("  non-embedding: %lld\n", static_cast<long long>(total - embed));
  if (mc.arch == "e2e")
    std::printf("TTT-E2E: %lld of %lld blocks updated at test time, fast weights %lld (%.1fM), chunks of %lld tokens, "
                "window %lld, train_mode %s\n",
                static_cast<long long>(e2e_suffix_blocks(mc)), static_cast<long long>(mc.n_layers),
                static_cast<long long>(count_e2e_fast_parameters(mc)), count_e2e_fast_parameters(mc) / 1e6,
                static_cast<long long>(mc.e2e.chunk), static_cast<long long>(mc.window), mc.e2e.train_mode.c_str());
  try {
    TrainPlan p = plan_training(cfg, total);
    std::printf("training plan: %s\n", p.summary().c_str());
  } catch (const std::invalid_argument& e) {
    std::printf("training plan: not consistent: %s\n", e.what());
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build, the devices, and a config's parameter count and plan");
  auto args = std::make_shared<ConfigArgs>();
  args->add_to(cmd, false);
  cmd->callback([args]() {
    std::printf("ttt 0.1\n");
    std::printf("CUDA backend: %s\n", cuda_built() ? "built" : "not built");
    std::printf("CUDA devices: %d\n", cuda_device_count());
    if (!args->path.empty() || !args->sets.empty()) print_config_info(args->load());
  });
}

}  // namespace ttt
