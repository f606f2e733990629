// trainer/niah.h — single-needle retrieval prompts (RULER's S-NIAH; Hsieh et al. 2024, "RULER:
// What's the Real Context Size of Your Long-Context Language Models?", NVIDIA/RULER
// scripts/data/synthetic/niah.py), generated from token shards and a seed.
//
// A sample hides one needle, "One of the special magic {numbers|words|uuids} for {key} is:
// {value}.", in a haystack and asks for the value with RULER's single-needle template:
//   A special magic number is hidden within the following text. Make sure to memorize it. I will
//   quiz you about the number afterwards.\n{haystack with needle}\nWhat is the special magic number
//   for {key} mentioned in the provided text? The special magic number for {key} mentioned in the
//   provided text is
// ("number" becomes "word" or "uuid" for those value types). The model greedily generates up to
// `gen` tokens; the sample is correct when the value appears in the generated text, case
// ignored (RULER's string_match_all with one reference).
//
// Tasks (RULER's scripts/synthetic.yaml): single_1 = noise haystack, word key, number value
// (pass-key retrieval); single_2 = real-text haystack, word key, number value; single_3 =
// real-text haystack, word key, UUID value. Any other combination is written HAYSTACK/KEY/VALUE,
// e.g. noise/numbers/words.
//   noise  RULER's repeated noise, "The grass is green. The sky is blue. The sun is yellow. Here we
//          go. There and back again." n times, one per line; the needle is its own line.
//   text   RULER uses Paul Graham's essays; here, the text of the documents of a shard split
//          (decoded with the tokenizer), whitespace collapsed to single spaces as RULER does,
//          from a document picked by the seed onwards (cycling); the needle goes in at a
//          sentence boundary.
// Keys and values: 7-digit numbers, adjective-noun words (RULER draws them from the wonderwords
// lists; here from our own lists of common English words), UUID-4 strings.
//
// Depth d% puts the needle before sentence floor(n_sentences · d / 100) of the haystack (noise:
// before line floor(n · d / 100)); RULER samples the depth of each sample from 40 depths (noise: a
// random line), here the depth is the grid's.
// Length: the haystack is the longest (n words of text, n noise lines) for which 1 + prompt + gen
// tokens fit the context (RULER's binary search: prompt + generated tokens <= max_seq_length).
// Each sample is exactly context − gen tokens: the prompt, preceded by EOS (the document separator
// the model was trained with) and, to fill what the haystack's granularity leaves over, by the
// last tokens of the document before a random one of the split, as packed training data would
// precede a document. So every sample of a context has the same length and batches need no
// padding.
// Samples are a pure function of (seed, task, context, depth, index) and the data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ttt {

class Tokenizer;
class TokenDataset;

enum class NiahHaystack { noise, text };
enum class NiahItem { words, numbers, uuids };

struct NiahTask {
  std::string name;  // "single_1", or HAYSTACK/KEY/VALUE
  NiahHaystack haystack = NiahHaystack::noise;
  NiahItem key = NiahItem::words, value = NiahItem::numbers;
};

// Comma-separated task names (above). Throws naming --niah-tasks on anything else.
std::vector<NiahTask> parse_niah_tasks(const std::string& spec);
const char* niah_haystack_name(NiahHaystack h);
const char* niah_item_name(NiahItem i);  // "words", "numbers", "uuids" (RULER's type names)

// RULER's texts, for one key and value (exposed for tests).
std::string niah_needle(NiahItem value_type, const std::string& key, const std::string& value);
std::string niah_prompt(NiahItem value_type, const std::string& haystack_with_needle, const std::string& key);
extern const char* const kNiahNoise;  // one line of the noise haystack

// RULER's metric for one sample: the value occurs in the prediction, case ignored.
bool niah_correct(const std::string& prediction, const std::string& value);

// Splits text (single spaces) after '.', '!' or '?' (and closing quotes or brackets) followed by a
// space; joining the pieces with " " gives the text back.
std::vector<std::string> split_sentences(const std::string& text);

struct NiahSample {
  std::string task;
  int64_t context = 0, depth = 0, index = 0;
  std::string key, value;
  std::vector<int64_t> tokens;  // exactly context − gen ids: filler, EOS, prompt
  int64_t prompt_begin = 0;     // index in tokens of the prompt's first token
  int64_t needle_at = 0;        // index in tokens of the needle's first token (approximate: by encoding the text before it)
  int64_t haystack_units = 0;   // words of text or noise lines
};

class NiahGenerator {
 public:
  // split: the shards the text haystack and the filler come from (any split with documents).
  NiahGenerator(const Tokenizer& tok, std::shared_ptr<const TokenDataset> split, uint64_t seed);
  // Throws when the context cannot hold the prompt without haystack plus gen tokens.
  // Thread-safe: samples can be made in parallel.
  NiahSample make(const NiahTask& task, int64_t context, int64_t depth, int64_t index, int64_t gen) const;

 private:
  struct Rng;
  std::string random_item(NiahItem type, Rng& rng) const;
  std::string haystack_text(const NiahTask& task, const std::vector<std::string>& words, int64_t n, int64_t depth,
                            const std::string& needle) const;
  std::vector<std::string> text_words(int64_t first_doc, int64_t max_words) const;
  std::vector<int64_t> filler(int64_t doc, int64_t n) const;

  const Tokenizer& tok_;
  std::shared_ptr<const TokenDataset> split_;
  uint64_t seed_;
  bool dummy_prefix_;
};

}  // namespace ttt
