// trainer/cli_export.cpp — `ttt export` and `ttt import` (trainer/export.h).
#include <cstdio>
#include <memory>

#include "trainer/commands.h"
#include "trainer/export.h"

namespace ttt {

namespace {

struct ExportArgs {
  std::string checkpoint, format = "safetensors", out;
  bool force = false;
};

struct ImportArgs {
  std::string input, out;
  bool force = false;
};

}  // namespace

void add_export_commands(CLI::App& app) {
  auto* ex = app.add_subcommand(
      "export", "Write a checkpoint as safetensors + config.json with the official TTT PyTorch names (TTT-Linear, "
                "TTT-MLP) or HF Llama's (Transformer++)");
  auto a = std::make_shared<ExportArgs>();
  ex->add_option("--checkpoint", a->checkpoint, "Checkpoint (.h5) to export")->required()->check(CLI::ExistingFile);
  ex->add_option("--format", a->format, "Output format")->check(CLI::IsMember({"safetensors"}))->capture_default_str();
  ex->add_option("--out", a->out, "Output directory (model.safetensors, config.json, tokenizer.model)")->required();
  ex->add_flag("--force", a->force, "Replace the files of an earlier export in --out");
  ex->callback([a]() {
    const ExportResult r = export_safetensors(a->checkpoint, a->out, a->force);
    std::printf("exported %lld tensors (%lld parameters) in the %s schema:\n", static_cast<long long>(r.tensors),
                static_cast<long long>(r.parameters), schema_name(r.schema));
    for (const auto& f : r.files) std::printf("  %s\n", f.c_str());
  });

  auto* im = app.add_subcommand(
      "import", "Read an export directory (safetensors + config.json, official TTT or HF Llama schema) into a "
                "checkpoint for eval, generate and train --init-from");
  auto b = std::make_shared<ImportArgs>();
  im->add_option("--input", b->input, "Directory with config.json and model.safetensors (or its index)")
      ->required()
      ->check(CLI::ExistingDirectory);
  im->add_option("--out", b->out, "Checkpoint file to write (.h5)")->required();
  im->add_flag("--force", b->force, "Replace an existing --out file");
  im->callback([b]() {
    const ImportResult r = import_safetensors(b->input, b->out, b->force);
    std::printf("imported %lld tensors (%lld parameters, %s schema: %s, %s backbone) into %s\n",
                static_cast<long long>(r.tensors), static_cast<long long>(r.parameters), schema_name(r.schema),
                r.cfg.model.mixer.c_str(), r.cfg.model.backbone.c_str(), b->out.c_str());
  });
}

}  // namespace ttt
