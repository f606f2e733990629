// trainer/h5.cpp — attributes for trainer/h5.h.
#include "trainer/h5.h"

#include <vector>

namespace ttt::ckpt_h5 {

void write_attr_string(hid_t obj, const std::string& name, const std::string& value) {
  Handle t = checked(type(H5Tcopy(H5T_C_S1)), "H5Tcopy");
  check(H5Tset_size(t, value.size() + 1), "H5Tset_size");  // +1: HDF5 wants a non-empty type
  check(H5Tset_strpad(t, H5T_STR_NULLTERM), "H5Tset_strpad");
  Handle s = checked(space(H5Screate(H5S_SCALAR)), "H5Screate");
  Handle a = checked(attr(H5Acreate2(obj, name.c_str(), t, s, H5P_DEFAULT, H5P_DEFAULT)),
                     "cannot create attribute '" + name + "'");
  check(H5Awrite(a, t, value.c_str()), "cannot write attribute '" + name + "'");
}

template <class T>
static void write_scalar(hid_t obj, const std::string& name, hid_t mem_type, T value) {
  Handle s = checked(space(H5Screate(H5S_SCALAR)), "H5Screate");
  Handle a = checked(attr(H5Acreate2(obj, name.c_str(), mem_type, s, H5P_DEFAULT, H5P_DEFAULT)),
                     "cannot create attribute '" + name + "'");
  check(H5Awrite(a, mem_type, &value), "cannot write attribute '" + name + "'");
}

void write_attr_i64(hid_t obj, const std::string& name, int64_t value) {
  write_scalar(obj, name, H5T_NATIVE_INT64, value);
}
void write_attr_u64(hid_t obj, const std::string& name, uint64_t value) {
  write_scalar(obj, name, H5T_NATIVE_UINT64, value);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_attr_string(hid_t obj, const std::string& name) {
  Handle a = checked(attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT)), "missing attribute '" + name + "'");
  Handle ft = checked(type(H5Aget_type(a)), "attribute '" + name + "': no type");
  if (H5Tget_class(ft) != H5T_STRING) throw std::runtime_error("attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(ft) > 0) throw std::runtime_error("attribute '" + name + "': variable-length strings unsupported");
  const size_t n = H5Tget_size(ft);
  std::vector<char> buf(n + 1, '\0');
  Handle mt = checked(type(H5Tcopy(H5T_C_S1)), "H5Tcopy");
  check(H5Tset_size(mt, n), "H5Tset_size");
  check(H5Aread(a, mt, buf.data()), "cannot read attribute '" + name + "'");
  return std::string(buf.data());
}

template <class T>
static T read_scalar(hid_t obj, const std::string& name, hid_t mem_type) {
  Handle a = checked(attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT)), "missing attribute '" + name + "'");
  T v{};
  check(H5Aread(a, mem_type, &v), "cannot read attribute '" + name + "'");
  return v;
}

int64_t read_attr_i64(hid_t obj, const std::string& name) { return read_scalar<int64_t>(obj, name, H5T_NATIVE_INT64); }
uint64_t read_attr_u64(hid_t obj, const std::string& name) { return read_scalar<uint64_t>(obj, name, H5T_NATIVE_UINT64); }

}  // namespace ttt::ckpt_h5
