// trainer/text_units.cpp — see text_units.h.
#include "trainer/text_units.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "data/tokenizer.h"

namespace ttt {

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

const std::string& bytes_of(const TokenText& text, int64_t id) {
  if (id < 0 || id >= static_cast<int64_t>(text.bytes.size()))
    throw std::out_of_range("text units: token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(text.bytes.size()));
  return text.bytes[static_cast<size_t>(id)];
}

}  // namespace

TokenText TokenText::from_tokenizer(const Tokenizer& tok, int64_t vocab_size) {
  if (vocab_size < tok.vocab_size())
    throw std::invalid_argument("text units: vocabulary " + std::to_string(vocab_size) + " is smaller than the tokenizer's " +
                                std::to_string(tok.vocab_size()));
  TokenText t;
  t.bytes.resize(static_cast<size_t>(vocab_size));
  for (int64_t id = 0; id < tok.vocab_size(); ++id) t.bytes[static_cast<size_t>(id)] = tok.token_bytes(static_cast<int>(id));
  t.dummy_prefix = tok.add_dummy_prefix();
  return t;
}

void TextUnits::add(const TextUnits& o) {
  tokens += o.tokens;
  bytes += o.bytes;
  words += o.words;
  nll += o.nll;
}

double TextUnits::bits_per_byte() const {
  return bytes > 0 ? nll / (std::log(2.0) * static_cast<double>(bytes)) : std::numeric_limits<double>::quiet_NaN();
}

double TextUnits::word_perplexity() const {
  return words > 0 ? std::exp(nll / static_cast<double>(words)) : std::numeric_limits<double>::quiet_NaN();
}

void add_window_text_units(const TokenText& text, const int64_t* row, const double* losses, int64_t T,
                           TextUnits& acc) {
  // Whether the byte before the current one ends a word: true at a document boundary, else
  // whether the previous token's last byte is whitespace.
  const std::string& first = bytes_of(text, row[0]);
  bool after_space = first.empty() || is_space(static_cast<unsigned char>(first.back()));
  bool after_boundary = first.empty();
  for (int64_t i = 1; i <= T; ++i) {
    const std::string& b = bytes_of(text, row[i]);
    if (b.empty()) {  // EOS (or another control id): not text
      after_space = after_boundary = true;
      continue;
    }
    size_t begin = (after_boundary && text.dummy_prefix && b[0] == ' ') ? 1 : 0;
    acc.tokens += 1;
    acc.nll += losses[i - 1];
    acc.bytes += static_cast<int64_t>(b.size() - begin);
    for (size_t k = begin; k < b.size(); ++k) {
      const bool space = is_space(static_cast<unsigned char>(b[k]));
      if (!space && after_space) acc.words += 1;
      after_space = space;
    }
    after_boundary = false;
  }
}

}  // namespace ttt
