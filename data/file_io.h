// data/file_io.h — writing result files (eval reports, configs, benchmark JSON) so that a failure
// is an error naming the file and the operating system's reason, never a silent exit 0 or a
// half-written file.
#pragma once

#include <string>
#include <string_view>

namespace ttt {

// "No space left on device (errno 28)"
std::string errno_message(int err);

// Writes `bytes` to `path`, creating its directory. A regular file (or a new one) is written to
// <path>.tmp-<pid>, flushed and renamed over it, so the old content stays whole if anything fails;
// anything else (a device such as /dev/stdout) is written directly. Throws std::runtime_error
// "cannot write <what> '<path>': <reason>".
void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& what);

// Throws the same error early, before long work, when `path` certainly cannot be written: it is a
// directory, or the nearest existing directory above it is not writable. Creates nothing.
void check_writable(const std::string& path, const std::string& what);

}  // namespace ttt
