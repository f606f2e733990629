// trainer/checkpoint.cpp — HDF5 checkpoint files (see checkpoint.h for the layout).
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include "data/h5.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

// The HDF5 wrapper of data/ (one mutex for every HDF5 call of the process), plus the few helpers
// checkpoints need on top of it.
namespace h5x {
// data_h5::Handle that converts to hid_t, so handles pass straight to the C API.
struct Handle : data_h5::Handle {
  Handle() = default;
  Handle(hid_t id, Closer closer) : data_h5::Handle(id, closer) {}
  operator hid_t() const { return get(); }
};
inline Handle file(hid_t id) { return {id, H5Fclose}; }
inline Handle group(hid_t id) { return {id, H5Gclose}; }
inline Handle dataset(hid_t id) { return {id, H5Dclose}; }
inline Handle space(hid_t id) { return {id, H5Sclose}; }
inline Handle plist(hid_t id) { return {id, H5Pclose}; }
// Failures carry HDF5's own account of the cause (for a failed write: the operating system's
// error, e.g. "No space left on device (errno 28)"), read before any later call replaces it.
inline std::string with_detail(const std::string& what) {
  const std::string detail = data_h5::error_detail();
  return detail.empty() ? what : what + ": " + detail;
}
inline void check(herr_t status, const std::string& what) {
  if (status < 0) throw std::runtime_error(with_detail(what));
}
inline Handle checked(Handle h, const std::string& what) {
  if (!h.valid()) throw std::runtime_error(with_detail(what));
  return h;
}
// Attributes through data_h5 (which names the file in its errors).
inline void write_i64(hid_t obj, const std::string& name, int64_t v) { data_h5::write_attr(obj, name, v, "checkpoint"); }
// 64-bit unsigned values (RNG state) are stored as int64 with the same bits.
inline void write_u64(hid_t obj, const std::string& name, uint64_t v) { write_i64(obj, name, static_cast<int64_t>(v)); }
inline void write_str(hid_t obj, const std::string& name, const std::string& v) {
  data_h5::write_attr(obj, name, v, "checkpoint");
}
inline int64_t read_i64(hid_t obj, const std::string& name) { return data_h5::read_attr_i64(obj, name, "checkpoint"); }
inline uint64_t read_u64(hid_t obj, const std::string& name) { return static_cast<uint64_t>(read_i64(obj, name)); }
inline std::string read_str(hid_t obj, const std::string& name) { return data_h5::read_attr_str(obj, name, "checkpoint"); }
}  // namespace h5x

using h5x::Handle;

constexpr int64_t kChunkElements = int64_t{1} << 22;  // 16 MiB of float32 per checksummed chunk

// --- writing ------------------------------------------------------------------------------------

// One float32 dataset per tensor, with its own shape, so h5py users see what they expect.
void write_tensor(hid_t parent, const std::string& name, const Tensor& t) {
  if (name.find('/') != std::string::npos)
    throw std::invalid_argument("checkpoint: tensor name '" + name + "' contains '/'");
  Tensor host = t.detach().to(cpu()).to(DType::f32).contiguous();
  std::vector<hsize_t> dims(host.shape().begin(), host.shape().end());
  const bool scalar = dims.empty();
  if (scalar) dims = {1};
  Handle sp = h5x::checked(h5x::space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)),
                              "H5Screate_simple");
  Handle dcpl = h5x::checked(h5x::plist(H5Pcreate(H5P_DATASET_CREATE)), "H5Pcreate");
  // Fletcher-32 needs a chunked layout; empty datasets cannot be chunked and carry no data.
  if (host.numel() > 0) {
    // Chunk = whole trailing dims, as many leading rows as fit in kChunkElements.
    std::vector<hsize_t> chunk = dims;
    hsize_t row = 1;
    for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kChunkElements / std::max<hsize_t>(row, 1)));
    h5x::check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
    h5x::check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32");
  }
  Handle ds = h5x::checked(
      h5x::dataset(H5Dcreate2(parent, name.c_str(), H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)),
      "cannot create dataset '" + name + "'");
  if (host.numel() > 0)
    h5x::check(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data<float>()),
              "cannot write dataset '" + name + "'");
  if (scalar) h5x::write_i64(ds, "scalar", 1);
}

void write_blob(hid_t parent, const std::string& name, const std::string& bytes) {
  hsize_t n = bytes.size();
  Handle sp = h5x::checked(h5x::space(H5Screate_simple(1, &n, nullptr)), "H5Screate_simple");
  Handle dcpl = h5x::checked(h5x::plist(H5Pcreate(H5P_DATASET_CREATE)), "H5Pcreate");
  if (n > 0) {
    hsize_t chunk = std::min<hsize_t>(n, hsize_t{1} << 24);
    h5x::check(H5Pset_chunk(dcpl, 1, &chunk), "H5Pset_chunk");
    h5x::check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32");
  }
  Handle ds = h5x::checked(
      h5x::dataset(H5Dcreate2(parent, name.c_str(), H5T_NATIVE_UINT8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)),
      "cannot create dataset '" + name + "'");
  if (n > 0) h5x::check(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "H5Dwrite");
}

Handle make_group(hid_t parent, const char* name) {
  return h5x::checked(h5x::group(H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)),
                     std::string("cannot create group ") + name);
}

// Without fsync a power loss after the rename could leave a renamed but empty file; fsync of the
// directory makes the rename itself durable.
void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "' to fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of '" + path + "' failed: " + std::strerror(err));
}

// Writes the whole checkpoint file `file`, flushed and closed; throws naming what failed. On a
// failure every dataset and group handle is closed (their scopes end) before the file; a file
// HDF5 cannot close any more (a failed flush) is abandoned (data_h5::abandon_file).
void write_checkpoint_file(const std::string& file, const NamedTensors& params, const OptimizerState* opt,
                           const CheckpointMeta& meta) {
  Handle f = h5x::checked(h5x::file(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)),
                          "cannot create '" + file + "'");
  int fd = -1;
  void* vfd = nullptr;
  if (H5Fget_vfd_handle(f, H5P_DEFAULT, &vfd) >= 0 && vfd) fd = *static_cast<int*>(vfd);  // sec2: an int
  try {
    h5x::write_str(f, "format", "ttt-checkpoint");
    h5x::write_i64(f, "format_version", kCheckpointFormatVersion);
    h5x::write_i64(f, "step", meta.step);
    h5x::write_i64(f, "tokens", meta.tokens);
    h5x::write_u64(f, "rng_seed", meta.rng_seed);
    h5x::write_u64(f, "rng_offset", meta.rng_offset);
    h5x::write_i64(f, "optimizer_step", opt ? opt->step_count : meta.optimizer_step);
    h5x::write_str(f, "config", meta.config_yaml);
    {
      Handle g = make_group(f, "params");
      for (const auto& [name, t] : params) write_tensor(g, name, t);
    }
    if (opt) {
      Handle g = make_group(f, "optim");
      Handle gm = make_group(g, "m"), gv = make_group(g, "v");
      for (const auto& s : opt->moments) {
        write_tensor(gm, s.name, s.m);
        write_tensor(gv, s.name, s.v);
      }
    }
    if (!meta.extras.empty()) {
      Handle g = make_group(f, "extra");
      for (const auto& [name, bytes] : meta.extras) write_blob(g, name, bytes);
    }
    h5x::check(H5Fflush(f, H5F_SCOPE_GLOBAL), "writing '" + file + "' failed");
  } catch (...) {
    if (f.close() < 0) data_h5::abandon_file(fd);
    throw;
  }
  if (f.close() < 0) {
    const std::string detail = h5x::with_detail("closing '" + file + "' failed");
    data_h5::abandon_file(fd);
    throw std::runtime_error(detail);
  }
}

// --- reading ------------------------------------------------------------------------------------

std::vector<std::string> list_names(hid_t group) {
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  hsize_t idx = 0;
  h5x::check(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, cb, &names), "cannot list group");
  return names;
}

std::vector<hsize_t> dataset_dims(hid_t ds) {
  Handle sp = h5x::checked(h5x::space(H5Dget_space(ds)), "H5Dget_space");
  int rank = H5Sget_simple_extent_ndims(sp);
  if (rank < 0) throw std::runtime_error("bad dataspace");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(sp, dims.data(), nullptr);
  return dims;
}

// Reads dataset `name` of `group` into a new float32 CPU tensor of its stored shape.
Tensor read_tensor(hid_t group, const std::string& name, const std::string& where) {
  Handle ds = h5x::checked(h5x::dataset(H5Dopen2(group, name.c_str(), H5P_DEFAULT)),
                              where + ": cannot open dataset '" + name + "'");
  std::vector<hsize_t> dims = dataset_dims(ds);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  if (data_h5::has_attr(ds, "scalar")) shape.clear();
  Tensor t = empty(Shape(shape), opts(DType::f32));
  if (t.numel() > 0 &&
      H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>()) < 0)
    throw std::runtime_error(where + ": dataset '" + name + "' is unreadable (checksum mismatch or truncated data)");
  return t;
}

std::string read_blob(hid_t group, const std::string& name, const std::string& where) {
  Handle ds = h5x::checked(h5x::dataset(H5Dopen2(group, name.c_str(), H5P_DEFAULT)),
                              where + ": cannot open dataset '" + name + "'");
  std::vector<hsize_t> dims = dataset_dims(ds);
  std::string bytes(dims.empty() ? 0 : dims[0], '\0');
  if (!bytes.empty() && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0)
    throw std::runtime_error(where + ": dataset '" + name + "' is unreadable (checksum mismatch or truncated data)");
  return bytes;
}

// Opens and checks the format attributes: a clear error for files that are not ours or are from
// another format version, before anything reads datasets.
Handle open_checkpoint(const std::string& path) {
  if (!fs::exists(path)) throw std::runtime_error("checkpoint '" + path + "' does not exist");
  Handle f = h5x::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!f.valid()) throw std::runtime_error("checkpoint '" + path + "' cannot be opened (truncated or not an HDF5 file)");
  if (!data_h5::has_attr(f, "format") || h5x::read_str(f, "format") != "ttt-checkpoint")
    throw std::runtime_error("'" + path + "' is not a ttt checkpoint (no format = ttt-checkpoint attribute)");
  int64_t version = h5x::read_i64(f, "format_version");
  if (version != kCheckpointFormatVersion)
    throw std::runtime_error("checkpoint '" + path + "' has format version " + std::to_string(version) +
                             "; this build reads version " + std::to_string(kCheckpointFormatVersion));
  return f;
}

CheckpointMeta read_meta(hid_t f, const std::string& path) {
  CheckpointMeta m;
  m.step = h5x::read_i64(f, "step");
  m.tokens = h5x::read_i64(f, "tokens");
  m.rng_seed = h5x::read_u64(f, "rng_seed");
  m.rng_offset = h5x::read_u64(f, "rng_offset");
  m.optimizer_step = h5x::read_i64(f, "optimizer_step");
  m.config_yaml = h5x::read_str(f, "config");
  if (H5Lexists(f, "extra", H5P_DEFAULT) > 0) {
    Handle g = h5x::checked(h5x::group(H5Gopen2(f, "extra", H5P_DEFAULT)), path + ": cannot open /extra");
    for (const auto& name : list_names(g)) m.extras[name] = read_blob(g, name, path);
  }
  return m;
}

std::string shape_str(const Tensor& t) { return t.shape().str(); }

}  // namespace

// --- public API ---------------------------------------------------------------------------------

OptimizerState optimizer_state_of(const AdamW& opt) {
  OptimizerState s;
  s.step_count = opt.step_count();
  for (const auto& slot : opt.slots()) s.moments.push_back({slot.name, slot.m, slot.v});
  return s;
}

void save_checkpoint(const std::string& path, const NamedTensors& params, const AdamW* opt,
                     const CheckpointMeta& meta) {
  if (!opt) return save_checkpoint(path, params, static_cast<const OptimizerState*>(nullptr), meta);
  const OptimizerState state = optimizer_state_of(*opt);
  save_checkpoint(path, params, &state, meta);
}

void save_checkpoint(const std::string& path, const NamedTensors& params, const OptimizerState* opt,
                     const CheckpointMeta& meta) {
  data_h5::Lock lock(data_h5::hdf5_mutex());
  data_h5::init();
  const std::string tmp = path + ".tmp";
  fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  // A failure (disk full, quota, I/O error) removes the partial file, so it neither holds the
  // space nor looks like a checkpoint; files written before are never touched.
  auto fail = [&](const std::string& why) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot write checkpoint '" + path + "': " + why +
                             " (the partial file was removed; earlier checkpoints are untouched)");
  };
  try {
    if (!parent.empty()) fs::create_directories(parent);
    fs::remove(tmp);  // a leftover of an earlier crash
    write_checkpoint_file(tmp, params, opt, meta);
    fsync_path(tmp, false);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  fs::rename(tmp, path, ec);
  if (ec) fail("rename of '" + tmp + "' failed: " + ec.message());
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  data_h5::Lock lock(data_h5::hdf5_mutex());
  data_h5::init();
  Handle f = open_checkpoint(path);
  return read_meta(f, path);
}

CheckpointMeta load_checkpoint(const std::string& path, const NamedTensors& params, AdamW* opt) {
  if (!opt) return load_checkpoint(path, params, static_cast<OptimizerState*>(nullptr));
  OptimizerState state = optimizer_state_of(*opt);
  CheckpointMeta meta = load_checkpoint(path, params, &state);
  opt->set_step_count(state.step_count);
  return meta;
}

CheckpointMeta load_checkpoint(const std::string& path, const NamedTensors& params, OptimizerState* opt) {
  data_h5::Lock lock(data_h5::hdf5_mutex());
  data_h5::init();
  Handle f = open_checkpoint(path);
  CheckpointMeta meta = read_meta(f, path);
  Handle g = h5x::checked(h5x::group(H5Gopen2(f, "params", H5P_DEFAULT)), path + ": no /params group");
  // Strict both ways: every model parameter is in the file and every stored one is in the model.
  std::set<std::string> stored;
  for (const auto& n : list_names(g)) stored.insert(n);
  std::string missing, unexpected;
  for (const auto& [name, t] : params)
    if (!stored.erase(name)) missing += " " + name;
  for (const auto& n : stored) unexpected += " " + n;
  if (!missing.empty() || !unexpected.empty())
    throw std::runtime_error(path + ": parameters differ from the model." +
                             (missing.empty() ? "" : " Missing in the file:" + missing) +
                             (unexpected.empty() ? "" : " Not in the model:" + unexpected));
  // Read everything before touching the model, so a bad file leaves the model as it was.
  std::vector<Tensor> values;
  for (const auto& [name, t] : params) {
    Tensor v = read_tensor(g, name, path);
    if (v.shape() != t.shape())
      throw std::runtime_error(path + ": parameter '" + name + "' has shape " + shape_str(v) +
                               " in the file but " + shape_str(t) + " in the model");
    values.push_back(v);
  }
  std::vector<Tensor> ms, vs;
  if (opt) {
    if (H5Lexists(f, "optim", H5P_DEFAULT) <= 0) throw std::runtime_error(path + ": no optimizer state (/optim)");
    Handle gm = h5x::checked(h5x::group(H5Gopen2(f, "optim/m", H5P_DEFAULT)), path + ": no /optim/m");
    Handle gv = h5x::checked(h5x::group(H5Gopen2(f, "optim/v", H5P_DEFAULT)), path + ": no /optim/v");
    for (const auto& s : opt->moments) {
      Tensor m = read_tensor(gm, s.name, path), v = read_tensor(gv, s.name, path);
      if (m.shape() != s.m.shape() || v.shape() != s.v.shape())
        throw std::runtime_error(path + ": optimizer state of '" + s.name + "' has the wrong shape");
      ms.push_back(m);
      vs.push_back(v);
    }
  }
  NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor dst = params[i].second;
    dst.copy_(values[i].to(dst.device()).to(dst.dtype()));
  }
  if (opt) {
    for (size_t i = 0; i < opt->moments.size(); ++i) {
      opt->moments[i].m.copy_(ms[i].to(opt->moments[i].m.device()));
      opt->moments[i].v.copy_(vs[i].to(opt->moments[i].v.device()));
    }
    opt->step_count = meta.optimizer_step;
  }
  return meta;
}

// Reads every dataset (so the checksums are verified) but keeps none: resume calls this on each
// candidate, newest first, and checkpoints are small next to a training step.
std::string checkpoint_problem(const std::string& path) {
  data_h5::Lock lock(data_h5::hdf5_mutex());
  data_h5::init();
  try {
    Handle f = open_checkpoint(path);
    (void)read_meta(f, path);
    Handle g = h5x::checked(h5x::group(H5Gopen2(f, "params", H5P_DEFAULT)), "no /params group");
    std::vector<std::string> names = list_names(g);
    if (names.empty()) return "no parameters stored";
    std::map<std::string, Shape> shapes;
    for (const auto& n : names) shapes[n] = read_tensor(g, n, path).shape();
    if (H5Lexists(f, "optim", H5P_DEFAULT) > 0) {
      for (const char* which : {"optim/m", "optim/v"}) {
        Handle go = h5x::checked(h5x::group(H5Gopen2(f, which, H5P_DEFAULT)), std::string("no /") + which);
        std::vector<std::string> on = list_names(go);
        if (on.size() != names.size()) return std::string("/") + which + " does not match /params";
        for (const auto& n : on) {
          auto it = shapes.find(n);
          if (it == shapes.end() || read_tensor(go, n, path).shape() != it->second)
            return std::string("/") + which + "/" + n + " does not match /params";
        }
      }
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / ("step_" + std::to_string(step) + ".h5")).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  static const std::regex pattern(R"(step_(\d+)\.h5)");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && std::regex_match(name, m, pattern))
      out.emplace_back(std::stoll(m[1].str()), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> newest_valid_checkpoint(const std::string& dir, std::vector<SkippedCheckpoint>* skipped) {
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    std::string problem = checkpoint_problem(it->second);
    if (problem.empty()) return it->second;
    if (skipped) skipped->push_back({it->second, problem});
  }
  return std::nullopt;
}

std::string set_aside_checkpoint(const std::string& path) {
  std::string target = path + ".broken";
  for (int i = 2; fs::exists(target); ++i) target = path + ".broken." + std::to_string(i);
  std::error_code ec;
  fs::rename(path, target, ec);
  if (ec) throw std::runtime_error("cannot move broken checkpoint '" + path + "' aside: " + ec.message());
  return target;
}

// Only files named step_N.h5 are candidates: temporary files, checkpoints set aside as broken and
// anything a user put in the directory are never deleted.
std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep_last, int64_t through_step) {
  std::vector<std::string> removed;
  if (keep_last <= 0) return removed;
  auto all = list_checkpoints(dir);
  std::erase_if(all, [&](const auto& c) { return c.first > through_step; });
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) {
    fs::remove(all[i].second);
    removed.push_back(all[i].second);
  }
  return removed;
}

}  // namespace ttt
