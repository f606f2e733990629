// trainer/ddp.cpp — see ddp.h.
#include "trainer/ddp.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <sstream>

namespace ttt {

// --- bucket assignment ------------------------------------------------------------------------------

std::vector<std::vector<size_t>> assign_buckets(const std::vector<BucketParam>& params, size_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  size_t filled = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const BucketParam& p = params[k];
    bool fits = !buckets.empty() && filled + p.bytes <= bucket_bytes;
    if (fits) {
      const BucketParam& head = params[buckets.back().front()];
      fits = head.dtype == p.dtype && head.device == p.device;
    }
    if (!fits) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(k);
    filled += p.bytes;
  }
  return buckets;
}

// --- state shared with the hooks ------------------------------------------------------------------

struct DataParallel::State {
  struct Param {
    std::string name;
    Tensor param;
    Tensor view;        // the parameter's slice of its bucket, shaped like the parameter
    size_t bucket = 0;
    int64_t offset = 0; // of the view in the bucket's buffer, in elements
    bool ready = false; // its gradient of this step is complete
  };
  struct Bucket {
    Tensor buffer;      // flat, contiguous
    std::vector<size_t> members;
    size_t ready = 0;
    bool launched = false;
    bool from_hook = false;
    std::unique_ptr<CommWork> work;
    std::shared_ptr<CommStamp> ready_at;  // with opt.timeline: when its last gradient was complete
  };

  Communicator* comm = nullptr;
  DdpOptions opt;
  bool alive = true;
  bool sync = true;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  int launched_in_backward = 0;
  std::vector<BucketTiming> timeline;  // of the last finish()ed step
  double timeline_zero = 0;            // its end of backward, on the stamps' clock

  // Marks p's gradient ready in its bucket (once per step); stamps the bucket when it completes.
  void mark_ready(Param& p) {
    if (p.ready) return;
    p.ready = true;
    Bucket& b = buckets[p.bucket];
    if (++b.ready == b.members.size() && opt.timeline) b.ready_at = comm->stamp_compute();
  }

  // Makes p.param's .grad the bucket view again, keeping its value (or zero when it has none).
  void attach(Param& p) {
    Tensor g = p.param.grad();
    if (g.defined() && g.is_same(p.view)) return;
    NoGradGuard ng;
    if (g.defined()) p.view.copy_(g);
    else p.view.zero_();
    p.param.set_grad(p.view);
  }

  void launch(size_t k, bool from_hook) {
    Bucket& b = buckets[k];
    b.work = opt.reduce_scatter ? comm->reduce_scatter_async(b.buffer, CommReduce::mean)
                                : comm->all_reduce_async(b.buffer, CommReduce::mean);
    b.launched = true;
    b.from_hook = from_hook;
  }

  // Launches ready buckets in bucket order (the same collective sequence on every rank).
  void launch_ready(bool from_hook) {
    while (next_launch < buckets.size() && buckets[next_launch].ready == buckets[next_launch].members.size())
      launch(next_launch++, from_hook);
  }

  void on_gradient(size_t i) {
    Param& p = params[i];
    attach(p);
    if (!sync) return;
    Bucket& b = buckets[p.bucket];
    if (b.launched)
      throw std::logic_error("DataParallel: the gradient of '" + p.name +
                             "' changed after its bucket was all-reduced (it was reached by a second backward() in "
                             "the same micro-batch); set dist.overlap: false or use one backward per micro-batch");
    mark_ready(p);
    if (opt.overlap) launch_ready(/*from_hook=*/true);
    // Backends without a progress thread (MPI) advance their collectives when polled.
    for (size_t k = 0; k < next_launch; ++k)
      if (buckets[k].work) buckets[k].work->poll();
  }
};

// --- DataParallel ---------------------------------------------------------------------------------------

DataParallel::DataParallel(Communicator& comm, std::vector<std::pair<std::string, Tensor>> named_params, DdpOptions opt)
    : comm_(comm), state_(std::make_shared<State>()) {
  State& st = *state_;
  st.comm = &comm;
  st.opt = opt;
  if (opt.timeline) comm.set_timing(true);

  // Every rank must hold the same parameters, or the buckets would not line up.
  std::ostringstream sig;
  std::vector<BucketParam> infos;
  std::vector<const TensorImpl*> seen;  // a tensor shared under two names (tied weights) counts once
  for (auto& [name, p] : named_params) {
    check_defined("DataParallel", p, name.c_str());
    if (!p.requires_grad() || std::find(seen.begin(), seen.end(), p.impl()) != seen.end()) continue;
    seen.push_back(p.impl());
    sig << name << ' ' << p.shape().str() << ' ' << dtype_name(p.dtype()) << ';';
    infos.push_back({static_cast<size_t>(p.numel()) * dtype_size(p.dtype()), p.dtype(), p.device()});
    st.params.push_back({name, p, Tensor(), 0, false});
  }
  comm.check_same_on_all_ranks(sig.str(), "the model's parameters (names, shapes, dtypes)");

  for (auto& members : assign_buckets(infos, opt.bucket_bytes)) {
    State::Bucket b;
    const Tensor& head = st.params[members.front()].param;
    int64_t total = 0;
    for (size_t i : members) total += st.params[i].param.numel();
    // A reduce-scatter needs equal slices: pad to a multiple of the world size (< W elements).
    const int64_t w = comm.world_size();
    const int64_t padded = opt.reduce_scatter ? (total + w - 1) / w * w : total;
    b.buffer = zeros({padded}, opts(head.dtype(), head.device()));
    int64_t offset = 0;
    for (size_t i : members) {
      State::Param& p = st.params[i];
      p.view = b.buffer.narrow(0, offset, p.param.numel()).reshape(p.param.shape());
      p.bucket = st.buckets.size();
      p.offset = offset;
      offset += p.param.numel();
    }
    b.members = std::move(members);
    st.buckets.push_back(std::move(b));
  }

  // The hooks hold the state weakly: parameters outlive this object, and a strong reference
  // from a parameter's hook back to the state holding the parameter would be a cycle.
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < st.params.size(); ++i) {
    st.params[i].param.register_post_accumulate_grad_hook([weak, i](Tensor&) {
      if (auto s = weak.lock(); s && s->alive) s->on_gradient(i);
    });
  }
  zero_grad();
}

DataParallel::~DataParallel() {
  state_->alive = false;
  // Collectives still in flight must complete before their buffers go away; while an exception
  // unwinds, the job is going down and the works' destructors skip the wait (see ~MpiWork).
  if (std::uncaught_exceptions() > 0) return;
  for (auto& b : state_->buckets)
    if (b.work) try { b.work->wait(); } catch (...) {}
}

void DataParallel::broadcast_parameters(int root) {
  // Bucket by bucket: pack the parameters into the buffer, broadcast it, unpack.
  NoGradGuard ng;
  for (auto& b : state_->buckets) {
    for (size_t i : b.members) state_->params[i].view.copy_(state_->params[i].param);
    comm_.broadcast(b.buffer, root);
    for (size_t i : b.members) {
      state_->params[i].param.copy_(state_->params[i].view);
      state_->params[i].param.bump_version();
    }
  }
  zero_grad();
}

namespace {
// 64-bit FNV-1a over 8-byte words (the tail byte by byte): a fingerprint of the exact bits.
uint64_t fingerprint(const Tensor& t) {
  Tensor h = t.device().is_cpu() ? t.contiguous() : t.to(cpu()).contiguous();
  const unsigned char* p = static_cast<const unsigned char*>(h.data_ptr());
  size_t n = static_cast<size_t>(h.numel()) * dtype_size(h.dtype());
  uint64_t x = 1469598103934665603ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    x = (x ^ w) * 1099511628211ULL;
  }
  for (; i < n; ++i) x = (x ^ p[i]) * 1099511628211ULL;
  return x;
}
}  // namespace

void DataParallel::check_parameters_in_sync() {
  std::ostringstream fp;
  for (auto& p : state_->params) fp << p.name << '=' << std::hex << fingerprint(p.param) << ';';
  comm_.check_same_on_all_ranks(fp.str(), "the parameter values (replicas drifted apart)");
}

void DataParallel::zero_grad() {
  NoGradGuard ng;
  for (auto& b : state_->buckets) {
    if (b.work) throw std::logic_error("DataParallel::zero_grad while an all-reduce is in flight (call finish())");
    b.buffer.zero_();
  }
  for (auto& p : state_->params) p.param.set_grad(p.view);
}

void DataParallel::set_sync(bool last_micro_batch) { state_->sync = last_micro_batch; }

void DataParallel::finish() {
  State& st = *state_;
  std::shared_ptr<CommStamp> backward_end = st.opt.timeline ? st.comm->stamp_compute() : nullptr;
  // Parameters whose gradient was not (re)marked on the sync micro-batch: unused in this step,
  // used only in earlier micro-batches, or every one of them when overlap is off.
  for (auto& p : st.params) {
    if (p.ready) continue;
    st.attach(p);
    st.mark_ready(p);
  }
  st.launch_ready(/*from_hook=*/false);
  int from_hook = 0;
  st.timeline.clear();
  if (backward_end) {
    for (auto& b : st.buckets) b.work->wait();  // the stamps are read once the collectives are done
    st.timeline_zero = backward_end->seconds();
  }
  for (size_t k = 0; k < st.buckets.size(); ++k) {
    State::Bucket& b = st.buckets[k];
    b.work->wait();
    if (backward_end && b.ready_at && b.work->started && b.work->ended) {
      const double zero = st.timeline_zero;
      BucketTiming t;
      t.bucket = static_cast<int>(k);
      t.bytes = static_cast<size_t>(b.buffer.numel()) * dtype_size(b.buffer.dtype());
      t.params = static_cast<int>(b.members.size());
      t.ready_s = b.ready_at->seconds() - zero;
      t.start_s = b.work->started->seconds() - zero;
      t.end_s = b.work->ended->seconds() - zero;
      t.launched_in_backward = b.from_hook;
      st.timeline.push_back(t);
    }
    b.work.reset();
    b.ready_at.reset();
    from_hook += b.from_hook ? 1 : 0;
    b.ready = 0;
    b.launched = false;
    b.from_hook = false;
  }
  for (auto& p : st.params) p.ready = false;
  st.next_launch = 0;
  st.sync = true;
  st.launched_in_backward = from_hook;
}

std::vector<std::pair<std::string, Tensor>> DataParallel::parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : state_->params) out.emplace_back(p.name, p.param);
  return out;
}

std::vector<BucketMembers> DataParallel::buckets() const {
  std::vector<BucketMembers> out;
  for (const auto& b : state_->buckets) {
    BucketMembers m;
    m.buffer = b.buffer;
    for (size_t i : b.members) m.members.emplace_back(i, state_->params[i].offset);
    out.push_back(std::move(m));
  }
  return out;
}

bool DataParallel::reduce_scatter() const { return state_->opt.reduce_scatter; }

int DataParallel::num_buckets() const { return static_cast<int>(state_->buckets.size()); }

std::vector<std::vector<size_t>> DataParallel::bucket_layout() const {
  std::vector<std::vector<size_t>> out;
  for (auto& b : state_->buckets) out.push_back(b.members);
  return out;
}

int DataParallel::buckets_launched_in_backward() const { return state_->launched_in_backward; }

std::vector<BucketTiming> DataParallel::timeline() const { return state_->timeline; }

double DataParallel::timeline_zero_s() const { return state_->timeline_zero; }

}  // namespace ttt
