// tests/test_trainer_checkpoint.cpp — checkpoint files: exact round trip of parameters, moments
// and metadata; truncated, corrupted and foreign files are reported and skipped on resume;
// keep_last pruning and broken files set aside; load errors name the tensor; a failed write
// (disk full) leaves no partial file and earlier checkpoints intact.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "autograd/ops.h"
#include "trainer/checkpoint.h"
#include "tests/trainer_test_util.h"

using namespace ttt;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  std::string dir;
  Tensor w, b, s;
  NamedTensors params;
  explicit Fixture(const std::string& name) : dir(ttt::testing::tmp_path("ckpt_" + name)) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    Generator g(7);
    w = randn({64, 33}, g).set_requires_grad(true);
    b = randn({33}, g).set_requires_grad(true);
    s = full({}, 0.25).set_requires_grad(true);
    params = {{"blocks.0.w", w}, {"blocks.0.b", b}, {"scale", s}};
  }
};

void corrupt_byte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.read(&c, 1);
  c ^= 0x5a;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Offset of the first occurrence of `needle` (raw bytes) in the file.
size_t find_bytes(const std::string& path, const void* needle, size_t n) {
  std::ifstream f(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t pos = data.find(std::string(static_cast<const char*>(needle), n));
  REQUIRE(pos != std::string::npos);
  return pos;
}

}  // namespace

TEST_CASE("round trip: parameters, moments, step, rng, config, extras bit for bit") {
  Fixture fx("roundtrip");
  AdamW opt(fx.params, {});
  fx.w.set_grad(ones({64, 33}));
  opt.step(0.1);
  opt.step(0.1);
  CheckpointMeta meta;
  meta.step = 2;
  meta.tokens = 4096;
  meta.rng_seed = 0xdeadbeefcafeULL;
  meta.rng_offset = 123456789;
  meta.config_yaml = "model:\n  d_model: 8\n";
  meta.extras["tokenizer.model"] = std::string("\0\1binary\xff", 9);
  const std::string path = checkpoint_path(fx.dir, 2);
  save_checkpoint(path, fx.params, &opt, meta);
  CHECK(fs::exists(path));
  CHECK_FALSE(fs::exists(path + ".tmp"));
  CHECK(checkpoint_problem(path) == "");

  auto w0 = fx.w.tolist<float>(), b0 = fx.b.tolist<float>(), m0 = opt.slots()[0].m.tolist<float>();
  auto v0 = opt.slots()[0].v.tolist<float>();
  const double s0 = fx.s.item();  // decayed by the two steps
  // Scramble, then load back.
  Fixture other("roundtrip_other");
  AdamW opt2(other.params, {});
  CheckpointMeta got = load_checkpoint(path, other.params, &opt2);
  CHECK(other.w.tolist<float>() == w0);
  CHECK(other.b.tolist<float>() == b0);
  CHECK(other.s.item() == s0);
  CHECK(other.s.dim() == 0);
  CHECK(opt2.slots()[0].m.tolist<float>() == m0);
  CHECK(opt2.slots()[0].v.tolist<float>() == v0);
  CHECK(opt2.step_count() == 2);
  CHECK(got.step == 2);
  CHECK(got.tokens == 4096);
  CHECK(got.rng_seed == 0xdeadbeefcafeULL);
  CHECK(got.rng_offset == 123456789);
  CHECK(got.config_yaml == meta.config_yaml);
  CHECK(got.extras.at("tokenizer.model") == meta.extras.at("tokenizer.model"));
  CHECK(read_checkpoint_meta(path).step == 2);
}

TEST_CASE("load errors name the file and tensor; a failed load leaves the model untouched") {
  Fixture fx("errors");
  const std::string path = checkpoint_path(fx.dir, 1);
  save_checkpoint(path, fx.params, nullptr, {});
  Generator g(1);
  Tensor w_bad = randn({64, 32}, g).set_requires_grad(true);
  Tensor b = zeros({33}).set_requires_grad(true), s = zeros({}).set_requires_grad(true);
  CHECK_THROWS_WITH(load_checkpoint(path, {{"blocks.0.w", w_bad}, {"blocks.0.b", b}, {"scale", s}}, nullptr),
                    doctest::Contains("parameter 'blocks.0.w' has shape [64, 33] in the file but [64, 32] in the model"));
  CHECK(b.tolist<float>() == std::vector<float>(33, 0.0f));
  CHECK_THROWS_WITH(load_checkpoint(path, {{"blocks.0.b", b}, {"extra", s}}, nullptr),
                    doctest::Contains("Missing in the file: extra"));
  AdamW opt({{"blocks.0.b", b}}, {});
  CHECK_THROWS_WITH(load_checkpoint(path, fx.params, &opt), doctest::Contains("no optimizer state"));
  CHECK_THROWS_WITH(load_checkpoint(fx.dir + "/nope.h5", fx.params, nullptr), doctest::Contains("does not exist"));
}

TEST_CASE("truncated and corrupted checkpoints are reported and skipped on resume") {
  Fixture fx("corrupt");
  for (int step : {10, 20, 30, 40}) {
    CheckpointMeta m;
    m.step = step;
    {
      NoGradGuard ng;
      fx.w.fill_(1.2345 + step);  // a recognizable pattern to find in the file
    }
    save_checkpoint(checkpoint_path(fx.dir, step), fx.params, nullptr, m);
  }
  // 40: truncated to half its size.
  const std::string p40 = checkpoint_path(fx.dir, 40);
  fs::resize_file(p40, fs::file_size(p40) / 2);
  // 30: one flipped byte inside the parameter data (caught by the Fletcher-32 checksum).
  const std::string p30 = checkpoint_path(fx.dir, 30);
  float pattern = 1.2345f + 30;
  corrupt_byte(p30, find_bytes(p30, &pattern, 4) + 2);
  // A stale temporary file of a crashed save and a foreign file are not checkpoints.
  std::ofstream(checkpoint_path(fx.dir, 50) + ".tmp") << "partial";
  std::ofstream(fx.dir + "/notes.txt") << "hello";

  CHECK(checkpoint_problem(p40).find("cannot be opened") != std::string::npos);
  CHECK(checkpoint_problem(p30).find("unreadable (checksum mismatch") != std::string::npos);
  std::vector<SkippedCheckpoint> skipped;
  auto best = newest_valid_checkpoint(fx.dir, &skipped);
  REQUIRE(best.has_value());
  CHECK(*best == checkpoint_path(fx.dir, 20));
  REQUIRE(skipped.size() == 2);
  CHECK(skipped[0].path == p40);
  CHECK(skipped[0].problem.find("cannot be opened") != std::string::npos);
  CHECK(skipped[1].path == p30);
  CHECK_THROWS_WITH(load_checkpoint(p30, fx.params, nullptr), doctest::Contains("checksum mismatch"));

  // A file that is HDF5 but not ours.
  std::ofstream(fx.dir + "/step_60.h5") << "not hdf5 at all";
  CHECK(checkpoint_problem(fx.dir + "/step_60.h5").find("cannot be opened") != std::string::npos);
  CHECK(*newest_valid_checkpoint(fx.dir, nullptr) == checkpoint_path(fx.dir, 20));
}

TEST_CASE("list and prune keep the newest N by step number") {
  Fixture fx("prune");
  for (int step : {5, 100, 20, 3}) save_checkpoint(checkpoint_path(fx.dir, step), fx.params, nullptr, {});
  auto all = list_checkpoints(fx.dir);
  REQUIRE(all.size() == 4);
  CHECK(all[0].first == 3);
  CHECK(all[3].first == 100);  // numeric, not lexicographic order
  auto removed = prune_checkpoints(fx.dir, 2);
  CHECK(removed.size() == 2);
  all = list_checkpoints(fx.dir);
  REQUIRE(all.size() == 2);
  CHECK(all[0].first == 20);
  CHECK(all[1].first == 100);
  CHECK(prune_checkpoints(fx.dir, 0).empty());  // 0 = keep all
  CHECK(list_checkpoints("/tmp/ttt_no_such_dir").empty());
  CHECK_FALSE(newest_valid_checkpoint("/tmp/ttt_no_such_dir", nullptr).has_value());
}

TEST_CASE("prune counts only checkpoints up to the step just saved; broken ones are set aside, never deleted") {
  Fixture fx("aside");
  for (int step : {2, 4, 10}) save_checkpoint(checkpoint_path(fx.dir, step), fx.params, nullptr, {});
  // A checkpoint of a later step (another run's, or one to be set aside) never makes the one just
  // written look old.
  auto removed = prune_checkpoints(fx.dir, 1, /*through_step=*/4);
  REQUIRE(removed.size() == 1);
  CHECK(removed[0] == checkpoint_path(fx.dir, 2));
  CHECK(fs::exists(checkpoint_path(fx.dir, 4)));
  CHECK(fs::exists(checkpoint_path(fx.dir, 10)));

  const std::string p10 = checkpoint_path(fx.dir, 10);
  CHECK(set_aside_checkpoint(p10) == p10 + ".broken");
  save_checkpoint(p10, fx.params, nullptr, {});
  CHECK(set_aside_checkpoint(p10) == p10 + ".broken.2");  // an earlier one is not overwritten
  CHECK(fs::exists(p10 + ".broken"));
  auto all = list_checkpoints(fx.dir);
  REQUIRE(all.size() == 1);  // set-aside files are not checkpoints: not loaded, not pruned
  CHECK(all[0].first == 4);
  CHECK(prune_checkpoints(fx.dir, 1).empty());
  CHECK(fs::exists(p10 + ".broken.2"));
}

// A write that fails (here: a file-size limit, which fails writes with EFBIG as a full disk fails
// them with ENOSPC) is an error with the reason; the partial file is removed and earlier
// checkpoints are untouched; HDF5 goes on working (and the process does not crash at exit, which
// HDF5 1.10 does on a file whose flush failed unless told not to close files at exit).
TEST_CASE("a checkpoint write that fails: the OS reason, no partial file, earlier checkpoints intact") {
  Fixture fx("full");
  const std::string p1 = checkpoint_path(fx.dir, 1), p2 = checkpoint_path(fx.dir, 2);
  save_checkpoint(p1, fx.params, nullptr, {});
  const auto before = fs::file_size(p1);
  std::ifstream in1(p1, std::ios::binary);
  const std::string bytes1((std::istreambuf_iterator<char>(in1)), std::istreambuf_iterator<char>());

  Generator g(3);
  Tensor big = randn({512, 512}, g);  // 1 MiB of float32, over the limit below
  NamedTensors params = {{"big", big}};
  struct rlimit old;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 256 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
  std::string error;
  try {
    save_checkpoint(p2, params, nullptr, {});
  } catch (const std::exception& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CAPTURE(error);
  CHECK(error.find("cannot write checkpoint '" + p2 + "'") != std::string::npos);
  CHECK(error.find("File too large (errno 27)") != std::string::npos);
  CHECK(!fs::exists(p2));
  CHECK(!fs::exists(p2 + ".tmp"));
  REQUIRE(fs::file_size(p1) == before);
  std::ifstream again(p1, std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()) == bytes1);
  CHECK(checkpoint_problem(p1).empty());
  // Without the limit the same save works.
  save_checkpoint(p2, params, nullptr, {});
  CHECK(checkpoint_problem(p2).empty());
}
