// tests/test_trainer_config.cpp — config loading: defaults, file + --set overrides, strict types,
// unknown keys with did-you-mean, missing required keys, the resolved dump round trip, and
// configs/defaults.yaml being exactly what the schema says.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "trainer/config.h"
#include "tests/trainer_test_util.h"

using namespace ttt;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ttt::testing::tmp_path("config_" + name) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("defaults come from the structs") {
  RunConfig c = load_config("");
  CHECK(c.model.vocab_size == ModelConfig{}.vocab_size);
  CHECK(c.train.batch_tokens == 524288);
  CHECK(c.train.beta2 == 0.95);
  CHECK(c.model.ttt.mini_batch == 16);
  CHECK(c.set_keys.empty());
}

TEST_CASE("file values and --set overrides, typed") {
  std::string p = write_temp("ok",
                             "name: tiny\n"
                             "model:\n  d_model: 64\n  mixer: ttt_mlp\n  ttt:\n    mini_batch: 8\n    rope: false\n"
                             "train:\n  lr: 3e-3\n  tokens: 2.5e9\n  decay_all: no\n"
                             "eval:\n  contexts: [128, 256]\n"
                             "checkpoint:\n");
  RunConfig c = load_config(p, {"train.lr=1e-3", "eval.contexts=64,512,1024", "model.ttt.impl=primal"});
  CHECK(c.name == "tiny");
  CHECK(c.model.d_model == 64);
  CHECK(c.model.mixer == "ttt_mlp");
  CHECK(c.model.ttt.mini_batch == 8);
  CHECK(c.model.ttt.rope == false);
  CHECK(c.train.lr == 1e-3);  // --set wins over the file
  CHECK(c.train.tokens == 2500000000LL);
  CHECK(c.train.decay_all == false);
  CHECK(c.eval.contexts == std::vector<int64_t>{64, 512, 1024});
  CHECK(c.model.ttt.impl == "primal");
  CHECK(c.was_set("train.lr"));
  CHECK_FALSE(c.was_set("train.beta1"));
  CHECK(load_config(p, {"eval.contexts=[1, 2]"}).eval.contexts == std::vector<int64_t>{1, 2});
}

TEST_CASE("unknown keys: error names file, line and a suggestion") {
  std::string p = write_temp("typo", "model:\n  d_model: 64\ntrain:\n  lrr: 0.1\n");
  std::string e = error_of([&] { load_config(p); });
  CHECK(e.find(p + ":4") != std::string::npos);
  CHECK(e.find("unknown key 'train.lrr'") != std::string::npos);
  CHECK(e.find("did you mean 'train.lr'") != std::string::npos);
  // Right key, wrong section.
  e = error_of([&] { load_config("", {"train.vocab_size=3"}); });
  CHECK(e.find("--set train.vocab_size=3") != std::string::npos);
  CHECK(e.find("did you mean 'model.vocab_size'") != std::string::npos);
  // Nothing close: the valid keys of the section are listed.
  e = error_of([&] { load_config("", {"checkpoint.frobnicate=1"}); });
  CHECK(e.find("valid keys in 'checkpoint': every, keep_last") != std::string::npos);
  e = error_of([&] { load_config(write_temp("sec", "trian:\n  lr: 1\n")); });
  CHECK(e.find("did you mean 'train'") != std::string::npos);
  // An unknown section is named as such, with the real sections listed (not an empty key list).
  e = error_of([&] { load_config("", {"frobnicator.size=1"}); });
  CHECK(e.find("unknown section 'frobnicator' in 'frobnicator.size'") != std::string::npos);
  CHECK(e.find("(valid keys: name, description, model, train, data, checkpoint, eval, dist)") != std::string::npos);
}

TEST_CASE("a key given twice is an error naming both lines") {
  std::string p = write_temp("dup", "train:\n  lr: 0.1\n  seed: 3\n  lr: 0.2\n");
  std::string e = error_of([&] { load_config(p); });
  CHECK(e == p + ":4: key 'train.lr' appears twice (first at " + p + ":2)");
  e = error_of([&] { load_config(write_temp("dup2", "train:\n  lr: 0.1\ntrain:\n  seed: 1\n")); });
  CHECK(e.find("key 'train' appears twice") != std::string::npos);
}

TEST_CASE("wrong types: error names key, expected type and value") {
  std::string p = write_temp("type", "train:\n  lr: fast\n");
  std::string e = error_of([&] { load_config(p); });
  CHECK(e == p + ":2: key 'train.lr': expected float, got 'fast'");
  e = error_of([&] { load_config("", {"model.d_model=1.5"}); });
  CHECK(e == "--set model.d_model=1.5: key 'model.d_model': expected int, got '1.5'");
  e = error_of([&] { load_config("", {"model.tie_embeddings=maybe"}); });
  CHECK(e.find("expected bool (true or false), got 'maybe'") != std::string::npos);
  e = error_of([&] { load_config("", {"model.mixer=rnn"}); });
  CHECK(e.find("one of: attention, ttt_linear, ttt_mlp, linear_attention") != std::string::npos);
  e = error_of([&] { load_config("", {"train.seed=-1"}); });
  CHECK(e.find("expected non-negative int") != std::string::npos);
  e = error_of([&] { load_config("", {"eval.contexts=1,x"}); });
  CHECK(e.find("expected list of ints") != std::string::npos);
  e = error_of([&] { load_config(write_temp("map", "model:\n  d_model:\n    a: 1\n")); });
  CHECK(e.find("expected int, got a mapping") != std::string::npos);
  e = error_of([&] { load_config("", {"train.device=tpu"}); });
  CHECK(e.find("unknown device 'tpu'") != std::string::npos);
  e = error_of([&] { load_config("", {"train"}); });
  CHECK(e.find("expected section.key=value") != std::string::npos);
  e = error_of([&] { load_config("", {"train=1"}); });
  CHECK(e.find("'train' is a section") != std::string::npos);
  e = error_of([&] { load_config(write_temp("bad", "model: [1, 2\n")); });
  CHECK(e.find("invalid YAML") != std::string::npos);
  e = error_of([&] { load_config("/nonexistent/x.yaml"); });
  CHECK(e == "cannot open config file '/nonexistent/x.yaml'");
}

TEST_CASE("missing required keys and bad values for training") {
  std::string p = write_temp("req", "train:\n  lr: 0.001\n");
  std::string e = error_of([&] { validate_for_training(load_config(p)); });
  CHECK(e.find(p + ": missing required key 'data.dir' (string") != std::string::npos);
  e = error_of([&] { validate_for_training(load_config("", {"data.dir=x"})); });
  CHECK(e.find("config: missing required key 'train.lr' (float") != std::string::npos);
  e = error_of([&] { validate_for_training(load_config(p, {"data.dir=x", "train.warmup_frac=2"})); });
  CHECK(e.find("'train.warmup_frac': must be in [0, 1]") != std::string::npos);
  e = error_of([&] { validate_for_training(load_config(p, {"data.dir=x", "train.dtype=fp16"})); });
  CHECK(e.find("train.dtype") != std::string::npos);
  CHECK_NOTHROW(validate_for_training(load_config(p, {"data.dir=x", "train.dtype=bf16"})));
  e = error_of([&] { validate_for_training(load_config(p, {"data.dir=x", "dist.zero=2"})); });
  CHECK(e == "--set dist.zero=2: key 'dist.zero': must be 0 or 1");
  CHECK_NOTHROW(validate_for_training(load_config(p, {"data.dir=x", "dist.zero=1"})));
  CHECK_NOTHROW(validate_for_training(load_config(p, {"data.dir=x"})));
  // A bad value is blamed on where it was set: the --set, or the file's line.
  e = error_of([&] { validate_for_training(load_config(p, {"data.dir=x", "train.lr=-1"})); });
  CHECK(e == "--set train.lr=-1: key 'train.lr': must be > 0");
  std::string q = write_temp("badlr", "train:\n  lr: -1\ndata:\n  dir: x\n");
  e = error_of([&] { validate_for_training(load_config(q)); });
  CHECK(e == q + ":2: key 'train.lr': must be > 0");
}

TEST_CASE("the resolved dump reads back to the same values") {
  RunConfig c = load_config("", {"train.lr=0.1", "train.min_lr=1e-5", "model.init_std=0.02", "name=a \"quoted\": name",
                                 "eval.contexts=1024,2048", "model.ttt.base_lr=0.30000000000000004",
                                 "train.seed=18446744073709551615"});
  std::string y = dump_config(c);
  RunConfig d = load_config_string(y, "dump");
  CHECK(dump_config(d) == y);
  CHECK(d.train.lr == 0.1);
  CHECK(d.model.ttt.base_lr == 0.30000000000000004);  // shortest round-trip formatting
  CHECK(d.name == "a \"quoted\": name");
  CHECK(d.train.seed == 18446744073709551615ULL);
  CHECK(d.eval.contexts == std::vector<int64_t>{1024, 2048});
  CHECK(y.find("  ttt:\n    mini_batch: 16\n") != std::string::npos);
}

TEST_CASE("floats are written so YAML 1.1 readers see floats") {
  CHECK(format_yaml_float(1e-5) == "1.0e-05");
  CHECK(format_yaml_float(3.0) == "3.0");
  CHECK(format_yaml_float(0.95) == "0.95");
  CHECK(format_yaml_float(1e20) == "1.0e+20");
  CHECK(format_yaml_float(-2.5e-7) == "-2.5e-07");
}

TEST_CASE("configs/defaults.yaml is the schema written out") {
  std::ifstream in(std::string(TTT_SOURCE_DIR) + "/configs/defaults.yaml");
  REQUIRE_MESSAGE(in.good(), "configs/defaults.yaml missing: regenerate with `ttt config defaults > configs/defaults.yaml`");
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK_MESSAGE(ss.str() == defaults_yaml_with_docs(),
                "configs/defaults.yaml is stale: regenerate with `ttt config defaults > configs/defaults.yaml`");
  // And it loads: every key present, no unknown ones.
  RunConfig c = load_config_string(ss.str(), "defaults.yaml");
  CHECK(c.set_keys.size() == config_schema().size());
}

TEST_CASE("every schema key is distinct and documented") {
  std::set<std::string> names;
  for (const auto& k : config_schema()) {
    CHECK_MESSAGE(names.insert(k.name).second, k.name);
    CHECK_MESSAGE(!k.doc.empty(), k.name);
  }
}
