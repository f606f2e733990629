// trainer/h5.h — (namespace ckpt_h5: data/h5.h owns ttt::h5) a minimal RAII layer over the HDF5 C API for checkpoint files: owned handles,
// scoped silencing of HDF5's own error printing (we report our own messages), string and
// integer attributes. All HDF5 calls of the trainer happen on one thread (the HDF5 C library
// serializes calls anyway).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace ttt::ckpt_h5 {

// An HDF5 identifier closed with `close_fn` when it goes out of scope.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close_fn)(hid_t)) : id_(id), close_(close_fn) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    reset();
    id_ = std::exchange(o.id_, -1);
    close_ = o.close_;
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

inline Handle file(hid_t id) { return {id, H5Fclose}; }
inline Handle group(hid_t id) { return {id, H5Gclose}; }
inline Handle dataset(hid_t id) { return {id, H5Dclose}; }
inline Handle space(hid_t id) { return {id, H5Sclose}; }
inline Handle type(hid_t id) { return {id, H5Tclose}; }
inline Handle plist(hid_t id) { return {id, H5Pclose}; }
inline Handle attr(hid_t id) { return {id, H5Aclose}; }

// Turns off HDF5's automatic error printing in its scope: failures become our own messages.
class Quiet {
 public:
  Quiet() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

inline void check(herr_t status, const std::string& what) {
  if (status < 0) throw std::runtime_error(what);
}
inline Handle checked(Handle h, const std::string& what) {
  if (!h.valid()) throw std::runtime_error(what);
  return h;
}

void write_attr_string(hid_t obj, const std::string& name, const std::string& value);
void write_attr_i64(hid_t obj, const std::string& name, int64_t value);
void write_attr_u64(hid_t obj, const std::string& name, uint64_t value);
bool has_attr(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);
int64_t read_attr_i64(hid_t obj, const std::string& name);
uint64_t read_attr_u64(hid_t obj, const std::string& name);

}  // namespace ttt::ckpt_h5
