// trainer/init_from.cpp — see init_from.h.
#include "trainer/init_from.h"

#include <map>
#include <stdexcept>

#include "data/sha256.h"
#include "layers/language_model.h"

namespace ttt {

namespace {

// The first parameter that differs between the checkpoint's model and ours, in our order, as
// "parameter 'x' has shape [..] in the checkpoint, [..] in this model" (or is missing on one side).
std::string first_mismatch(const ModelConfig& theirs, const NamedTensors& ours) {
  std::vector<std::pair<std::string, Shape>> stored;  // the checkpoint model's, in its order
  {
    LanguageModel m(theirs);  // only for the names and shapes
    for (const auto& [n, t] : m.named_parameters()) stored.emplace_back(n, t.shape());
  }
  std::map<std::string, Shape> mine;
  for (const auto& [n, t] : ours) mine.emplace(n, t.shape());
  std::map<std::string, Shape> by_name(stored.begin(), stored.end());
  for (const auto& [n, t] : ours) {
    auto it = by_name.find(n);
    if (it == by_name.end()) return "parameter '" + n + "' " + t.shape().str() + " of this model is not in the checkpoint";
    if (it->second != t.shape())
      return "parameter '" + n + "' has shape " + it->second.str() + " in the checkpoint, " + t.shape().str() + " in this model";
  }
  for (const auto& [n, s] : stored)
    if (!mine.count(n)) return "parameter '" + n + "' of the checkpoint is not in this model";
  return "";
}

}  // namespace

InitFromResult init_from_checkpoint(const std::string& path, const RunConfig& cfg, const NamedTensors& params,
                                    const std::string& data_tokenizer_sha256) {
  const std::string what = "train.init_from: ";
  const std::string problem = checkpoint_problem(path);
  if (!problem.empty()) throw std::invalid_argument(what + "cannot use checkpoint: " + problem);
  InitFromResult res;
  res.meta = read_checkpoint_meta(path);
  const RunConfig theirs = load_config_string(res.meta.config_yaml, path + " (stored config)");
  for (const auto& d : config_differences(theirs, cfg))
    if (d.rfind("model.", 0) == 0) res.differences.push_back(d);

  auto tok = res.meta.extras.find("tokenizer.model");
  if (tok != res.meta.extras.end() && !data_tokenizer_sha256.empty() && sha256_hex(tok->second) != data_tokenizer_sha256)
    throw std::invalid_argument(what + path + " was trained with another tokenizer than the training data's");

  // Shapes follow from the model config (same model keys, same shapes): compare before reading any
  // tensor, so the error names the parameter and the keys instead of listing every tensor.
  const std::string mismatch = res.differences.empty() ? "" : first_mismatch(theirs.model, params);
  if (!mismatch.empty()) {
    std::string keys;
    for (const auto& d : res.differences) keys += (keys.empty() ? "" : "; ") + d;
    throw std::invalid_argument(what + path + " cannot initialize the model of this config: " + mismatch +
                                (keys.empty() ? "" : " (model keys, checkpoint -> this config: " + keys + ")"));
  }
  load_checkpoint(path, params, nullptr);
  return res;
}

}  // namespace ttt
