// tests/test_comm.cpp — the communicator in one process: launcher detection from environment
// variables, the rank's device, the backend choice, the world-size-1 (local) communicator, bucket
// assignment, DataParallel over the local communicator (gradients land in the buckets,
// accumulate over micro-batches, unused parameters get zeros, buckets launch during backward), and
// ZeRO-1's ShardedAdamW at world size 1 against AdamW.
// Multi-process runs are in test_ddp_mpi.cpp; the TCP rendezvous in test_rendezvous.cpp.
// Run: ./build/tests/test_comm
#include <doctest/doctest.h>

#include <map>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "trainer/comm.h"
#include "trainer/ddp.h"
#include "trainer/optimizer.h"
#include "trainer/zero.h"

using namespace ttt;

namespace {

LaunchInfo detect(const std::map<std::string, std::string>& vars) {
  return detect_launch([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

// --- launcher detection -------------------------------------------------------------------------------

TEST_CASE("detect_launch: no launcher is rank 0 of 1") {
  LaunchInfo i = detect({});
  CHECK(i.launcher == "none");
  CHECK_FALSE(i.launched());
  CHECK(i.rank == 0);
  CHECK(i.world_size == 1);
  CHECK(i.master_port == 29500);
}

TEST_CASE("detect_launch: torchrun-style, OpenMPI, PMI and Slurm variables") {
  LaunchInfo t = detect({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}});
  CHECK(t.launcher == "env");
  CHECK(t.rank == 3);
  CHECK(t.world_size == 8);
  CHECK(t.local_rank == 1);
  CHECK(t.local_world_size == 2);
  CHECK(t.master_addr == "node7");
  CHECK(t.master_port == 1234);

  LaunchInfo o = detect({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                         {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  CHECK(o.launcher == "openmpi");
  CHECK(o.rank == 1);
  CHECK(o.world_size == 2);
  CHECK(o.local_rank == 1);

  LaunchInfo p = detect({{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}});
  CHECK(p.launcher == "pmi");
  CHECK(p.rank == 2);
  CHECK(p.local_rank == 2);  // no local rank given: one node assumed

  LaunchInfo s = detect({{"SLURM_PROCID", "5"}, {"SLURM_STEP_NUM_TASKS", "6"}, {"SLURM_LOCALID", "1"}});
  CHECK(s.launcher == "slurm");
  CHECK(s.rank == 5);
  CHECK(s.world_size == 6);
  CHECK(s.local_rank == 1);
}

TEST_CASE("detect_launch: under torchrun's agent store the rendezvous takes the port after MASTER_PORT") {
  // Recent torchrun exports TORCHELASTIC_USE_AGENT_STORE=True: its TCPStore listens on MASTER_PORT.
  std::map<std::string, std::string> vars = {{"RANK", "1"},        {"WORLD_SIZE", "2"},         {"LOCAL_RANK", "1"},
                                             {"MASTER_ADDR", "h0"}, {"MASTER_PORT", "29500"},
                                             {"TORCHELASTIC_USE_AGENT_STORE", "True"}};
  CHECK(detect(vars).master_port == 29501);
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "False";  // older torchrun: the workers' MASTER_PORT is free
  CHECK(detect(vars).master_port == 29500);
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  vars["MASTER_PORT"] = "65535";
  CHECK_THROWS_WITH_AS(detect(vars), doctest::Contains("choose a lower --master-port"), std::invalid_argument);
}

TEST_CASE("detect_launch: explicit RANK/WORLD_SIZE win over MPI; an sbatch script alone is no launch") {
  LaunchInfo i = detect({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
  CHECK(i.launcher == "env");
  CHECK(i.world_size == 1);
  // The batch step of `sbatch --ntasks=4` sets SLURM_PROCID and SLURM_NTASKS but is one process.
  LaunchInfo b = detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}});
  CHECK(b.launcher == "none");
  CHECK(b.world_size == 1);
}

TEST_CASE("detect_launch: malformed values name the variable") {
  CHECK_THROWS_WITH_AS(detect({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), doctest::Contains("RANK='x'"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(detect({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), doctest::Contains("WORLD_SIZE=2"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(detect({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), doctest::Contains("at least 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(detect({{"MASTER_PORT", "70000"}}), doctest::Contains("MASTER_PORT"), std::invalid_argument);
}

TEST_CASE("rank_device: one GPU per local rank") {
  LaunchInfo i = detect({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}});
  CHECK(rank_device(cpu(), i, 8) == cpu());
  CHECK(rank_device(cuda(0), i, 8) == cuda(1));
  CHECK(rank_device(cuda(0), i, 1) == cuda(0));  // each process was given its own GPU
  CHECK_THROWS_WITH_AS(rank_device(cuda(0), detect({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "3"}}), 2),
                       doctest::Contains("only 2 GPU(s)"), std::invalid_argument);
  CHECK(rank_device(cuda(2), LaunchInfo{}, 8) == cuda(2));  // world 1: as configured
}

// --- backend choice and the local communicator ----------------------------------------------------

TEST_CASE("make_communicator: local without a launcher; impossible choices are clear errors") {
  LaunchInfo none;
  auto c = make_communicator(cpu(), {}, none);
  CHECK(c->backend_name() == "local");
  CHECK(c->world_size() == 1);
  CommOptions bad;
  bad.backend = "gloo";
  CHECK_THROWS_WITH_AS(make_communicator(cpu(), bad, none), doctest::Contains("dist.backend"), std::invalid_argument);
  CommOptions local;
  local.backend = "local";
  LaunchInfo two = detect({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
  CHECK_THROWS_WITH_AS(make_communicator(cpu(), local, two), doctest::Contains("started 2"), std::invalid_argument);
  CommOptions nccl;
  nccl.backend = "nccl";
  CHECK_THROWS_WITH_AS(make_communicator(cpu(), nccl, none), doctest::Contains("needs a CUDA device"),
                       std::invalid_argument);
  if (!mpi_built()) {
    CommOptions mpi;
    mpi.backend = "mpi";
    CHECK_THROWS_WITH_AS(make_communicator(cpu(), mpi, two), doctest::Contains("built without MPI"),
                         std::invalid_argument);
  }
}

TEST_CASE("local communicator: collectives over one rank are the identity") {
  auto c = make_local_communicator(cpu());
  Tensor t = from_vector({1.5, -2, 3}, {3});
  c->all_reduce_sum(t);
  c->all_reduce_mean(t);
  CHECK(t.tolist<double>() == std::vector<double>{1.5, -2, 3});
  c->reduce_scatter_async(t, CommReduce::mean)->wait();
  c->all_gather_async(t)->wait();
  CHECK(t.tolist<double>() == std::vector<double>{1.5, -2, 3});
  c->broadcast(t, 0);
  c->barrier();
  CHECK(c->all_gather(int64_t{42}) == std::vector<int64_t>{42});
  CHECK(c->all_reduce_scalar(2.5) == 2.5);
  CHECK(c->all_reduce_scalar(2.5, CommReduce::mean) == 2.5);
  CHECK(c->broadcast_string("hello") == "hello");
  c->check_same_on_all_ranks("anything", "a value");
  CHECK_THROWS_AS(c->broadcast(t, 1), std::invalid_argument);
}

// --- bucket assignment ------------------------------------------------------------------------------

TEST_CASE("assign_buckets: reverse order, capacity, oversized parameters, dtype boundaries") {
  auto f32 = [](size_t bytes) { return BucketParam{bytes, DType::f32, cpu()}; };
  // Registration order 0..4; gradients arrive 4, 3, 2, ... Capacity 100 bytes.
  std::vector<BucketParam> ps = {f32(40), f32(40), f32(30), f32(250), f32(60)};
  auto b = assign_buckets(ps, 100);
  // 4 (60) | 3 (250, alone: larger than the cap) | 2 + 1 (70) | 0 (40 would make 110)
  REQUIRE(b.size() == 4);
  CHECK(b[0] == std::vector<size_t>{4});
  CHECK(b[1] == std::vector<size_t>{3});
  CHECK(b[2] == std::vector<size_t>{2, 1});
  CHECK(b[3] == std::vector<size_t>{0});
  // Exactly the capacity still fits.
  CHECK(assign_buckets({f32(50), f32(50)}, 100).size() == 1);
  // A dtype change starts a new bucket even with room left.
  std::vector<BucketParam> mixed = {f32(8), BucketParam{8, DType::bf16, cpu()}, f32(8)};
  auto m = assign_buckets(mixed, 1000);
  REQUIRE(m.size() == 3);
  CHECK(m[1] == std::vector<size_t>{1});
  CHECK(assign_buckets({}, 100).empty());
}

// --- DataParallel over the local communicator ------------------------------------------------------

namespace {

// loss = sum((x @ w1) * w2) + 0 * nothing: w_unused gets no gradient at all.
struct TinyNet {
  Tensor w1, w2, unused;
  explicit TinyNet(uint64_t seed) {
    Generator g(seed);
    w1 = randn({3, 4}, g, opts(DType::f64)).set_requires_grad(true);
    w2 = randn({4}, g, opts(DType::f64)).set_requires_grad(true);
    unused = randn({2}, g, opts(DType::f64)).set_requires_grad(true);
  }
  // Registered first, so its bucket is launched last.
  std::vector<std::pair<std::string, Tensor>> named() { return {{"unused", unused}, {"w1", w1}, {"w2", w2}}; }
  Tensor loss(const Tensor& x) { return sum(mul(matmul(x, w1), w2)); }
};

}  // namespace

TEST_CASE("DataParallel (world 1): gradients accumulate in the buckets and match plain backward") {
  Generator g(11);
  Tensor x1 = randn({5, 3}, g, opts(DType::f64)), x2 = randn({5, 3}, g, opts(DType::f64));
  TinyNet ref(3), net(3);
  backward({ref.loss(x1)});
  backward({ref.loss(x2)});

  auto comm = make_local_communicator(cpu());
  DdpOptions o;
  o.bucket_bytes = 40;  // w2 (32 bytes), w1 (96 bytes) and unused (16 bytes) in buckets 0, 1, 2
  DataParallel ddp(*comm, net.named(), o);
  CHECK(ddp.num_buckets() == 3);
  CHECK(ddp.bucket_layout() == std::vector<std::vector<size_t>>{{2}, {1}, {0}});
  for (int step = 0; step < 2; ++step) {  // the second step checks that zero_grad resets
    ddp.zero_grad();
    ddp.set_sync(false);
    backward({net.loss(x1)});
    ddp.set_sync(true);
    backward({net.loss(x2)});
    ddp.finish();
    CHECK(ddp.buckets_launched_in_backward() == 2);  // w2's and w1's; `unused` waits for finish()
    CHECK(net.w1.grad().tolist<double>() == ref.w1.grad().tolist<double>());
    CHECK(net.w2.grad().tolist<double>() == ref.w2.grad().tolist<double>());
    CHECK(net.unused.grad().tolist<double>() == std::vector<double>{0, 0});
  }
}

TEST_CASE("DataParallel (world 1): dropped gradients are re-attached to the buckets") {
  Generator g(5);
  Tensor x = randn({2, 3}, g, opts(DType::f64));
  TinyNet ref(4), net(4);
  backward({ref.loss(x)});
  auto comm = make_local_communicator(cpu());
  DataParallel ddp(*comm, net.named());
  CHECK(ddp.num_buckets() == 1);
  for (auto& [n, p] : net.named()) p.zero_grad();  // what Module::zero_grad does
  backward({net.loss(x)});
  ddp.finish();
  CHECK(ddp.buckets_launched_in_backward() == 0);  // `unused` never became ready
  CHECK(net.w1.grad().tolist<double>() == ref.w1.grad().tolist<double>());
  CHECK(net.unused.grad().tolist<double>() == std::vector<double>{0, 0});
}

TEST_CASE("DataParallel: a gradient arriving after its bucket was launched is an error") {
  Generator g(6);
  Tensor x = randn({2, 3}, g, opts(DType::f64));
  TinyNet net(5);
  auto comm = make_local_communicator(cpu());
  DataParallel ddp(*comm, {{"w1", net.w1}, {"w2", net.w2}});  // one bucket, launched in backward
  backward({net.loss(x)});
  CHECK_THROWS_WITH_AS(backward({net.loss(x)}), doctest::Contains("after its bucket was all-reduced"),
                       std::logic_error);
}

// --- ZeRO-1's optimizer in one process ----------------------------------------------------------------

TEST_CASE("ShardedAdamW (world 1): the same updates and moments as AdamW, bit for bit; moments round-trip") {
  // Two copies of a float32 net: w (2-D, decayed), b (1-D, not decayed by decay_only_matrices),
  // unused (no gradient: AdamW's zero-gradient update, ShardedAdamW's zeroed bucket slice).
  auto make = [](std::vector<std::pair<std::string, Tensor>>& named) {
    Generator g(21);
    named = {{"w", randn({4, 3}, g).set_requires_grad(true)},
             {"b", randn({3}, g).set_requires_grad(true)},
             {"unused", randn({5}, g).set_requires_grad(true)}};
  };
  std::vector<std::pair<std::string, Tensor>> ref, net;
  make(ref);
  make(net);
  AdamW adam(ref, {}, decay_only_matrices);
  auto comm = make_local_communicator(cpu());
  DdpOptions o;
  o.bucket_bytes = 40;  // unused (20 B) | b (12 B) ... in small buckets
  o.reduce_scatter = true;
  DataParallel ddp(*comm, net, o);
  ShardedAdamW zero(*comm, ddp, net, {}, decay_only_matrices);
  CHECK(zero.state_bytes() == zero.full_state_bytes());  // one rank holds everything
  CHECK(zero.full_state_bytes() == 8 * (12 + 3 + 5));
  Generator data(3);
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({6, 4}, data);
    auto loss = [&](const std::vector<std::pair<std::string, Tensor>>& p) {
      return sum(square(tanh(add(matmul(x, p[0].second), p[1].second))));
    };
    adam.zero_grad();
    backward({loss(ref)});
    std::vector<Tensor> ref_params = {ref[0].second, ref[1].second, ref[2].second};
    const double norm = global_grad_norm(ref_params);
    adam.step(1e-2, clip_scale(norm, 0.5));
    ddp.zero_grad();
    backward({loss(net)});
    ddp.finish();
    CHECK(zero.grad_norm() == doctest::Approx(norm).epsilon(1e-12));
    zero.step(1e-2, clip_scale(norm, 0.5));  // the same clip factor: the updates must be identical
    for (size_t i = 0; i < ref.size(); ++i) CHECK(net[i].second.tolist<float>() == ref[i].second.tolist<float>());
  }
  OptimizerState gathered = zero.gather_moments(0);
  CHECK(gathered.step_count == 3);
  REQUIRE(gathered.moments.size() == 3);
  for (size_t i = 0; i < ref.size(); ++i) {
    CHECK(gathered.moments[i].name == adam.slots()[i].name);
    CHECK(gathered.moments[i].m.tolist<float>() == adam.slots()[i].m.tolist<float>());
    CHECK(gathered.moments[i].v.tolist<float>() == adam.slots()[i].v.tolist<float>());
  }
  // A fresh sharded optimizer takes the moments back (what a resume does).
  DataParallel ddp2(*comm, net, o);
  ShardedAdamW again(*comm, ddp2, net, {}, decay_only_matrices);
  again.load_moments(gathered);
  CHECK(again.step_count() == 3);
  OptimizerState back = again.gather_moments(0);
  for (size_t i = 0; i < ref.size(); ++i) CHECK(back.moments[i].v.tolist<float>() == gathered.moments[i].v.tolist<float>());
  // Not every parameter in the buckets: refused.
  CHECK_THROWS_WITH_AS(ShardedAdamW(*comm, ddp2, {net[0], net[1]}, {}), doctest::Contains("every parameter"),
                       std::invalid_argument);
}
