// data/text_sources.cpp — input expansion, UTF-8 validation, and the document reader.
#include "data/text_sources.h"

#include <glob.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include <utf8.h>

namespace fs = std::filesystem;

namespace ttt {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_supported(const std::string& path) {
  return ends_with(path, ".txt") || ends_with(path, ".jsonl") || ends_with(path, ".jsonl.zst");
}

// nlohmann's parse errors read "[json.exception.parse_error.N] ...; last read: '<token>'", where
// the token can be a whole unterminated string (kilobytes of a record): keep the part after the
// tag and cut the quoted token short.
std::string short_json_error(const std::string& what) {
  constexpr size_t kMaxToken = 60;
  size_t cut = what.find("] ");
  std::string msg = cut == std::string::npos ? what : what.substr(cut + 2);
  const std::string tag = "last read: '";
  size_t at = msg.find(tag);
  if (at != std::string::npos) {
    size_t begin = at + tag.size();
    size_t end = msg.rfind('\'');
    if (end != std::string::npos && end > begin && end - begin > kMaxToken) {
      size_t keep = kMaxToken;
      while (keep > 0 && (static_cast<unsigned char>(msg[begin + keep]) & 0xC0) == 0x80) --keep;  // whole characters
      msg = msg.substr(0, begin + keep) + "...' (" + std::to_string(end - begin) + " bytes)" + msg.substr(end + 1);
    }
  }
  return msg;
}

std::FILE* open_or_throw(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open input file " + path + ": " + std::strerror(errno));
  return f;
}

}  // namespace

// A file read in blocks of decoded bytes. The reader does not care whether they were compressed.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The next block of bytes (valid until the next call); empty at the end of the input.
  virtual std::string_view next_block() = 0;
  // Bytes of the file consumed so far.
  virtual int64_t bytes_consumed() const = 0;
};

namespace {

constexpr size_t kBlockBytes = 1 << 20;

class PlainSource : public ByteSource {
 public:
  explicit PlainSource(const std::string& path) : path_(path), f_(open_or_throw(path)), buf_(kBlockBytes) {}
  ~PlainSource() override { std::fclose(f_); }
  std::string_view next_block() override {
    size_t n = std::fread(buf_.data(), 1, buf_.size(), f_);
    if (n == 0 && std::ferror(f_)) throw std::runtime_error("error reading " + path_ + ": " + std::strerror(errno));
    consumed_ += n;
    return {buf_.data(), n};
  }
  int64_t bytes_consumed() const override { return consumed_; }

 private:
  std::string path_;
  std::FILE* f_;
  std::vector<char> buf_;
  int64_t consumed_ = 0;
};

// Streaming zstd decompression (ZSTD_decompressStream handles any number of concatenated frames).
class ZstdSource : public ByteSource {
 public:
  explicit ZstdSource(const std::string& path)
      : path_(path), f_(open_or_throw(path)), dctx_(ZSTD_createDCtx()),
        in_buf_(ZSTD_DStreamInSize()), out_buf_(ZSTD_DStreamOutSize()) {
    if (!dctx_) { std::fclose(f_); throw std::runtime_error("zstd: out of memory opening " + path); }
  }
  ~ZstdSource() override { ZSTD_freeDCtx(dctx_); std::fclose(f_); }

  std::string_view next_block() override {
    for (;;) {
      // Read more input only when the decoder has consumed all of it and has nothing buffered
      // (a full output buffer means it may still hold decoded bytes).
      if (in_.pos == in_.size && !output_pending_) {
        if (in_eof_) {
          if (frame_open_) throw std::runtime_error(path_ + ": truncated zstd stream (the last frame is incomplete)");
          return {};
        }
        size_t n = std::fread(in_buf_.data(), 1, in_buf_.size(), f_);
        if (n == 0 && std::ferror(f_)) throw std::runtime_error("error reading " + path_ + ": " + std::strerror(errno));
        consumed_ += n;
        if (n == 0) { in_eof_ = true; continue; }
        in_ = {in_buf_.data(), n, 0};
      }
      ZSTD_outBuffer out = {out_buf_.data(), out_buf_.size(), 0};
      size_t ret = ZSTD_decompressStream(dctx_, &out, &in_);
      if (ZSTD_isError(ret))
        throw std::runtime_error(path_ + ": corrupt zstd data (" + ZSTD_getErrorName(ret) + ")");
      frame_open_ = ret != 0;  // 0 exactly when a frame has been completely decoded and flushed
      output_pending_ = out.pos == out.size;
      if (out.pos > 0) return {out_buf_.data(), out.pos};
    }
  }
  int64_t bytes_consumed() const override { return consumed_; }

 private:
  std::string path_;
  std::FILE* f_;
  ZSTD_DCtx* dctx_;
  std::vector<char> in_buf_, out_buf_;
  ZSTD_inBuffer in_ = {nullptr, 0, 0};
  bool in_eof_ = false, frame_open_ = false, output_pending_ = false;
  int64_t consumed_ = 0;
};

int64_t line_of_offset(std::string_view s, size_t offset) {
  return 1 + std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

}  // namespace

SourceKind source_kind(const std::string& path) {
  if (ends_with(path, ".jsonl.zst")) return SourceKind::jsonl_zst;
  if (ends_with(path, ".jsonl")) return SourceKind::jsonl;
  if (ends_with(path, ".txt")) return SourceKind::txt;
  throw std::invalid_argument(path + ": unsupported input type (expected .txt, .jsonl or .jsonl.zst)");
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  std::set<std::string> seen;
  auto add = [&](const std::string& f) {
    source_kind(f);  // throws for an unsupported type
    if (seen.insert(f).second) files.push_back(f);
  };
  for (const auto& in : inputs) {
    // A pattern is expanded here (not left to the shell) so quoted globs work and a pattern that
    // matches nothing is an error rather than a literal file name.
    if (in.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      int rc = ::glob(in.c_str(), 0, nullptr, &g);
      std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
      globfree(&g);
      if (rc == GLOB_NOMATCH || matches.empty()) throw std::runtime_error("no input file matches '" + in + "'");
      if (rc != 0) throw std::runtime_error("cannot expand input pattern '" + in + "'");
      std::sort(matches.begin(), matches.end());  // locale-independent order
      for (const auto& m : matches)
        if (!fs::is_directory(m)) add(m);
      continue;
    }
    std::error_code ec;
    auto st = fs::status(in, ec);
    if (ec || !fs::exists(st)) throw std::runtime_error("input not found: " + in);
    if (fs::is_directory(st)) {
      // Inside a directory, other files (READMEs, checksums) are skipped silently: only a file
      // named explicitly must have a supported type.
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(in))
        if (e.is_regular_file() && is_supported(e.path().string())) found.push_back(e.path().string());
      if (found.empty())
        throw std::runtime_error("input directory " + in + " contains no .txt, .jsonl or .jsonl.zst file");
      std::sort(found.begin(), found.end());
      for (const auto& f : found) add(f);
    } else {
      add(in);
    }
  }
  if (files.empty()) throw std::runtime_error("no input files given");
  return files;
}

// utfcpp's find_invalid follows the Unicode standard's well-formed UTF-8 (Table 3-7): overlong
// forms, surrogates, code points above U+10FFFF, stray or missing continuation bytes are invalid.
size_t find_invalid_utf8(std::string_view s) {
  auto bad = utf8::find_invalid(s.begin(), s.end());
  return bad == s.end() ? std::string_view::npos : static_cast<size_t>(bad - s.begin());
}

int64_t total_file_bytes(const std::vector<std::string>& files) {
  int64_t total = 0;
  for (const auto& f : files) {
    std::error_code ec;
    auto sz = fs::file_size(f, ec);
    if (!ec) total += static_cast<int64_t>(sz);
  }
  return total;
}

// --- DocumentReader ------------------------------------------------------------------------------

DocumentReader::DocumentReader(std::vector<std::string> files, bool skip_bad)
    : files_(std::move(files)), skip_bad_(skip_bad) {}

DocumentReader::~DocumentReader() = default;

int64_t DocumentReader::bytes_read() const { return bytes_done_ + (src_ ? src_->bytes_consumed() : 0); }

// The one place that decides between stopping and skipping, so every kind of bad input is
// handled alike and counted once.
void DocumentReader::bad(const std::string& where, const std::string& what) {
  if (!skip_bad_) throw std::runtime_error(where + ": " + what + " (pass --skip-bad to skip such records)");
  ++stats_.bad_skipped;
  ++bad_in_file_;
}

bool DocumentReader::open_next_file() {
  if (file_index_ >= files_.size()) return false;
  current_ = files_[file_index_++];
  kind_ = source_kind(current_);
  if (kind_ == SourceKind::jsonl_zst) src_ = std::make_unique<ZstdSource>(current_);
  else src_ = std::make_unique<PlainSource>(current_);
  line_ = 0;
  docs_in_file_ = 0;
  bad_in_file_ = 0;
  carry_.clear();
  block_ = {};
  eof_ = false;
  return true;
}

// A file that yields nothing is almost always a mistake (wrong file, wrong format), so it is
// reported, unless its records were already reported one by one as bad.
void DocumentReader::finish_file() {
  bytes_done_ += src_->bytes_consumed();
  src_.reset();
  if (docs_in_file_ == 0 && bad_in_file_ == 0) bad(current_, "contains no documents (empty input)");
}

bool DocumentReader::next(Document& doc) {
  for (;;) {
    if (!src_ && !open_next_file()) return false;
    bool got = kind_ == SourceKind::txt ? read_txt(doc) : next_jsonl(doc);
    if (got) {
      ++stats_.documents;
      ++docs_in_file_;
      return true;
    }
    finish_file();
  }
}

// .txt: the whole file is one document, validated as a whole (the error gives its line).
bool DocumentReader::read_txt(Document& doc) {
  if (eof_) return false;
  eof_ = true;
  doc.text.clear();
  for (auto b = src_->next_block(); !b.empty(); b = src_->next_block()) doc.text.append(b);
  if (doc.text.empty()) return false;  // finish_file reports the empty file
  size_t badpos = find_invalid_utf8(doc.text);
  if (badpos != std::string_view::npos) {
    bad(current_ + ":" + std::to_string(line_of_offset(doc.text, badpos)),
        "invalid UTF-8 at byte offset " + std::to_string(badpos));
    return false;
  }
  doc.file = current_;
  doc.line = 0;
  return true;
}

// Splits the decoded byte stream into lines; a line may span any number of blocks (a Pile record
// can be megabytes), so the unfinished part is carried over in carry_.
bool DocumentReader::next_line(std::string& line) {
  for (;;) {
    if (block_.empty()) {
      if (eof_) {
        if (carry_.empty()) return false;
        line.swap(carry_);
        carry_.clear();
        return true;
      }
      block_ = src_->next_block();
      if (block_.empty()) eof_ = true;
      continue;
    }
    size_t nl = block_.find('\n');
    if (nl == std::string_view::npos) {
      carry_.append(block_);
      block_ = {};
      continue;
    }
    carry_.append(block_.substr(0, nl));
    block_.remove_prefix(nl + 1);
    line.swap(carry_);
    carry_.clear();
    return true;
  }
}

bool DocumentReader::next_jsonl(Document& doc) {
  while (next_line(line_buf_)) {
    ++line_;
    std::string_view line = line_buf_;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
    std::string where = current_ + ":" + std::to_string(line_);
    // Checked before parsing: the JSON parser would also refuse it, but with a vaguer message.
    size_t badpos = find_invalid_utf8(line);
    if (badpos != std::string_view::npos) {
      bad(where, "invalid UTF-8 at byte " + std::to_string(badpos + 1) + " of the line");
      continue;
    }
    nlohmann::json rec;
    try {
      rec = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      bad(where, "malformed JSON: " + short_json_error(e.what()));
      continue;
    }
    if (!rec.is_object()) { bad(where, "expected a JSON object with a \"text\" field"); continue; }
    auto it = rec.find("text");
    if (it == rec.end()) { bad(where, "record has no \"text\" field"); continue; }
    if (!it->is_string()) { bad(where, "the \"text\" field is not a string"); continue; }
    auto& text = it->get_ref<std::string&>();  // moved out below: no copy of a large document
    if (text.empty()) { ++stats_.empty_skipped; continue; }
    doc.text = std::move(text);
    doc.file = current_;
    doc.line = line_;
    return true;
  }
  return false;
}

}  // namespace ttt
