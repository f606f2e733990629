// tests/test_ddp_mpi.cpp — data parallelism across processes with the MPI backend, on the CPU:
// `mpirun -np N --oversubscribe` runs tests/ddp_worker.cpp (and the `ttt` binary), and the
// results are compared with a single process that sees the same global batch.
//
// Tolerance: with N ranks each rank averages its rows' gradients and the all-reduce averages the
// ranks, so float32 sums are formed in a different order than in one process. The differences
// are last-bit rounding (~1e-7 relative) that AdamW carries along; the checks allow 1e-5
// relative on losses and grad norms and 1e-5 absolute on parameters, far below any real bug
// (a missed bucket, a rank seeing the wrong rows or a sum instead of a mean changes the loss or
// the norm in the first or second digit). AdamW's moments are compared as well.
//
// When mpirun (or the MPI backend) is missing, the tests say so and pass, unless TTT_REQUIRE_MPI=1
// (CI sets it: scripts/setup.sh installs openmpi-bin and libopenmpi-dev). As root, OpenMPI needs
// OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1, which the test sets. Run: ./build/tests/test_ddp_mpi
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "mpi_test_util.h"

namespace fs = std::filesystem;

using namespace ttt::testing;

namespace {

const std::string kWorker = std::string(TTT_BINARY_DIR) + "/tests/ttt_ddp_worker";

struct Trace {
  std::vector<double> loss, norm;
  std::map<std::string, std::vector<double>> params;  // "param w1", "m w1", "v w1", ...
  std::vector<double> state_bytes;                    // ZeRO-1: unsharded, then rank 0's, rank 1's, ...
};

Trace read_trace(const std::string& path) {
  Trace t;
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "no output file " << path);
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string first;
    in >> first;
    if (first == "param" || first == "m" || first == "v") {
      std::string name;
      in >> name;
      double v;
      while (in >> v) t.params[first + " " + name].push_back(v);
    } else if (first == "state_bytes") {
      double v;
      while (in >> v) t.state_bytes.push_back(v);
    } else {
      double loss, norm;
      in >> loss >> norm;
      t.loss.push_back(loss);
      t.norm.push_back(norm);
    }
  }
  return t;
}

void check_close(const Trace& a, const Trace& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.loss.size() == b.loss.size());
  REQUIRE(!a.loss.empty());
  for (size_t i = 0; i < a.loss.size(); ++i) {
    CHECK(std::abs(a.loss[i] - b.loss[i]) <= 1e-5 * std::abs(b.loss[i]));
    CHECK(std::abs(a.norm[i] - b.norm[i]) <= 1e-5 * std::abs(b.norm[i]));
  }
  REQUIRE(a.params.size() == b.params.size());
  for (auto& [name, vals] : b.params) {
    const auto& other = a.params.at(name);
    REQUIRE(other.size() == vals.size());
    double worst = 0;
    for (size_t i = 0; i < vals.size(); ++i) worst = std::max(worst, std::abs(other[i] - vals[i]));
    CHECK_MESSAGE(worst <= 1e-5, name << " differs by " << worst);
  }
}

std::string tmp(const std::string& name);

// Runs `ttt_ddp_worker train <args> <out> <more>` on np ranks (np = 1: alone) and reads its trace.
Trace train_trace(int np, const std::string& args, const std::string& out, const std::string& more = "") {
  CommandResult r = run_command((np > 1 ? mpirun(np) : std::string()) + kWorker + " train " + args + " " + tmp(out) + " " +
                                more);
  INFO(r.output);
  REQUIRE(r.code == 0);
  return read_trace(tmp(out));
}

std::string tmp(const std::string& name) {
  // One directory per build tree: other checkouts may run this test at the same time.
  fs::path d = fs::temp_directory_path() / ("ttt_test_ddp_mpi_" + std::to_string(std::hash<std::string>{}(TTT_BINARY_DIR)));
  fs::create_directories(d);
  return (d / name).string();
}

}  // namespace

TEST_CASE("mpirun: every collective of the MPI backend on 2 and 3 ranks") {
  if (!mpi_ready()) return;
  for (int np : {2, 3}) {
    CommandResult r = run_command(mpirun(np) + kWorker + " collectives");
    INFO(r.output);
    CHECK(r.code == 0);
    for (int k = 0; k < np; ++k)
      CHECK(r.output.find("collectives ok on rank " + std::to_string(k) + " of " + std::to_string(np) + " (mpi)") !=
            std::string::npos);
  }
}

TEST_CASE("mpirun: 2 and 4 ranks train like one process with the same global batch") {
  if (!mpi_ready()) return;
  // 8 rows per step in micro-batches of 2: accumulation 4 (1 rank), 2 (2 ranks), 1 (4 ranks).
  CommandResult ref = run_command(kWorker + " train 6 8 2 " + tmp("w1.txt"));
  INFO(ref.output);
  REQUIRE(ref.code == 0);
  Trace one = read_trace(tmp("w1.txt"));
  CHECK(one.loss.front() > one.loss.back());  // it learns: a comparison of flat curves proves little

  // 64-byte buckets: w2 (320 B) and w1 (384 B) alone, b1 (64 B) alone: 3 buckets, launched in backward.
  CommandResult two = run_command(mpirun(2) + kWorker + " train 6 8 2 " + tmp("w2.txt") + " 64 1");
  INFO(two.output);
  REQUIRE(two.code == 0);
  check_close(read_trace(tmp("w2.txt")), one, "2 ranks, small buckets, overlap");

  CommandResult two_sync = run_command(mpirun(2) + kWorker + " train 6 8 2 " + tmp("w2s.txt") + " 100000000 0");
  INFO(two_sync.output);
  REQUIRE(two_sync.code == 0);
  check_close(read_trace(tmp("w2s.txt")), one, "2 ranks, one bucket, no overlap");

  CommandResult four = run_command(mpirun(4) + kWorker + " train 6 8 2 " + tmp("w4.txt") + " 64 1");
  INFO(four.output);
  REQUIRE(four.code == 0);
  check_close(read_trace(tmp("w4.txt")), one, "4 ranks, no accumulation");
}

// ZeRO-1 changes who updates which element, not the arithmetic: with 2 ranks the reduce-scatter adds
// the same two values as the all-reduce; only the gradient norm is summed over other pieces (the
// shards), so the comparison allows the same float rounding as above (seen here: ~5e-8 relative
// on losses and norms, one float32 ulp, 6e-8, on parameters and moments).
TEST_CASE("mpirun: ZeRO-1 on 2 and 3 ranks trains like one process and like dist.zero 0, with 1/W of AdamW's state") {
  if (!mpi_ready()) return;
  // 12 rows per step in micro-batches of 2: accumulation 6 (1 rank), 3 (2 ranks), 2 (3 ranks).
  Trace one = train_trace(1, "6 12 2", "z1.txt");
  CHECK(one.loss.front() > one.loss.back());
  CHECK(one.params.count("m w1") == 1);  // the moments are compared too (gathered from the shards)
  // 64-byte buckets: w2 | b1 | w1, each cut in two halves.
  Trace z2 = train_trace(2, "6 12 2", "z2.txt", "64 1 1");
  check_close(z2, one, "ZeRO-1, 2 ranks, small buckets, overlap");
  check_close(z2, train_trace(2, "6 12 2", "d2.txt", "64 1 0"), "ZeRO-1 vs dist.zero 0, 2 ranks");
  // One bucket [w2 (80) | b1 (16) | w1 (96)] in slices of 64: slice boundaries inside w2 and w1.
  Trace z3 = train_trace(3, "6 12 2", "z3.txt", "100000000 0 1");
  check_close(z3, one, "ZeRO-1, 3 ranks, one bucket, no overlap");

  // Memory: each rank holds m and v (8 bytes) for 1/W of the 192 parameters' elements.
  const double full = 192 * 8;
  CHECK(z2.state_bytes == std::vector<double>{full, full / 2, full / 2});
  CHECK(z3.state_bytes == std::vector<double>{full, full / 3, full / 3, full / 3});
}

TEST_CASE("mpirun: gradient buckets are all-reduced during backward (per-bucket timeline on 2 ranks)") {
  if (!mpi_ready()) return;
  CommandResult r = run_command(mpirun(2) + kWorker + " timeline " + tmp("timeline.txt"));
  INFO(r.output);
  REQUIRE(r.code == 0);
  struct Row {
    double ready, start, end;
    int launched;
  };
  std::vector<Row> rows;
  double first_layer = 0;
  std::ifstream f(tmp("timeline.txt"));
  std::string word, table;
  while (f >> word) {
    if (word == "bucket") {
      int k;
      size_t bytes;
      Row row{};
      f >> k >> bytes >> row.ready >> row.start >> row.end >> row.launched;
      CHECK(k == static_cast<int>(rows.size()));
      CHECK(bytes == 64 * 64 * 4);
      rows.push_back(row);
    } else if (word == "first_layer_backward") {
      f >> first_layer;
    }
  }
  std::ostringstream shown;
  shown << "ms vs end of backward (first layer's backward began at " << first_layer << "):";
  for (size_t k = 0; k < rows.size(); ++k)
    shown << "\n  bucket " << k << ": ready " << rows[k].ready << ", all-reduce " << rows[k].start << " .. " << rows[k].end;
  MESSAGE(shown.str());
  REQUIRE(rows.size() == 5);  // one bucket per layer, the last layer's first
  for (size_t k = 0; k < rows.size(); ++k) {
    CHECK(rows[k].launched == 1);
    CHECK(rows[k].ready <= rows[k].start);
    CHECK(rows[k].start <= rows[k].end);
    CHECK(rows[k].ready <= 0);  // every gradient was complete when backward returned
    if (k > 0) CHECK(rows[k - 1].ready <= rows[k].ready);
  }
  // The overlap itself: the last layer's all-reduce started (and the next layers' too) before the
  // first layer's backward began. With the leaf sinks run after every other node, no bucket was
  // ready before the first layer's backward.
  CHECK(rows[0].start < first_layer);
  CHECK(rows[3].start < first_layer);
  CHECK(first_layer < rows[4].ready);  // the first layer's bucket, by contrast, is ready after it
}

TEST_CASE("mpirun: a failing rank stops the job with a message instead of hanging (all-reduce and ZeRO-1)") {
  if (!mpi_ready()) return;
  // Under ZeRO-1 rank 0 is then waiting in a reduce-scatter (from a gradient hook) or in the
  // all-gather of the updated weights.
  for (const std::string zero : {"0", "1"}) {
    INFO("dist.zero " << zero);
    CommandResult thrown = run_command(mpirun(2) + kWorker + " fail throw " + zero);
    INFO(thrown.output);
    CHECK(thrown.code != 0);
    CHECK(thrown.code != 124);  // not the `timeout` of the test
    CHECK(thrown.output.find("rank 1 of 2: injected failure in step 1") != std::string::npos);
    CHECK(thrown.seconds < 60);

    CommandResult killed = run_command(mpirun(2) + kWorker + " fail exit " + zero);
    INFO(killed.output);
    CHECK(killed.code != 0);
    CHECK(killed.code != 124);  // mpirun noticed the dead rank
    CHECK(killed.seconds < 60);
  }
}
