// data/h5.cpp — see h5.h.
#include "data/h5.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <regex>
#include <stdexcept>

namespace ttt::data_h5 {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex m;
  return m;
}

void init() {
  thread_local bool done = false;
  if (done) return;
  Lock lock(hdf5_mutex());
  static bool process_done = false;
  if (!process_done) {
    H5dont_atexit();  // only effective before the library initializes, i.e. on the first HDF5 call
    process_done = true;
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  done = true;
}

std::string error_detail() {
  Lock lock(hdf5_mutex());
  struct Found {
    std::string innermost;
    int err = 0;
  } found;
  // The stack is walked from the API call inwards; the sec2 driver's message of a failed read or
  // write carries ", errno = 28, error message = '...'".
  auto walk = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    auto* f = static_cast<Found*>(data);
    const std::string desc = e->desc ? e->desc : "";
    static const std::regex errno_re("errno = ([0-9]+)");
    std::smatch m;
    if (f->err == 0 && std::regex_search(desc, m, errno_re)) f->err = std::stoi(m[1].str());
    if (!desc.empty()) f->innermost = desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &found);
  if (found.err != 0) return std::string(std::strerror(found.err)) + " (errno " + std::to_string(found.err) + ")";
  return found.innermost;
}

void abandon_file(int fd) {
  if (fd < 0) return;
  int null_fd = ::open("/dev/null", O_WRONLY);
  if (null_fd < 0) return;
  ::dup2(null_fd, fd);
  ::close(null_fd);
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() { close(); }

herr_t Handle::close() {
  herr_t rc = 0;
  if (id_ >= 0 && closer_) {
    Lock lock(hdf5_mutex());
    rc = closer_(id_);
  }
  id_ = -1;
  return rc;
}

hid_t check(hid_t id, const std::string& file, const std::string& what) {
  if (id < 0) throw std::runtime_error(file + ": " + what);
  return id;
}

Handle create_file(const std::string& path) {
  init();
  Lock lock(hdf5_mutex());
  return {check(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), path, "cannot create HDF5 file"),
          H5Fclose};
}

Handle open_file(const std::string& path, bool writable) {
  init();
  Lock lock(hdf5_mutex());
  // File locks are kept, but a file system without lock support (common on cluster NFS/Lustre
  // mounts) is not an error.
  Handle fapl(check(H5Pcreate(H5P_FILE_ACCESS), path, "H5Pcreate"), H5Pclose);
  H5Pset_file_locking(fapl.get(), true, true);
  hid_t f = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl.get());
  // HDF5 refuses a file whose superblock is damaged or whose end-of-file is short of what the
  // superblock records (a truncated file), so both land here.
  if (f < 0) throw std::runtime_error(path + ": not a readable HDF5 file (missing, corrupt or truncated)");
  return {f, H5Fclose};
}

Handle open_dataset(hid_t file, const std::string& name, const std::string& path, hid_t dapl) {
  Lock lock(hdf5_mutex());
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0)
    throw std::runtime_error(path + ": dataset '" + name + "' is missing (not a ttt token shard, or corrupt)");
  return {check(H5Dopen2(file, name.c_str(), dapl), path, "cannot open dataset '" + name + "' (corrupt?)"),
          H5Dclose};
}

// Attributes are scalars; an existing one is replaced (finish() re-stamps num_shards).
void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& path) {
  Lock lock(hdf5_mutex());
  Handle space(check(H5Screate(H5S_SCALAR), path, "H5Screate"), H5Sclose);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle attr(check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                    "cannot create attribute " + name),
              H5Aclose);
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), path, "cannot write attribute " + name);
}

void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& path) {
  Lock lock(hdf5_mutex());
  // A fixed-length UTF-8 string of exactly the value's size (h5py reads it as bytes / str).
  Handle type(check(H5Tcopy(H5T_C_S1), path, "H5Tcopy"), H5Tclose);
  H5Tset_size(type.get(), value.empty() ? 1 : value.size());
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(check(H5Screate(H5S_SCALAR), path, "H5Screate"), H5Sclose);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle attr(check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                    "cannot create attribute " + name),
              H5Aclose);
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr.get(), type.get(), buf.data()), path, "cannot write attribute " + name);
}

bool has_attr(hid_t obj, const std::string& name) {
  Lock lock(hdf5_mutex());
  return H5Aexists(obj, name.c_str()) > 0;
}

namespace {
Handle open_attr(hid_t obj, const std::string& name, const std::string& path) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw std::runtime_error(path + ": attribute '" + name + "' is missing");
  return {check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), path, "cannot open attribute " + name), H5Aclose};
}
}  // namespace

int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& path) {
  Lock lock(hdf5_mutex());
  Handle attr = open_attr(obj, name, path);
  Handle type(check(H5Aget_type(attr.get()), path, "attribute " + name), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw std::runtime_error(path + ": attribute '" + name + "' is not an integer");
  int64_t v = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), path, "cannot read attribute " + name);
  return v;
}

std::string read_attr_str(hid_t obj, const std::string& name, const std::string& path) {
  Lock lock(hdf5_mutex());
  Handle attr = open_attr(obj, name, path);
  Handle type(check(H5Aget_type(attr.get()), path, "attribute " + name), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) throw std::runtime_error(path + ": attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {  // as h5py writes them
    char* s = nullptr;
    check(H5Aread(attr.get(), type.get(), &s), path, "cannot read attribute " + name);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t size = H5Tget_size(type.get());
  std::string buf(size, '\0');
  check(H5Aread(attr.get(), type.get(), buf.data()), path, "cannot read attribute " + name);
  size_t end = buf.find('\0');
  if (end != std::string::npos) buf.resize(end);
  return buf;
}

int64_t dataset_length(hid_t dset, const std::string& name, const std::string& path) {
  Lock lock(hdf5_mutex());
  Handle space(check(H5Dget_space(dset), path, "dataset " + name), H5Sclose);
  if (H5Sget_simple_extent_ndims(space.get()) != 1)
    throw std::runtime_error(path + ": dataset '" + name + "' is not 1-dimensional");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  return static_cast<int64_t>(n);
}

void read_range_i64(hid_t dset, int64_t start, int64_t n, int64_t* out, const std::string& what) {
  if (n <= 0) return;
  init();  // reads may come from a prefetch thread
  Lock lock(hdf5_mutex());
  Handle fspace(check(H5Dget_space(dset), what, "H5Dget_space"), H5Sclose);
  hsize_t off = static_cast<hsize_t>(start), cnt = static_cast<hsize_t>(n);
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &off, nullptr, &cnt, nullptr), what,
        "bad read range [" + std::to_string(start) + ", " + std::to_string(start + n) + ")");
  // The memory side is a plain int64 array: HDF5 converts from the file's uint16/uint32/int64.
  Handle mspace(check(H5Screate_simple(1, &cnt, nullptr), what, "H5Screate_simple"), H5Sclose);
  // A checksum mismatch (Fletcher32) or a short file surfaces here as a failed read.
  if (H5Dread(dset, H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0)
    throw std::runtime_error(what + ": read of elements [" + std::to_string(start) + ", " + std::to_string(start + n) +
                             ") failed (corrupt or truncated shard: checksum or I/O error)");
}

}  // namespace ttt::data_h5
