// data/prepare.h — `ttt data prepare`: text files -> tokenized HDF5 shards (train and val).
//
// Two passes over the inputs. The first reads and validates every document (bad input is reported
// before anything is written) and counts them, which fixes the train/val split. The second
// tokenizes chunks of documents on `threads` worker threads and writes them in document order, so
// the output is byte-for-byte the same whatever the thread count.
//
// Split: with D documents and V validation documents, document i (0-based, in input order) goes
// to val when floor((i+1)·V/D) > floor(i·V/D): V documents spread evenly over the corpus (the
// last document is always one of them). Deterministic, no seed.
//
// Safety: shards are written into a hidden temporary directory next to `out_dir` and renamed into
// place only when complete; an existing non-empty `out_dir` is refused unless `overwrite`, and even
// then only if it contains nothing but files `data prepare` writes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files, globs, directories
  std::string tokenizer;            // sentencepiece .model
  std::string out_dir;
  int64_t val_docs = -1;            // exactly this many validation documents, or
  double val_fraction = -1;         // this fraction of the documents (rounded, at least 1);
                                    // neither given: kDefaultValFraction
  int64_t shard_tokens = int64_t(1) << 26;
  int threads = 1;
  int64_t chunk_bytes = 1 << 20;    // text per tokenization task (tests make it small)
  bool overwrite = false;
  bool skip_bad = false;
  bool progress = true;             // progress line / periodic log lines on stderr
};

inline constexpr double kDefaultValFraction = 0.0005;  // the official TTT code holds out 0.05%

struct PrepareSummary {
  int64_t docs = 0, train_docs = 0, val_docs = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t input_bytes = 0;          // size of the input files
  int64_t text_bytes = 0;           // text of the documents
  int64_t bad_skipped = 0, empty_skipped = 0;
  double scan_seconds = 0, tokenize_seconds = 0;  // pass 1 (read + validate), pass 2 (tokenize + write)
  std::vector<std::string> files;                 // the shards, final paths
  int64_t tokens() const { return train_tokens + val_tokens; }
};

PrepareSummary prepare_dataset(const PrepareOptions& opt);

// Which documents are validation documents (the rule above); exposed for tests.
bool is_val_doc(int64_t i, int64_t num_docs, int64_t num_val);

}  // namespace ttt
