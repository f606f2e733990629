// data/prepare.cpp — see prepare.h.
#include "data/prepare.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <deque>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>

#include "data/progress.h"
#include "data/shard_writer.h"
#include "data/text_sources.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

constexpr size_t kChunkDocs = 4096;
constexpr size_t kMaxSourcesJson = 32 << 10;  // stay well below HDF5's 64 KiB compact-attribute limit

// Files `data prepare` writes: only these may be replaced by --overwrite.
bool is_prepare_output(const std::string& name) {
  static const std::regex re("(train|val)_[0-9]{5,}\\.h5|tokenizer\\.model");
  return std::regex_match(name, re);
}

// Refuses to touch an existing directory unless allowed, and never one holding foreign files.
void check_out_dir(const fs::path& out, bool overwrite) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out)) throw std::runtime_error("--out " + out.string() + " exists and is not a directory");
  bool empty = fs::directory_iterator(out) == fs::directory_iterator();
  if (empty) return;
  if (!overwrite)
    throw std::runtime_error("--out " + out.string() + " already exists and is not empty; pass --overwrite to replace it");
  for (const auto& e : fs::directory_iterator(out))
    if (!e.is_regular_file() || !is_prepare_output(e.path().filename().string()))
      throw std::runtime_error("refusing to overwrite " + out.string() + ": it holds " + e.path().filename().string() +
                               ", which `ttt data prepare` did not write");
}

// Leftovers of a `data prepare` that was killed (kill -9, power loss) before it could clean up:
// .<name>.tmp-<pid> (an unfinished output) is removed; .<name>.old-<pid> (the previous output,
// moved aside just before the new one was moved in) is put back when <name> is missing, removed
// otherwise. Only entries of processes that no longer run are touched.
void clean_stale_leftovers(const fs::path& out) {
  static const std::regex re("\\.(.+)\\.(tmp|old)-([0-9]+)");
  std::error_code ec;
  const fs::path parent = out.parent_path();
  if (!fs::is_directory(parent, ec)) return;
  std::vector<std::pair<std::string, fs::path>> stale;  // (kind, path)
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, re) || m[1].str() != out.filename().string()) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(m[3].str()));
    if (pid == ::getpid() || !(::kill(pid, 0) != 0 && errno == ESRCH)) continue;  // still running
    stale.emplace_back(m[2].str(), e.path());
  }
  for (const auto& [kind, path] : stale) {
    if (kind == "old" && !fs::exists(out, ec)) {
      fs::rename(path, out, ec);
      if (!ec) {
        spdlog::warn("restored {} from {}, left by an interrupted `data prepare`", out.string(), path.string());
        continue;
      }
    }
    fs::remove_all(path, ec);
    if (!ec) spdlog::warn("removed {}, left by an interrupted `data prepare`", path.string());
  }
}

int64_t choose_val_docs(const PrepareOptions& opt, int64_t docs) {
  if (opt.val_docs >= 0 && opt.val_fraction >= 0) throw std::invalid_argument("give --val-docs or --val-fraction, not both");
  int64_t v;
  bool explicit_request = opt.val_docs >= 0 || opt.val_fraction >= 0;
  if (opt.val_docs >= 0) {
    v = opt.val_docs;
  } else {
    double f = opt.val_fraction >= 0 ? opt.val_fraction : kDefaultValFraction;
    if (f >= 1) throw std::invalid_argument("--val-fraction must be < 1");
    v = f > 0 ? std::max<int64_t>(1, std::llround(f * double(docs))) : 0;
    if (!explicit_request && docs < 2) v = 0;  // a one-document corpus gets no default val split
  }
  if (v >= docs && v > 0)
    throw std::invalid_argument("the validation split would take " + std::to_string(v) + " of the " + std::to_string(docs) +
                                " documents, leaving none for training");
  return v;
}

std::string sources_json(const std::vector<std::string>& files) {
  nlohmann::json list = nlohmann::json::array();
  size_t bytes = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    bytes += files[i].size() + 4;
    if (bytes > kMaxSourcesJson) {
      list.push_back("... and " + std::to_string(files.size() - i) + " more files");
      break;
    }
    list.push_back(files[i]);
  }
  return list.dump();
}

// A piece of work for one thread: consecutive documents, tokenized together.
struct Chunk {
  int64_t first_doc = 0;
  std::vector<std::string> texts;
  std::vector<std::string> where;  // file:line, for error messages
  size_t bytes = 0;
};

std::vector<std::vector<int>> tokenize_chunk(const Tokenizer& tok, const Chunk& c, int eos) {
  std::vector<std::vector<int>> out(c.texts.size());
  for (size_t i = 0; i < c.texts.size(); ++i) {
    try {
      out[i] = tok.encode(c.texts[i]);
    } catch (const std::exception& e) {
      throw std::runtime_error(c.where[i] + ": " + e.what());
    }
    out[i].push_back(eos);
  }
  return out;
}

// Removes the temporary directory unless the run committed it.
struct TempDirGuard {
  fs::path path;
  bool keep = false;
  ~TempDirGuard() {
    std::error_code ec;
    if (!keep && !path.empty()) fs::remove_all(path, ec);
  }
};

}  // namespace

bool is_val_doc(int64_t i, int64_t num_docs, int64_t num_val) {
  using i128 = __int128;
  return i128(i + 1) * num_val / num_docs > i128(i) * num_val / num_docs;
}

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
  if (opt.out_dir.empty()) throw std::invalid_argument("data prepare: --out is required");
  if (opt.threads < 1) throw std::invalid_argument("data prepare: --threads must be >= 1");
  if (opt.shard_tokens < 1) throw std::invalid_argument("data prepare: --shard-tokens must be >= 1");
  fs::path out = fs::absolute(fs::path(opt.out_dir)).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" -> "dir"
  clean_stale_leftovers(out);
  check_out_dir(out, opt.overwrite);

  // Everything that can be checked cheaply is checked before the long passes begin.
  Tokenizer tok = Tokenizer::load(opt.tokenizer);
  if (tok.eos_id() < 0) throw std::runtime_error("tokenizer " + opt.tokenizer + " defines no EOS id (</s>)");
  token_type_for_vocab(tok.vocab_size());  // refuses a vocabulary beyond uint32
  auto files = expand_inputs(opt.inputs);

  PrepareSummary sum;
  sum.input_bytes = total_file_bytes(files);

  // Pass 1: read and validate everything, count documents.
  {
    Progress prog("scanning", sum.input_bytes, opt.progress);
    DocumentReader reader(files, opt.skip_bad);
    Document doc;
    while (reader.next(doc)) {
      sum.text_bytes += static_cast<int64_t>(doc.text.size());
      prog.update(reader.bytes_read(), reader.stats().documents, -1);
    }
    prog.finish();
    sum.docs = reader.stats().documents;
    sum.bad_skipped = reader.stats().bad_skipped;
    sum.empty_skipped = reader.stats().empty_skipped;
    sum.scan_seconds = prog.elapsed_s();
  }
  if (sum.docs == 0) throw std::runtime_error("data prepare: the inputs contain no documents");
  const int64_t num_val = choose_val_docs(opt, sum.docs);

  // Pass 2: tokenize in parallel, write in order into a temporary directory. It sits next to
  // the output (same file system), so the final rename is atomic.
  fs::create_directories(out.parent_path());
  TempDirGuard tmp{out.parent_path() / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()))};
  fs::remove_all(tmp.path);
  fs::create_directory(tmp.path);

  ShardMeta meta;
  meta.vocab_size = tok.vocab_size();
  meta.eos_id = tok.eos_id();
  meta.tokenizer_sha256 = tok.sha256();
  meta.tokenizer_file = fs::path(opt.tokenizer).filename().string();
  meta.sources_json = sources_json(files);
  ShardMeta val_meta = meta;
  meta.split = "train";
  val_meta.split = "val";
  ShardWriter train(tmp.path.string(), meta, opt.shard_tokens);
  ShardWriter val(tmp.path.string(), val_meta, opt.shard_tokens);

  // Pass 2 reports the text written so far against the total text counted in pass 1 (bytes read
  // would run ahead of the output by the chunks in flight).
  Progress prog("tokenizing", sum.text_bytes, opt.progress);
  int64_t text_written = 0;
  DocumentReader reader(files, opt.skip_bad);
  struct InFlight {
    int64_t first_doc, text_bytes;
    std::future<std::vector<std::vector<int>>> tokens;
  };
  std::deque<InFlight> in_flight;
  const int eos = tok.eos_id();
  auto write_front = [&] {
    auto [first, bytes, fut] = std::move(in_flight.front());
    in_flight.pop_front();
    auto docs = fut.get();  // rethrows a worker's exception
    text_written += bytes;
    for (size_t i = 0; i < docs.size(); ++i)
      (is_val_doc(first + static_cast<int64_t>(i), sum.docs, num_val) ? val : train).add_document(docs[i]);
    prog.update(text_written, train.num_docs() + val.num_docs(), train.num_tokens() + val.num_tokens());
  };
  // The main thread reads documents into chunks and writes finished chunks; workers only encode.
  // The FIFO of futures gives the document order back, whichever worker finishes first.
  Chunk chunk;
  int64_t next_doc = 0;
  auto submit = [&] {
    if (chunk.texts.empty()) return;
    // At most `threads` chunks are tokenized at once; the oldest is written before a new one starts.
    while (static_cast<int>(in_flight.size()) >= opt.threads) write_front();
    auto work = std::make_shared<Chunk>(std::move(chunk));
    in_flight.push_back({work->first_doc, static_cast<int64_t>(work->bytes),
                         std::async(std::launch::async, [&tok, work, eos] { return tokenize_chunk(tok, *work, eos); })});
    chunk = Chunk{};
    chunk.first_doc = next_doc;
  };
  try {
    Document doc;
    while (reader.next(doc)) {
      chunk.bytes += doc.text.size();
      chunk.where.push_back(doc.line > 0 ? doc.file + ":" + std::to_string(doc.line) : doc.file);
      chunk.texts.push_back(std::move(doc.text));
      ++next_doc;
      if (static_cast<int64_t>(chunk.bytes) >= opt.chunk_bytes || chunk.texts.size() >= kChunkDocs) submit();
    }
    submit();
    while (!in_flight.empty()) write_front();
  } catch (...) {
    for (auto& f : in_flight) f.tokens.wait();  // workers hold references to `tok`
    throw;
  }
  // The split was computed from pass 1's count; if the files changed since, it would be wrong.
  if (next_doc != sum.docs)
    throw std::runtime_error("data prepare: the inputs changed while being read (" + std::to_string(sum.docs) +
                             " documents in the first pass, " + std::to_string(next_doc) + " in the second)");
  auto train_files = train.finish();
  auto val_files = val.finish();
  prog.finish();
  sum.tokenize_seconds = prog.elapsed_s();
  sum.train_docs = train.num_docs();
  sum.val_docs = val.num_docs();
  sum.train_tokens = train.num_tokens();
  sum.val_tokens = val.num_tokens();
  fs::copy_file(opt.tokenizer, tmp.path / "tokenizer.model");

  // Commit: move any previous output aside, move the new one in, then delete the old one.
  fs::path old;
  if (fs::exists(out)) {
    if (fs::directory_iterator(out) == fs::directory_iterator()) {
      fs::remove(out);
    } else {
      old = out.parent_path() / ("." + out.filename().string() + ".old-" + std::to_string(::getpid()));
      fs::rename(out, old);
    }
  }
  fs::rename(tmp.path, out);
  tmp.keep = true;
  if (!old.empty()) fs::remove_all(old);
  for (const auto* list : {&train_files, &val_files})
    for (const auto& f : *list) sum.files.push_back((out / fs::path(f).filename()).string());
  return sum;
}

}  // namespace ttt
