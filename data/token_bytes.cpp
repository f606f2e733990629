// data/token_bytes.cpp — Tokenizer::token_bytes and add_dummy_prefix (data/tokenizer.h): the text
// each token id stands for, so evaluation can count the bytes and words it scored (bits per byte,
// per-word perplexity) without decoding every window.
#include <sentencepiece_processor.h>

#include <stdexcept>
#include <string>

#include "data/tokenizer.h"

namespace ttt {

std::string Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= sp_->GetPieceSize())
    throw std::out_of_range("tokenizer " + path_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(sp_->GetPieceSize()));
  if (sp_->IsControl(id) || sp_->IsUnknown(id) || sp_->IsUnused(id)) return "";
  const std::string p = sp_->IdToPiece(id);
  if (sp_->IsByte(id)) return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));  // "<0xNN>"
  static const std::string kSpace = "\xe2\x96\x81";  // U+2581, sentencepiece's whitespace marker
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

bool Tokenizer::add_dummy_prefix() const {
  const std::vector<int> ids = encode("a");
  return !ids.empty() && token_bytes(ids.front()).rfind(' ', 0) == 0;
}

}  // namespace ttt
