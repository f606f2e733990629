// trainer/text_units.h — the bytes and words behind scored tokens, for the tokenizer-independent
// numbers lm-eval reports beside token perplexity:
//   bits per byte   = Σ NLL / (ln 2 · bytes)         word perplexity = exp(Σ NLL / words)
// where the sums run over the scored target tokens that are text (not EOS or another control
// id: the end of a document is no byte of its text, as lm-eval scores a document without it).
//
// Bytes: a token's bytes are its piece with "▁" as a space and byte-fallback pieces as their byte
// (Tokenizer::token_bytes); with sentencepiece's dummy prefix, the space the tokenizer put before a
// document's first token is not text, so a token right after a control id loses its leading space.
// Words: maximal runs of non-whitespace bytes (ASCII whitespace, as Python's \s on ASCII); a word
// counts once, at the token holding its first byte, so windows that split a word count it once.
// lm-eval counts len(re.split(r"\s+", doc)), which differs by one for a document that starts or
// ends with whitespace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

class Tokenizer;

struct TokenText {
  std::vector<std::string> bytes;  // per token id; "" = control id (a document boundary)
  bool dummy_prefix = false;       // the tokenizer puts a space before each encoded text

  // Ids in [tokenizer vocabulary, vocab_size) (a padded model vocabulary) count as control ids.
  static TokenText from_tokenizer(const Tokenizer& tok, int64_t vocab_size);
};

struct TextUnits {
  int64_t tokens = 0;  // scored text tokens
  int64_t bytes = 0;
  int64_t words = 0;
  double nll = 0;      // Σ of their losses (nats)

  void add(const TextUnits& o);
  double bits_per_byte() const;    // NaN when no byte was scored
  double word_perplexity() const;  // NaN when no word was scored
};

// Adds the targets of one window: `row` holds T+1 ids (row[0] is read, never scored),
// losses[i] is the loss of predicting row[i+1].
void add_window_text_units(const TokenText& text, const int64_t* row, const double* losses, int64_t T,
                           TextUnits& acc);

}  // namespace ttt
