// data/text_sources.h — documents from .txt, .jsonl and .jsonl.zst files.
//
// Formats (decided in data/README.md):
//   .txt        one document per file (the whole file, bytes as they are).
//   .jsonl      one JSON object per line with a string field "text" (The Pile's format); blank
//               lines are ignored, other fields are ignored.
//   .jsonl.zst  the same, zstd-compressed (one or more frames), decompressed as a stream.
// Every document must be valid UTF-8. Bad records stop reading with "file:line: what" unless
// skip_bad is set, in which case they are skipped and counted. Records whose text is empty are
// skipped and counted (they carry no tokens). A file that yields no document is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ttt {

enum class SourceKind { txt, jsonl, jsonl_zst };

// The kind of a file from its name; throws std::invalid_argument for any other extension.
SourceKind source_kind(const std::string& path);

// Expands each input to files: a glob pattern (*, ?, [..]) to its sorted matches, a directory to
// the supported files below it (sorted), a plain path to itself. Throws std::runtime_error when a
// path is missing, a pattern matches nothing, or a file has an unsupported type. Duplicates are
// dropped (first occurrence wins), so the order of documents is the order of the inputs.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

// The index of the first byte that is not part of valid UTF-8 (overlong forms, surrogates and
// code points above U+10FFFF are invalid), or std::string_view::npos when all of s is valid.
size_t find_invalid_utf8(std::string_view s);

struct Document {
  std::string text;
  std::string file;
  int64_t line = 0;  // 1-based line of a .jsonl record; 0 for a .txt document
};

struct SourceStats {
  int64_t documents = 0;      // documents returned
  int64_t bad_skipped = 0;    // malformed records / invalid files skipped under skip_bad
  int64_t empty_skipped = 0;  // records with empty text
};

class ByteSource;

// Reads the documents of a list of files in order, one at a time (memory: one document plus
// I/O buffers, whatever the size of the input).
class DocumentReader {
 public:
  explicit DocumentReader(std::vector<std::string> files, bool skip_bad = false);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // Fills doc with the next document; false at the end of the last file.
  bool next(Document& doc);
  const SourceStats& stats() const { return stats_; }
  // Bytes of input consumed so far (compressed bytes for .zst): progress against the file sizes.
  int64_t bytes_read() const;

 private:
  bool open_next_file();
  bool next_jsonl(Document& doc);
  bool next_line(std::string& line);
  bool read_txt(Document& doc);
  void bad(const std::string& where, const std::string& what);  // throws unless skip_bad
  void finish_file();

  std::vector<std::string> files_;
  bool skip_bad_;
  size_t file_index_ = 0;     // next file to open
  std::unique_ptr<ByteSource> src_;
  SourceKind kind_ = SourceKind::txt;
  std::string current_;        // the open file's path
  int64_t line_ = 0;
  int64_t docs_in_file_ = 0;
  int64_t bad_in_file_ = 0;
  int64_t bytes_done_ = 0;     // input bytes of files already finished
  std::string carry_;          // an incomplete line carried over between blocks
  std::string line_buf_;
  std::string_view block_;     // the unread part of the current decoded block
  bool eof_ = false;
  SourceStats stats_;
};

// Sum of the sizes of the files in bytes (the progress total for bytes_read()).
int64_t total_file_bytes(const std::vector<std::string>& files);

}  // namespace ttt
