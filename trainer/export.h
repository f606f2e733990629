// trainer/export.h — `ttt export` / `ttt import`: a checkpoint as a Hugging Face style directory
// (safetensors weights + config.json) with the names, layouts and config schema of the official
// TTT PyTorch model (TTT-Linear, TTT-MLP) or of HF Llama (Transformer++); see export_schema.h.
//
// An export directory holds:
//   model.safetensors   every parameter, float32, under the external names (metadata format "pt")
//   config.json         TTTConfig's or LlamaConfig's keys, plus "ttt_checkpoint": {step, tokens,
//                       config_yaml (our resolved run config)} so that import restores our config
//                       exactly; other readers ignore the extra key
//   tokenizer.model     the sentencepiece model, when the checkpoint holds one
// Import reads such a directory, or one written by other tools in the same schema (config.json
// without "ttt_checkpoint": the model comes from the schema's keys and our defaults; sharded
// weights through model.safetensors.index.json; float32/bfloat16/float16/float64 tensors), and
// writes a checkpoint without optimizer state, for `ttt eval`, `ttt generate` and
// `ttt train --init-from`. Export then import gives back the same parameters, bit for bit, and
// the same config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/export_schema.h"

namespace ttt {

struct ExportResult {
  ExternalSchema schema = ExternalSchema::ttt_pytorch;
  std::vector<std::string> files;  // paths written
  int64_t tensors = 0;
  int64_t parameters = 0;
};
// Refuses (std::invalid_argument) a model neither schema expresses, naming the config key, and an
// `out_dir` that already holds model.safetensors or config.json unless `overwrite`.
ExportResult export_safetensors(const std::string& checkpoint, const std::string& out_dir, bool overwrite);

struct ImportResult {
  ExternalSchema schema = ExternalSchema::ttt_pytorch;
  RunConfig cfg;
  int64_t tensors = 0;
  int64_t parameters = 0;
};
// Errors name the directory and the tensor or key: a missing or misshapen tensor, a tensor the
// model has no place for, a config our models cannot express. Refuses to replace an existing
// `out_checkpoint` unless `overwrite`.
ImportResult import_safetensors(const std::string& dir, const std::string& out_checkpoint, bool overwrite);

}  // namespace ttt
