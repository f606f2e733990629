// tests/test_trainer_extend_configs.cpp — configs/125m_*_extend.yaml (context extension): each is
// its base config with only the keys the paper's finetune changes (no parameter shape), starts
// from the base run's last checkpoint, and trains 20% of its steps.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "layers/presets.h"
#include "trainer/config.h"
#include "trainer/train_plan.h"

using namespace ttt;

namespace {

std::set<std::string> changed_keys(const RunConfig& a, const RunConfig& b) {
  std::set<std::string> keys;
  for (const std::string& d : config_differences(a, b)) keys.insert(d.substr(0, d.find(':')));
  return keys;
}

}  // namespace

TEST_CASE("configs/125m_*_extend.yaml: the base model, the paper's finetune recipe, the base run's last checkpoint") {
  const std::string dir = std::string(TTT_SOURCE_DIR) + "/configs/";
  for (const std::string name : {"transformer", "ttt_linear", "ttt_mlp"}) {
    CAPTURE(name);
    const RunConfig base = load_config(dir + "125m_" + name + ".yaml");
    const RunConfig ext = load_config(dir + "125m_" + name + "_extend.yaml");
    std::set<std::string> expect = {"name", "model.max_seq_len", "train.init_from", "train.lr", "train.steps",
                                    "train.micro_batch"};
    if (name == "transformer") expect.insert("model.rope_theta");
    if (name == "ttt_mlp") expect.insert("model.ttt.base_lr_init");  // no second inner-LR warmup
    CHECK(changed_keys(base, ext) == expect);
    CHECK(count_parameters(ext.model) == count_parameters(base.model));
    const TrainPlan pre = plan_training(base, count_parameters(base.model));
    const TrainPlan fine = plan_training(ext, count_parameters(ext.model));
    CHECK(ext.train.init_from == "runs/125m_" + name + "/checkpoints/step_" + std::to_string(pre.total_steps) + ".h5");
    CHECK(fine.total_steps == std::lround(0.2 * static_cast<double>(pre.total_steps)));  // 20% more tokens
    CHECK(fine.batch_tokens == pre.batch_tokens);
    CHECK(ext.train.lr == 1e-4);  // App. C: the best finetune LR at 125M
    CHECK(ext.seq_len() == 32768);
    if (name == "transformer") CHECK(ext.model.rope_theta == 500000.0);
    if (name == "ttt_mlp") CHECK(ext.model.ttt.base_lr_init == ext.model.ttt.base_lr);
    CHECK_NOTHROW(validate_for_training(ext, /*check_required=*/false));
  }
}
