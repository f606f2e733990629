// tests/test_error_catalogue.cpp — every bad input found by trying each command as a new user would
// (issue 16), run through the built `ttt` binary: each must exit non-zero with a message that names
// the problem, and leave every file it was given as it was (the whole scratch tree is compared
// before and after). Then the failures that must change the disk in a controlled way: a disk-full
// checkpoint (a file-size limit, `ulimit -f`, makes the write fail with EFBIG as a full disk fails
// with ENOSPC; portable, no mount), a resume when every checkpoint is broken, and the printed
// resume hint, which must work as printed. Tiny model, a few steps: seconds.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "tests/trainer_test_util.h"

using ttt::testing::run_command;
using ttt::testing::run_ttt;
namespace fs = std::filesystem;

namespace {

const std::string kDir = ttt::testing::tmp_path("catalogue");
const std::string kTtt = std::string(TTT_BINARY_DIR) + "/bin/ttt";

std::string train_args(const std::string& run_dir, const std::string& data = kDir + "/data") {
  return "train --config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml --data " + data +
         " --run-dir " + run_dir +
         " --set model.vocab_size=320 --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2"
         " --set model.d_ff=64 --set model.max_seq_len=32 --set train.lr=1e-2 --set train.batch_tokens=256"
         " --set train.micro_batch=4 --set train.steps=4 --set train.warmup_steps=1 --set train.log_every=1"
         " --set checkpoint.every=2 --set checkpoint.keep_last=2";
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every file under `dir` with a hash of its bytes: equal snapshots = nothing created, deleted or changed.
std::map<std::string, size_t> snapshot(const std::string& dir) {
  std::map<std::string, size_t> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files[e.path().string()] = e.is_regular_file() ? std::hash<std::string>{}(file_text(e.path().string())) : 0;
  return files;
}

// The shared scratch tree, made once: a corpus, two tokenizers, prepared data (and a copy whose
// tokenizer.model was swapped), a 4-step run with checkpoints at steps 2 and 4, and bad inputs.
void setup() {
  static bool done = false;
  if (done) return;
  fs::remove_all(kDir);
  fs::create_directories(kDir);
  ttt::testing::write_grammar_corpus(kDir + "/corpus.jsonl", /*seed=*/11, /*docs=*/120);
  auto ok = [](const std::string& args) {
    auto r = run_ttt(args);
    REQUIRE_MESSAGE(r.code == 0, (args + "\n" + r.output));
  };
  ok("tokenizer train --input " + kDir + "/corpus.jsonl --vocab-size 320 --out " + kDir + "/tok.model");
  ok("tokenizer train --input " + kDir + "/corpus.jsonl --vocab-size 300 --out " + kDir + "/tok2.model");
  ok("data prepare --input " + kDir + "/corpus.jsonl --tokenizer " + kDir + "/tok.model --out " + kDir +
     "/data --val-docs 12 --quiet");
  fs::copy(kDir + "/data", kDir + "/data_swapped");
  fs::copy_file(kDir + "/tok2.model", kDir + "/data_swapped/tokenizer.model", fs::copy_options::overwrite_existing);
  ok(train_args(kDir + "/run"));
  // A jsonl record cut mid-string: the parser's message would quote all 12 KB of it.
  std::ofstream(kDir + "/bad.jsonl") << "{\"text\": \"ok\"}\n{\"text\": \"" << std::string(12000, 'a') << "\n";
  // 400 distinct characters: more pieces than a 300-piece vocabulary has.
  std::string cjk;
  for (int c = 0; c < 400; ++c) {
    const unsigned cp = 0x4E00 + c;
    cjk += {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
            static_cast<char>(0x80 | (cp & 0x3F)), c % 20 == 19 ? '\n' : ' '};
  }
  std::ofstream(kDir + "/cjk.txt") << cjk << cjk;
  std::ofstream(kDir + "/dup.yaml") << "train:\n  lr: 0.01\n  steps: 4\n  lr: 0.02\n";
  done = true;
}

struct BadInput {
  std::string args;     // ttt arguments
  std::string message;  // must appear in the output
  std::string absent = "";  // must not appear ("" = no such check)
};

}  // namespace

TEST_CASE("the catalogue: each bad input exits non-zero, names the problem, changes nothing on disk") {
  setup();
  const std::string ckpt = kDir + "/run/checkpoints/step_4.h5";
  const std::string tiny = "--config " + std::string(TTT_SOURCE_DIR) + "/configs/tiny_transformer.yaml";
  const std::string prep = "data prepare --input " + kDir + "/corpus.jsonl --tokenizer " + kDir + "/tok.model --out " +
                           kDir + "/new_data ";
  const std::vector<BadInput> catalogue = {
      // data
      {prep + "--val-fraction -0.1", "--val-fraction: expected a number in [0, 1], got '-0.1'"},
      {prep + "--val-docs -1", "--val-docs: expected an integer >= 0, got '-1'"},
      {prep + "--threads 0", "--threads: expected an integer >= 1, got '0'"},
      {"data prepare --input " + kDir + "/bad.jsonl --tokenizer " + kDir + "/tok.model --out " + kDir + "/new_data",
       "bad.jsonl:2: malformed JSON", std::string(200, 'a')},
      {"tokenizer train --input " + kDir + "/cjk.txt --vocab-size 300 --character-coverage 1 --out " + kDir +
           "/small.model",
       "--vocab-size 300 is too small", "--character_coverage"},
      // bench
      {"bench " + tiny + " --phases foo", "--phases: unknown phase 'foo'"},
      {"bench " + tiny + " --phases train,,decode", "--phases: unknown phase ''"},
      // eval
      {"eval --checkpoint " + ckpt + " --context 9223372036854775807", "--context 9223372036854775807: the validation data"},
      {"eval --checkpoint " + ckpt + " --context 16 --out " + kDir, "cannot write eval report '" + kDir + "': it is a directory"},
      {"eval --checkpoint " + ckpt + " --context 16 --max-windows 2 --out /dev/full",
       "cannot write eval report '/dev/full': No space left on device"},
      {"eval --checkpoint " + ckpt + " --data /nonexistent/data", "data directory '/nonexistent/data' does not exist"},
      // generate
      {"generate --checkpoint " + ckpt + " --prompt hi --seed -1", "--seed: expected an integer in [0, 2^64 - 1], got '-1'"},
      {"generate --checkpoint " + ckpt + " --prompt hi --top-k many", "--top-k: expected an integer >= 0, got 'many'"},
      {"generate --checkpoint " + ckpt + " --prompt hi --temperature warm", "--temperature: expected a number >= 0, got 'warm'"},
      // train: options and config
      {train_args(kDir + "/run_new") + " --stop-at-step 0", "--stop-at-step: expected an integer >= 1, got '0'"},
      {"train --config " + kDir + "/dup.yaml --data " + kDir + "/data", "dup.yaml:4: key 'train.lr' appears twice (first at"},
      {train_args(kDir + "/run_new") + " --set frobnicator.size=1", "unknown section 'frobnicator'"},
      {train_args(kDir + "/run_new") + " --set train.lr=-1", "--set train.lr=-1: key 'train.lr': must be > 0"},
      // train: the tokenizer must be the data's
      {train_args(kDir + "/run_new") + " --set data.tokenizer=/nonexistent/tok.model",
       "key 'data.tokenizer': '/nonexistent/tok.model' does not exist"},
      {train_args(kDir + "/run_new") + " --set data.tokenizer=" + kDir + "/tok2.model",
       "is not the tokenizer the data was made with"},
      {train_args(kDir + "/run_new", kDir + "/data_swapped"), "was replaced after `ttt data prepare`"},
      // train: resuming
      {train_args(kDir + "/run"), "already has checkpoints: pass --resume"},
      {train_args(kDir + "/run") + " --resume --set train.batch_tokens=512",
       "the config changes its training plan (checkpoint -> now):\n  train.batch_tokens: 256 -> 512"},
  };
  for (const auto& bad : catalogue) {
    const auto before = snapshot(kDir);
    auto r = run_ttt(bad.args);
    CAPTURE(bad.args);
    CAPTURE(r.output);
    CHECK(r.code != 0);
    CHECK(r.code < 128);  // an error, not a crash
    CHECK(r.output.find(bad.message) != std::string::npos);
    if (!bad.absent.empty()) CHECK(r.output.find(bad.absent) == std::string::npos);
    CHECK(r.output.size() < 2000);  // one message, not a dump
    CHECK(snapshot(kDir) == before);
  }
}

TEST_CASE("accepted without effect: a resume already at --stop-at-step changes nothing") {
  setup();
  const auto before = snapshot(kDir);
  auto r = run_ttt(train_args(kDir + "/run") + " --resume --stop-at-step 2");
  CAPTURE(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("already at --stop-at-step 2: nothing to do") != std::string::npos);
  CHECK(snapshot(kDir) == before);
}

TEST_CASE("disk full during a checkpoint: the reason, exit 1, no partial file, earlier checkpoints intact") {
  setup();
  const std::string run = kDir + "/run_full", ckpts = run + "/checkpoints";
  auto first = run_ttt(train_args(run) + " --stop-at-step 2");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  const auto checkpoints_before = snapshot(ckpts);
  // 64 KiB per file: enough for metrics.jsonl and train.log, not for a checkpoint (~250 KB).
  auto full = run_command("bash -c 'ulimit -f 64; exec " + kTtt + " " + train_args(run) + " --resume'");
  CAPTURE(full.output);
  CHECK(full.code == 1);  // not 139 (the segfault in HDF5's exit handler) nor 153 (SIGXFSZ)
  CHECK(full.output.find("cannot write checkpoint '" + ckpts + "/step_4.h5'") != std::string::npos);
  CHECK(full.output.find("File too large (errno 27)") != std::string::npos);
  CHECK(full.output.find("the partial file was removed") != std::string::npos);
  CHECK(snapshot(ckpts) == checkpoints_before);  // no .tmp, step_2.h5 byte for byte
  CHECK(file_text(run + "/train.log").find("[error] cannot write checkpoint") != std::string::npos);
  // With space again the run resumes from step 2 and finishes.
  auto again = run_ttt(train_args(run) + " --resume");
  CAPTURE(again.output);
  CHECK(again.code == 0);
  CHECK(again.output.find("resumed from " + ckpts + "/step_2.h5") != std::string::npos);
  CHECK(again.output.find("finished 4 steps") != std::string::npos);
}

TEST_CASE("every checkpoint broken: set aside and refused, then the run starts over; keep_last keeps the new one") {
  setup();
  const std::string run = kDir + "/run_broken", ckpts = run + "/checkpoints";
  auto first = run_ttt(train_args(run) + " --set checkpoint.keep_last=1 --stop-at-step 2");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  const std::string p2 = ckpts + "/step_2.h5";
  fs::resize_file(p2, fs::file_size(p2) / 2);
  const std::string metrics = file_text(run + "/metrics.jsonl");
  auto refused = run_ttt(train_args(run) + " --set checkpoint.keep_last=1 --resume");
  CAPTURE(refused.output);
  CHECK(refused.code == 1);
  CHECK(refused.output.find("no checkpoint of " + ckpts + " can be read (moved aside: " + p2 + ".broken)") !=
        std::string::npos);
  CHECK(file_text(run + "/metrics.jsonl") == metrics);
  auto restart = run_ttt(train_args(run) + " --set checkpoint.keep_last=1 --resume");
  CAPTURE(restart.output);
  CHECK(restart.code == 0);
  CHECK(restart.output.find("finished 4 steps") != std::string::npos);
  CHECK(fs::exists(ckpts + "/step_4.h5"));
  CHECK(fs::exists(p2 + ".broken"));
}

TEST_CASE("the resume hint printed after an early stop works as printed") {
  setup();
  const std::string run = kDir + "/run_hint";
  auto part = run_ttt(train_args(run) + " --stop-at-step 2");
  REQUIRE_MESSAGE(part.code == 0, part.output);
  const size_t at = part.output.find("to continue: ttt ");
  REQUIRE(at != std::string::npos);
  const size_t begin = at + std::string("to continue: ttt ").size();
  const std::string hint = part.output.substr(begin, part.output.find('\n', begin) - begin);
  CHECK(hint == "train --config " + run + "/config.yaml --run-dir " + run + " --resume");
  auto rest = run_command("cd / && " + kTtt + " " + hint);  // from another directory, no --data, no --set
  CAPTURE(rest.output);
  CHECK(rest.code == 0);
  CHECK(rest.output.find("finished 4 steps") != std::string::npos);
}

TEST_CASE("a non-finite loss after a resume names the step and the checkpoint resumed from, in train.log too") {
  setup();
  const std::string run = kDir + "/run_nan";
  auto part = run_ttt(train_args(run) + " --stop-at-step 2");
  REQUIRE_MESSAGE(part.code == 0, part.output);
  // An absurd learning rate: the first update blows the weights up, the next loss is not finite.
  auto r = run_ttt(train_args(run) + " --resume --allow-config-change --set train.lr=1e30");
  CAPTURE(r.output);
  CHECK(r.code == 1);
  const std::string expected = "parameters not updated (last checkpoint: " + run + "/checkpoints/step_2.h5)";
  CHECK(r.output.find("non-finite") != std::string::npos);
  CHECK(r.output.find(expected) != std::string::npos);
  const std::string log = file_text(run + "/train.log");
  CHECK(log.find("[error] non-finite") != std::string::npos);
  CHECK(log.find(expected) != std::string::npos);
}
