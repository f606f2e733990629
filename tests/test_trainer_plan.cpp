// tests/test_trainer_plan.cpp — accumulation, Chinchilla token budget and step counts derived
// from the config, and the error when the batch does not divide.
#include <doctest/doctest.h>

#include "trainer/train_plan.h"

using namespace ttt;

TEST_CASE("paper recipe: 0.5M-token batches through accumulation, 20 tokens per parameter") {
  RunConfig c = load_config("", {"model.max_seq_len=2048", "train.micro_batch=16"});
  TrainPlan p = plan_training(c, 125000000);
  CHECK(p.accumulation == 524288 / (16 * 2048));  // 16
  CHECK(p.total_tokens == (2500000000LL / 524288) * 524288);
  CHECK(p.total_steps == 4768);                 // 2.5B / 0.5M, floored
  CHECK(p.warmup_steps == 477);                 // 10%
  TrainPlan p8 = plan_training(c, 125000000, 8);
  CHECK(p8.accumulation == 2);
  // train.seq_len overrides model.max_seq_len as the training context.
  c = load_config("", {"model.max_seq_len=2048", "train.seq_len=1024", "train.micro_batch=16"});
  CHECK(plan_training(c, 125000000).seq_len == 1024);
  CHECK(plan_training(c, 125000000).accumulation == 32);
}

TEST_CASE("train.steps and train.tokens override; warmup_steps overrides the fraction") {
  RunConfig c = load_config("", {"model.max_seq_len=64", "train.micro_batch=2", "train.batch_tokens=256",
                                 "train.tokens=2560", "train.warmup_steps=3"});
  TrainPlan p = plan_training(c, 1000);
  CHECK(p.accumulation == 2);
  CHECK(p.total_steps == 10);
  CHECK(p.warmup_steps == 3);
  c = load_config("", {"model.max_seq_len=64", "train.micro_batch=2", "train.batch_tokens=256", "train.steps=7"});
  CHECK(plan_training(c, 1000).total_steps == 7);
}

TEST_CASE("errors: batch not divisible, budget below one batch") {
  RunConfig c = load_config("", {"model.max_seq_len=100", "train.micro_batch=3", "train.batch_tokens=1000"});
  CHECK_THROWS_WITH_AS(plan_training(c, 10), doctest::Contains("must be a multiple of train.micro_batch x train.seq_len"),
                       std::invalid_argument);
  c = load_config("", {"model.max_seq_len=100", "train.micro_batch=1", "train.batch_tokens=1000"});
  CHECK_THROWS_WITH_AS(plan_training(c, 10), doctest::Contains("less than one batch"), std::invalid_argument);
}
