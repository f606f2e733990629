// data/tokenizer.cpp — the sentencepiece wrapper and `ttt tokenizer train`.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "data/sha256.h"
#include "data/text_sources.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

std::string read_file_bytes(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot open ") + what + " " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw std::runtime_error(std::string("error reading ") + what + " " + path);
  return ss.str();
}

}  // namespace

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& path) {
  // The checksum and the model come from the same bytes, read once.
  return from_bytes(read_file_bytes(path, "tokenizer model"), path);
}

Tokenizer Tokenizer::from_bytes(const std::string& bytes, const std::string& name) {
  Tokenizer t;
  t.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto st = t.sp_->LoadFromSerializedProto(bytes);
  if (!st.ok() || t.sp_->GetPieceSize() <= 0)
    throw std::runtime_error("tokenizer " + name + " is not a sentencepiece model (" + st.ToString() + ")");
  t.sha256_ = sha256_hex(bytes);
  t.path_ = name;
  return t;
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto st = sp_->Encode(absl::string_view(text.data(), text.size()), &ids);
  if (!st.ok()) throw std::runtime_error("tokenizer " + path_ + ": encode failed: " + st.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  for (int id : ids)
    if (id < 0 || id >= sp_->GetPieceSize())
      throw std::out_of_range("tokenizer " + path_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(sp_->GetPieceSize()));
  std::string out;
  auto st = sp_->Decode(ids, &out);
  if (!st.ok()) throw std::runtime_error("tokenizer " + path_ + ": decode failed: " + st.ToString());
  return out;
}

std::string Tokenizer::decode(const int64_t* ids, size_t n) const {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size())
      throw std::out_of_range("tokenizer " + path_ + ": token id " + std::to_string(ids[i]) +
                              " is outside the vocabulary of " + std::to_string(vocab_size()));
    v[i] = static_cast<int>(ids[i]);
  }
  return decode(v);
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::string StreamDecoder::push(int64_t id) {
  ids_.push_back(id);
  const std::string before = tok_->decode(ids_.data() + prefix_, read_ - prefix_);
  const std::string now = tok_->decode(ids_.data() + prefix_, ids_.size() - prefix_);
  // sentencepiece renders the bytes of an unfinished character as U+FFFD (EF BF BD); wait for the
  // id that completes it. A U+FFFD that stays (invalid bytes) goes out with the next whole text.
  static const std::string kReplacement = "\xEF\xBF\xBD";
  const bool incomplete = now.size() >= 3 && now.compare(now.size() - 3, 3, kReplacement) == 0;
  if (incomplete || now.size() <= before.size() || now.compare(0, before.size(), before) != 0) return "";
  prefix_ = read_;
  read_ = ids_.size();
  return now.substr(before.size());
}

std::string StreamDecoder::finish() {
  const std::string before = tok_->decode(ids_.data() + prefix_, read_ - prefix_);
  const std::string now = tok_->decode(ids_.data() + prefix_, ids_.size() - prefix_);
  prefix_ = read_ = ids_.size();
  return now.size() > before.size() ? now.substr(before.size()) : "";
}
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
std::string Tokenizer::piece(int id) const { return sp_->IdToPiece(id); }

// --- training ----------------------------------------------------------------------------------

namespace {

std::string format_coverage(double c) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", c);
  return buf;
}

// sentencepiece skips training lines longer than max_sentence_length bytes (4192 by default), and
// a jsonl document is often one long line (e.g. a whole speech), so long lines are cut at a space
// (or, failing that, at a UTF-8 character boundary) into pieces of at most this many bytes.
constexpr size_t kMaxTrainLine = 4000;

// Feeds the lines of the input documents to the sentencepiece trainer. Errors from the inputs are
// kept and rethrown after Train returns, rather than thrown through the library.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  LineIterator(std::vector<std::string> files, bool skip_bad) : reader_(std::move(files), skip_bad) { advance(); }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override {
    if (error_) return sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, "input error");
    return sentencepiece::util::Status();
  }
  std::exception_ptr error() const { return error_; }
  int64_t lines() const { return lines_; }

 private:
  void advance() {
    try {
      for (;;) {
        if (pos_ >= doc_.text.size()) {
          if (!reader_.next(doc_)) { done_ = true; return; }
          pos_ = 0;
        }
        std::string_view rest = std::string_view(doc_.text).substr(pos_);
        size_t len = std::min(rest.find('\n'), rest.size());
        size_t skip = len < rest.size() ? 1 : 0;  // the newline itself
        if (len > kMaxTrainLine) {
          size_t cut = rest.substr(0, kMaxTrainLine).rfind(' ');
          if (cut == std::string_view::npos || cut == 0) {
            cut = kMaxTrainLine;
            while (cut > 0 && (static_cast<unsigned char>(rest[cut]) & 0xC0) == 0x80) --cut;  // no mid-character cut
          }
          len = cut;
          skip = 0;
        }
        pos_ += len + skip;
        if (len == 0) continue;
        value_.assign(rest.substr(0, len));
        ++lines_;
        return;
      }
    } catch (...) {
      error_ = std::current_exception();
      done_ = true;
    }
  }

  DocumentReader reader_;
  Document doc_;
  size_t pos_ = 0;
  std::string value_;
  bool done_ = false;
  int64_t lines_ = 0;
  std::exception_ptr error_;
};

// sentencepiece's messages name its own flags; the one users hit most (a vocabulary smaller than
// the characters the input needs) is said again in terms of our options.
std::string explain_train_failure(const std::string& message, const TokenizerTrainOptions& opt) {
  if (message.find("required_chars") == std::string::npos || message.find("vs") == std::string::npos)
    return "sentencepiece failed: " + message;
  // "... Vocabulary size is smaller than required_chars. 300 vs 355. Increase vocab_size or ..."
  long long vocab = 0, needed = 0;
  const size_t at = message.find(". ", message.find("required_chars"));
  if (at == std::string::npos || std::sscanf(message.c_str() + at + 2, "%lld vs %lld", &vocab, &needed) != 2)
    return "sentencepiece failed: " + message;
  return "--vocab-size " + std::to_string(opt.vocab_size) + " is too small: the input's characters (at --character-coverage " +
         format_coverage(opt.character_coverage) + ") and the special pieces need " + std::to_string(needed) +
         "; raise --vocab-size to at least " + std::to_string(needed) + " or lower --character-coverage";
}

}  // namespace

int64_t train_tokenizer(const TokenizerTrainOptions& opt) {
  if (opt.out.empty()) throw std::invalid_argument("tokenizer train: --out is required");
  if (opt.vocab_size < 260)
    throw std::invalid_argument("tokenizer train: --vocab-size " + std::to_string(opt.vocab_size) +
                                " is too small (byte fallback alone needs 256 byte pieces + 3 special ids)");
  if (fs::exists(opt.out) && !opt.overwrite)
    throw std::runtime_error("tokenizer train: " + opt.out + " exists; pass --overwrite to replace it");
  auto files = expand_inputs(opt.inputs);

  // Llama-like settings: BPE, byte fallback (so any UTF-8 text round-trips), no text normalisation
  // and whitespace kept as is (decode(encode(x)) == x), digits split, ids unk 0 / bos 1 / eos 2.
  std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"input_sentence_size", std::to_string(opt.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(std::max(1, opt.threads))},
      {"unk_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"pad_id", "-1"},
      {"minloglevel", opt.quiet ? "2" : "0"},
  };
  LineIterator it(files, opt.skip_bad);
  std::string model;
  auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (it.error()) std::rethrow_exception(it.error());
  if (!st.ok()) throw std::runtime_error("tokenizer train: " + explain_train_failure(st.ToString(), opt));
  if (it.lines() == 0) throw std::runtime_error("tokenizer train: the inputs contain no text");

  // Write to a temporary name and rename, so a crash never leaves a half-written model at opt.out.
  std::string tmp = opt.out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("tokenizer train: cannot write " + tmp);
    f.write(model.data(), static_cast<std::streamsize>(model.size()));
    f.flush();
    if (!f) { std::remove(tmp.c_str()); throw std::runtime_error("tokenizer train: error writing " + tmp); }
  }
  fs::rename(tmp, opt.out);
  return it.lines();
}

}  // namespace ttt
