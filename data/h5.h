// data/h5.h — a small RAII layer over the HDF5 C API, shared by the shard writer and reader.
//
// HDF5 is not always built thread-safe (Debian's build is; others may not be), and a sampler may
// read from a prefetch thread, so every HDF5 call made by data/ holds hdf5_mutex() (recursive, so
// helpers may nest). HDF5's own error printing is turned off (per thread: in a thread-safe build
// the setting is thread-local); failures become exceptions naming the file.
// Checkpoints (trainer/checkpoint.cpp) use this layer too, with a few helpers of their own.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace ttt::data_h5 {

std::recursive_mutex& hdf5_mutex();
using Lock = std::lock_guard<std::recursive_mutex>;

// Turns off HDF5's automatic error printing for the calling thread (idempotent); called by the
// entry points that open files. The first call in the process also tells HDF5 not to close files
// at exit (H5dont_atexit): after a failed write (disk full) HDF5 1.10 cannot close the file, and
// its exit handler then crashes on it (abandon_file below is the rest of that story).
void init();

// What the calling thread's HDF5 error stack says went wrong at the lowest level: for a failed
// read or write the operating system's error ("No space left on device (errno 28)"), else the
// innermost HDF5 message; "" when the stack is empty. Call it right after the failing call.
std::string error_detail();

// Gives up on a file HDF5 could not close (a failed flush leaves its metadata cache unusable, so
// no retry can succeed): its descriptor is pointed at /dev/null, so the blocks of the file are
// released once it is unlinked and no later write of HDF5 reaches the disk. `fd` comes from
// H5Fget_vfd_handle (sec2 driver).
void abandon_file(int fd);

// An owned hid_t, closed with the right H5*close function when it goes out of scope.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();      // closes now
  herr_t close();    // closes now and reports failure (used where a failed flush matters)

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// Throws std::runtime_error("<file>: <what>") when id/status is negative.
hid_t check(hid_t id, const std::string& file, const std::string& what);

Handle create_file(const std::string& path);         // fails if it exists
Handle open_file(const std::string& path, bool writable);
// dapl: a dataset access property list (e.g. with a chunk cache size), or H5P_DEFAULT.
Handle open_dataset(hid_t file, const std::string& name, const std::string& path, hid_t dapl = H5P_DEFAULT);

// Attributes on a file or dataset. Strings are stored as fixed-length ASCII/UTF-8 strings.
void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& path);
void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& path);
bool has_attr(hid_t obj, const std::string& name);
int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& path);
std::string read_attr_str(hid_t obj, const std::string& name, const std::string& path);

// Length of a 1-D dataset (throws unless it is 1-D).
int64_t dataset_length(hid_t dset, const std::string& name, const std::string& path);

// Reads elements [start, start + n) of a 1-D dataset as int64 through a hyperslab selection.
void read_range_i64(hid_t dset, int64_t start, int64_t n, int64_t* out, const std::string& what);

}  // namespace ttt::data_h5
