// data/file_io.cpp — see file_io.h.
#include "data/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ttt {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what, const std::string& why) {
  throw std::runtime_error("cannot write " + what + " '" + path + "': " + why);
}

// write(2) until everything is out; false (errno set) on the first failure.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool is_special_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

}  // namespace

std::string errno_message(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

// Creates nothing: the nearest existing directory above `path` must be writable (the rest of the
// directories are created by the write itself).
void check_writable(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path, what, "it is a directory");
  if (is_special_file(path)) return;  // a device: only writing it tells
  fs::path dir = fs::absolute(path).parent_path();
  while (!fs::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) dir = dir.parent_path();
  if (!fs::is_directory(dir, ec)) fail(path, what, "'" + dir.string() + "' is not a directory");
  if (::access(dir.c_str(), W_OK) != 0) fail(path, what, "'" + dir.string() + "' is not writable: " + errno_message(errno));
}

void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& what) {
  check_writable(path, what);
  std::error_code ec;
  fs::create_directories(fs::absolute(path).parent_path(), ec);
  if (ec) fail(path, what, "cannot create its directory: " + ec.message());
  if (is_special_file(path)) {
    const int fd = ::open(path.c_str(), O_WRONLY);
    if (fd < 0) fail(path, what, errno_message(errno));
    const bool ok = write_all(fd, bytes);
    const int err = errno;
    ::close(fd);
    if (!ok) fail(path, what, errno_message(err));
    return;
  }
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, what, errno_message(errno));
  // fsync: a power loss must not leave a renamed but empty file in place of the old one.
  const bool ok = write_all(fd, bytes) && ::fsync(fd) == 0;
  const int err = errno;
  if (::close(fd) != 0 || !ok) {
    ::unlink(tmp.c_str());
    fail(path, what, errno_message(ok ? errno : err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(tmp.c_str());
    fail(path, what, errno_message(rename_err));
  }
}

}  // namespace ttt
