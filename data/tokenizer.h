// data/tokenizer.h — a sentencepiece model: load, encode/decode, identity, and training.
//
// Any sentencepiece `.model` loads (e.g. the Llama-2 tokenizer, 32000 pieces). The identity of a
// tokenizer is the SHA-256 of its .model bytes; shards record it so that training on data made
// with a different tokenizer is caught (see dataset.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece { class SentencePieceProcessor; }

namespace ttt {

class Tokenizer {
 public:
  // Reads and parses a .model file; throws std::runtime_error naming the file when it is missing
  // or is not a sentencepiece model.
  static Tokenizer load(const std::string& path);
  // Parses a .model held in memory (e.g. the copy stored in a checkpoint); `name` stands for the
  // file in messages.
  static Tokenizer from_bytes(const std::string& bytes, const std::string& name);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Thread-safe (sentencepiece's Encode/Decode are const). Throws naming `what` on failure.
  std::vector<int> encode(std::string_view text) const;
  std::string decode(const std::vector<int>& ids) const;
  std::string decode(const int64_t* ids, size_t n) const;

  int64_t vocab_size() const;
  int eos_id() const;  // -1 when the model defines none (prepare then refuses it)
  int bos_id() const;
  std::string piece(int id) const;
  const std::string& sha256() const { return sha256_; }
  const std::string& path() const { return path_; }

 private:
  Tokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string sha256_;
  std::string path_;
};

// Detokenizes a stream of ids as they arrive (generation) in amortized O(1) per token, and
// returns only whole UTF-8 characters: sentencepiece joins pieces correctly only in context (the
// leading space of a word, a character split over several byte-fallback pieces), so each call
// decodes the ids since the last emitted text plus the piece before it, and holds back text that
// ends in an incomplete character (U+FFFD) until a later id completes it. The concatenation of
// every push() and finish() equals decode() of all ids at once. (The prefix/read offsets follow
// Hugging Face text-generation-inference's incremental decoding.)
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
  // Appends `id`; returns the text that became final ("" while a character is incomplete).
  std::string push(int64_t id);
  // The text still held back (an incomplete character at the end, shown as U+FFFD).
  std::string finish();

 private:
  const Tokenizer* tok_;
  std::vector<int64_t> ids_;
  size_t prefix_ = 0;  // ids_[prefix_, read_) decode to the text already returned, as context
  size_t read_ = 0;    // ids_[read_, end) are not returned yet
};

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;     // files/globs/directories, as for `data prepare`
  int64_t vocab_size = 32000;
  std::string out;                     // the .model path to write
  double character_coverage = 0.9995;  // sentencepiece's default for non-CJK text
  int64_t max_sentences = 2000000;     // sentencepiece samples this many lines when there are more
  int threads = 1;
  bool overwrite = false;
  bool skip_bad = false;
  bool quiet = true;                   // silence sentencepiece's own log lines
};

// Trains a BPE model with byte fallback (ids: unk 0, bos 1, eos 2 as Llama) on the documents of
// the inputs, split into lines, and writes it to opt.out (via a temporary name). Returns the
// number of lines fed to the trainer.
int64_t train_tokenizer(const TokenizerTrainOptions& opt);

}  // namespace ttt
