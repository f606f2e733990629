// tests/ddp_worker.cpp — the program test_ddp_mpi.cpp starts under `mpirun -np N` (or alone, as
// the single-process reference). Not a test by itself.
//
//   ttt_ddp_worker collectives
//       checks every collective of the communicator with values known by hand; exit 0 if right.
//   ttt_ddp_worker train <steps> <global_rows> <micro_rows> <out> [bucket_bytes] [overlap 0|1] [zero 0|1]
//       trains a tiny MLP classifier (6 -> 16 tanh -> 5, float32) with AdamW and grad clipping.
//       The global batch of a step is rows g = step*global_rows + j, j < global_rows; rank r of W
//       takes rows [r*global_rows/W, (r+1)*global_rows/W) in micro-batches of micro_rows, so
//       gradient accumulation = global_rows / (micro_rows * W). World size 1 runs without
//       DataParallel: the plain single-process reference. zero 1 (with W > 1): ZeRO-1, gradients
//       reduce-scattered and ShardedAdamW (trainer/zero.h). Rank 0 writes "<step> <loss> <grad
//       norm>" lines, then "param <name> <values...>", "m <name> <values...>" and "v <name>
//       <values...>" lines (ZeRO-1: the moments gathered from the shards), with 17 significant
//       digits, and with zero 1 a line "state_bytes <full> <rank 0's> <rank 1's> ...".
//   ttt_ddp_worker fail throw|exit [zero 0|1]
//       rank 1 fails at step 1 (an exception, or _Exit(3) as if killed); the job must stop.
//   ttt_ddp_worker timeline <out>
//       one step of a 5-layer MLP (float32, 64-wide), every weight its own gradient bucket, with
//       DataParallel's timeline on. Rank 0 writes "bucket <k> <bytes> <ready> <start> <end>
//       <launched_in_backward>" lines (ms relative to the end of backward) and
//       "first_layer_backward <ms>": when the backward of the first layer began.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <string>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "trainer/comm.h"
#include "trainer/ddp.h"
#include "trainer/optimizer.h"
#include "trainer/zero.h"

using namespace ttt;

namespace {

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

void run_collectives(Communicator& c) {
  const int r = c.rank(), w = c.world_size();
  const double tri = w * (w + 1) / 2.0;  // sum over ranks of (r + 1)
  for (DType d : {DType::f32, DType::f64, DType::bf16}) {
    Tensor t = from_vector({double(r + 1), 2.0 * (r + 1)}, {2}, opts(d));
    c.all_reduce_sum(t);
    expect(t.tolist<double>() == std::vector<double>{tri, 2 * tri}, std::string("sum ") + dtype_name(d));
    Tensor m = from_vector({double(r + 1)}, {1}, opts(d));
    c.all_reduce_mean(m);
    expect(m.item() == tri / w, std::string("mean ") + dtype_name(d));
  }
  Tensor i = from_vector_i64({int64_t{1} << 40, int64_t{r}}, {2});
  c.all_reduce_sum(i);
  expect(i.tolist<int64_t>() == std::vector<int64_t>{w * (int64_t{1} << 40), int64_t(tri) - w}, "sum int64");
  // Two collectives in flight at once, waited for in reverse order.
  Tensor a = full({1000}, r), b = full({3}, 1.0);
  auto wa = c.all_reduce_async(a, CommReduce::sum);
  auto wb = c.all_reduce_async(b, CommReduce::mean);
  wb->wait();
  wa->wait();
  expect(a.tolist<double>() == std::vector<double>(1000, tri - w) && b.tolist<double>() == std::vector<double>(3, 1.0),
         "async");
  // Reduce-scatter and all-gather in place (ZeRO-1's), 3 elements per rank, every dtype: rank r's
  // element j is (r + 1)(j + 1), so the sum over ranks of element j is tri (j + 1). Only the
  // rank's own slice of a reduce-scatter is defined afterwards.
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    const std::string dn = dtype_name(d);
    std::vector<double> vals, sums, means;
    for (int j = 0; j < 3 * w; ++j) vals.push_back(double(r + 1) * (j + 1));
    for (int j = 3 * r; j < 3 * r + 3; ++j) {
      sums.push_back(tri * (j + 1));
      means.push_back(tri * (j + 1) / w);
    }
    auto mine = [&](const Tensor& t) { return t.narrow(0, 3 * r, 3).to(DType::f64).tolist<double>(); };
    Tensor t = from_vector(vals, {3 * w}).to(d);
    c.reduce_scatter_async(t, CommReduce::sum)->wait();
    expect(mine(t) == sums, "reduce_scatter sum " + dn);
    if (is_floating(d)) {
      Tensor m = from_vector(vals, {3 * w}).to(d);
      c.reduce_scatter_async(m, CommReduce::mean)->wait();
      // Compared as stored in the dtype (bf16 would round a mean that is not representable).
      expect(mine(m) == from_vector(means, {3}).to(d).to(DType::f64).tolist<double>(), "reduce_scatter mean " + dn);
    }
    std::vector<double> gathered;
    for (int j = 0; j < 3 * w; ++j) gathered.push_back(j / 3 == r ? 100.0 * r + j : -1.0);
    Tensor g = from_vector(gathered, {3 * w}).to(d);
    c.all_gather_async(g)->wait();
    std::vector<double> all;
    for (int j = 0; j < 3 * w; ++j) all.push_back(100.0 * (j / 3) + j);
    expect(g.to(DType::f64).tolist<double>() == all || d == DType::bf16, "all_gather " + dn);
    expect(g.to(DType::f64).tolist<double>() == from_vector(all, {3 * w}).to(d).to(DType::f64).tolist<double>(),
           "all_gather (as stored) " + dn);
  }
  bool rs_threw = false;
  try {
    Tensor odd = zeros({3 * w + 1});
    c.reduce_scatter_async(odd, CommReduce::sum);
  } catch (const std::invalid_argument&) {
    rs_threw = true;
  }
  expect(rs_threw || w == 1, "reduce_scatter rejects a size that is no multiple of the world size");
  const int root = w - 1;
  Tensor bc = full({4}, r == root ? 7.0 : -1.0);
  c.broadcast(bc, root);
  expect(bc.tolist<double>() == std::vector<double>(4, 7.0), "broadcast");
  std::vector<int> ranks = c.all_gather(r * 10);
  for (int k = 0; k < w; ++k) expect(ranks[static_cast<size_t>(k)] == k * 10, "all_gather");
  expect(c.all_reduce_scalar(0.5 * r) == 0.25 * w * (w - 1), "all_reduce_scalar");
  expect(c.broadcast_string(r == 0 ? "from zero" : "", 0) == "from zero", "broadcast_string");
  c.barrier();
  bool threw = false;
  try {
    c.check_same_on_all_ranks(r == 1 ? "b" : "a", "the probe");
  } catch (const CommError& e) {
    threw = std::string(e.what()).find("rank(s) 1 do not match") != std::string::npos;
  }
  expect(threw || w == 1, "check_same_on_all_ranks");
  std::printf("collectives ok on rank %d of %d (%s)\n", r, w, c.backend_name().c_str());
}

// A row's input and class depend only on its global index g.
void make_rows(int64_t first, int64_t n, Tensor& x, Tensor& y) {
  std::vector<double> xs;
  std::vector<int64_t> ys;
  for (int64_t g = first; g < first + n; ++g) {
    Generator gen(1000003ULL * static_cast<uint64_t>(g) + 17);
    for (double v : randn({6}, gen).tolist<double>()) xs.push_back(v);
    ys.push_back((g * 7 + 3) % 5);
  }
  x = from_vector(xs, {n, 6});
  y = from_vector_i64(ys, {n});
}

void run_train(Communicator& c, int64_t steps, int64_t global_rows, int64_t micro_rows, const std::string& out,
               size_t bucket_bytes, bool overlap, bool zero, const std::string& fail_mode) {
  const int r = c.rank(), w = c.world_size();
  if (global_rows % (micro_rows * w) != 0) throw std::invalid_argument("global_rows must divide by micro_rows x world");
  const int64_t rows = global_rows / w, accum = rows / micro_rows;
  Generator g(42);
  Tensor w1 = randn({6, 16}, g, {}, 0, 0.5).set_requires_grad(true);
  Tensor b1 = zeros({16}).set_requires_grad(true);
  Tensor w2 = randn({16, 5}, g, {}, 0, 0.5).set_requires_grad(true);
  std::vector<std::pair<std::string, Tensor>> params = {{"w1", w1}, {"b1", b1}, {"w2", w2}};
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<DataParallel> ddp;
  std::unique_ptr<ShardedAdamW> sharded;
  if (w > 1) {
    DdpOptions o;
    o.bucket_bytes = bucket_bytes;
    o.overlap = overlap;
    o.reduce_scatter = zero;
    ddp = std::make_unique<DataParallel>(c, params, o);
    ddp->broadcast_parameters();
  }
  if (zero && ddp) sharded = std::make_unique<ShardedAdamW>(c, *ddp, params, AdamWOptions{});
  else opt = std::make_unique<AdamW>(params, AdamWOptions{});
  std::ofstream f;
  if (r == 0) f.open(out);
  f << std::setprecision(17);
  for (int64_t step = 0; step < steps; ++step) {
    if (step == 1 && r == 1 && fail_mode == "throw") throw std::runtime_error("injected failure in step 1");
    if (step == 1 && r == 1 && fail_mode == "exit") std::_Exit(3);
    if (ddp) ddp->zero_grad();
    else opt->zero_grad();
    double loss_sum = 0;
    for (int64_t m = 0; m < accum; ++m) {
      Tensor x, y;
      make_rows(step * global_rows + r * rows + m * micro_rows, micro_rows, x, y);
      Tensor logits = matmul(tanh(add(matmul(x, w1), b1)), w2);
      // Mean over this rank's rows of the step; the mean over ranks is DataParallel's.
      Tensor loss = mul_scalar(cross_entropy(logits, y), double(micro_rows) / double(rows));
      if (ddp) ddp->set_sync(m == accum - 1);
      backward({loss});
      loss_sum += loss.item();
    }
    if (ddp) ddp->finish();
    const double loss = c.all_reduce_scalar(loss_sum, CommReduce::mean);
    std::vector<Tensor> ps = {w1, b1, w2};
    const double norm = sharded ? sharded->grad_norm() : global_grad_norm(ps);
    if (sharded) sharded->step(1e-2, clip_scale(norm, 0.5));
    else opt->step(1e-2, clip_scale(norm, 0.5));
    f << step << ' ' << loss << ' ' << norm << '\n';
  }
  if (ddp) ddp->check_parameters_in_sync();
  auto write = [&](const char* what, const std::string& name, const Tensor& t) {
    f << what << ' ' << name;
    for (double v : t.tolist<double>()) f << ' ' << v;
    f << '\n';
  };
  for (auto& [name, p] : params) write("param", name, p);
  const OptimizerState state = sharded ? sharded->gather_moments(0) : optimizer_state_of(*opt);
  if (r == 0)
    for (const auto& m : state.moments) {
      write("m", m.name, m.m);
      write("v", m.name, m.v);
    }
  if (sharded) {
    std::vector<uint64_t> bytes = c.all_gather<uint64_t>(sharded->state_bytes());
    f << "state_bytes " << sharded->full_state_bytes();
    for (uint64_t b : bytes) f << ' ' << b;
    f << '\n';
  }
}

// A differentiable identity that stamps the host clock when its backward runs.
Tensor stamped_identity(const Tensor& x, std::shared_ptr<CommStamp>& when) {
  Tensor y = make_view(x, x.shape(), x.strides(), x.offset());
  record("stamped_identity", {x}, {y}, {}, [&when](BackwardCtx&, const tensor_list& g) {
    when = host_stamp();
    return tensor_list{g[0]};
  });
  return y;
}

void run_timeline(Communicator& c, const std::string& out) {
  Generator g(7);
  std::vector<std::pair<std::string, Tensor>> params;
  const int64_t width = 64;
  for (int l = 0; l < 5; ++l) {
    std::string name = "w";
    name += std::to_string(l + 1);  // (not "w" + to_string: GCC 12 warns falsely, -Wrestrict)
    params.emplace_back(name, randn({width, width}, g, {}, 0, 1.0 / std::sqrt(double(width))).set_requires_grad(true));
  }
  DdpOptions o;
  o.bucket_bytes = 64;  // every weight alone
  o.timeline = true;
  DataParallel ddp(c, params, o);
  ddp.broadcast_parameters();
  Generator data(100 + static_cast<uint64_t>(c.rank()));
  Tensor x = randn({32, width}, data);
  std::shared_ptr<CommStamp> first_layer;
  Tensor h = stamped_identity(matmul(x, params[0].second), first_layer);
  for (size_t l = 1; l < params.size(); ++l) h = matmul(tanh(h), params[l].second);
  Tensor loss = mean(square(h));
  ddp.zero_grad();
  ddp.set_sync(true);
  backward({loss});
  ddp.finish();
  expect(first_layer != nullptr, "the first layer's backward ran");
  std::ofstream f;
  if (c.rank() == 0) f.open(out);
  f << std::setprecision(17);
  for (const BucketTiming& b : ddp.timeline())
    f << "bucket " << b.bucket << ' ' << b.bytes << ' ' << 1e3 * b.ready_s << ' ' << 1e3 * b.start_s << ' '
      << 1e3 * b.end_s << ' ' << (b.launched_in_backward ? 1 : 0) << '\n';
  f << "first_layer_backward " << 1e3 * (first_layer->seconds() - ddp.timeline_zero_s()) << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  std::unique_ptr<Communicator> comm;
  try {
    comm = make_communicator(cpu());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  try {
    if (mode == "collectives") {
      run_collectives(*comm);
    } else if (mode == "train" && argc >= 6) {
      run_train(*comm, std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), argv[5],
                argc > 6 ? static_cast<size_t>(std::atoll(argv[6])) : (25u << 20), argc > 7 ? std::atoi(argv[7]) != 0 : true,
                argc > 8 && std::atoi(argv[8]) != 0, "");
    } else if (mode == "timeline" && argc >= 3) {
      run_timeline(*comm, argv[2]);
    } else if (mode == "fail" && argc >= 3) {
      run_train(*comm, 5, 8, 2, "/dev/null", 64, true, argc > 3 && std::atoi(argv[3]) != 0, argv[2]);
    } else {
      std::fprintf(stderr, "usage: ttt_ddp_worker collectives | train <steps> <global_rows> <micro_rows> <out> "
                           "[bucket_bytes] [overlap] [zero] | timeline <out> | fail throw|exit [zero]\n");
      return 2;
    }
  } catch (const std::exception& e) {
    if (comm->world_size() > 1) comm->abort(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
