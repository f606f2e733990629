// trainer/niah.cpp — see niah.h. The templates follow NVIDIA/RULER scripts/data/synthetic/niah.py
// and scripts/data/synthetic/constants.py (single needle: "Some ... are" made singular); the code
// is ours.
#include "trainer/niah.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "data/dataset.h"
#include "data/sampler.h"
#include "data/tokenizer.h"

namespace ttt {

const char* const kNiahNoise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

namespace {

// Our own lists of common English adjectives and nouns (RULER combines wonderwords' lists the
// same way, "adjective-noun"): 64 x 64 = 4096 word keys or values.
const char* const kAdjectives[] = {
    "ancient", "bitter",  "bold",    "brave",   "bright",  "broad",   "calm",    "careful", "cheerful", "clever",
    "cold",    "curious", "damp",    "dark",    "eager",   "early",   "empty",   "faint",   "famous",   "fancy",
    "fierce",  "fresh",   "gentle",  "giant",   "golden",  "grand",   "green",   "happy",   "heavy",    "hidden",
    "hollow",  "honest",  "humble",  "icy",     "jolly",   "kind",    "large",   "lazy",    "little",   "lively",
    "lonely",  "loud",    "lucky",   "mighty",  "modern",  "narrow",  "noble",   "odd",     "old",      "pale",
    "plain",   "polite",  "proud",   "quick",   "quiet",   "rapid",   "rare",    "rough",   "round",    "silent",
    "silver",  "simple",  "smooth",  "solid"};
const char* const kNouns[] = {
    "anchor",  "apple",   "arrow",   "badge",   "basket",  "beacon",  "bell",    "blanket", "bottle",  "bridge",
    "button",  "candle",  "canyon",  "castle",  "cellar",  "chair",   "cloud",   "compass", "copper",  "cottage",
    "desert",  "dragon",  "engine",  "falcon",  "feather", "forest",  "garden",  "glacier", "hammer",  "harbor",
    "helmet",  "island",  "jacket",  "kettle",  "ladder",  "lantern", "meadow",  "mirror",  "monkey",  "needle",
    "orchard", "palace",  "pepper",  "pillow",  "planet",  "pocket",  "puzzle",  "rabbit",  "river",   "saddle",
    "shadow",  "signal",  "spider",  "statue",  "thunder", "ticket",  "tower",   "trumpet", "tunnel",  "valley",
    "violin",  "wagon",   "window",  "zebra"};

std::string singular(NiahItem i) {
  switch (i) {
    case NiahItem::words: return "word";
    case NiahItem::numbers: return "number";
    case NiahItem::uuids: return "uuid";
  }
  return "";
}

NiahItem item_from_string(const std::string& s, const std::string& spec) {
  if (s == "words") return NiahItem::words;
  if (s == "numbers") return NiahItem::numbers;
  if (s == "uuids") return NiahItem::uuids;
  throw std::invalid_argument("--niah-tasks: '" + spec + "': key and value types are words, numbers or uuids, got '" + s +
                              "'");
}

// FNV-1a, a stable hash of the task name for the sample seed.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void split_words(const std::string& text, std::vector<std::string>& out, size_t max_words) {
  size_t i = 0;
  while (i < text.size() && out.size() < max_words) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
}

// s += sep + piece, without the separator at the start or before an empty piece.
void append(std::string& s, const char* sep, const std::string& piece) {
  if (piece.empty()) return;
  if (!s.empty()) s += sep;
  s += piece;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep, size_t begin, size_t end) {
  std::string s;
  for (size_t k = begin; k < end; ++k) {
    if (k > begin) s += sep;
    s += parts[k];
  }
  return s;
}

}  // namespace

struct NiahGenerator::Rng {
  uint64_t seed, counter = 0;
  uint64_t next() { return counter_hash(seed, counter++); }
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }
};

std::vector<NiahTask> parse_niah_tasks(const std::string& spec) {
  std::vector<NiahTask> tasks;
  size_t i = 0;
  while (i <= spec.size()) {
    size_t j = std::min(spec.find(',', i), spec.size());
    std::string name = spec.substr(i, j - i);
    i = j + 1;
    if (name.empty()) continue;
    NiahTask t;
    t.name = name;
    if (name == "single_1") {
      t = {name, NiahHaystack::noise, NiahItem::words, NiahItem::numbers};
    } else if (name == "single_2") {
      t = {name, NiahHaystack::text, NiahItem::words, NiahItem::numbers};
    } else if (name == "single_3") {
      t = {name, NiahHaystack::text, NiahItem::words, NiahItem::uuids};
    } else {
      const size_t a = name.find('/'), b = a == std::string::npos ? a : name.find('/', a + 1);
      if (b == std::string::npos || name.find('/', b + 1) != std::string::npos)
        throw std::invalid_argument("--niah-tasks: '" + name +
                                    "' is not single_1, single_2, single_3 or HAYSTACK/KEY/VALUE (e.g. noise/words/numbers)");
      const std::string h = name.substr(0, a);
      if (h != "noise" && h != "text")
        throw std::invalid_argument("--niah-tasks: '" + name + "': the haystack is noise or text, got '" + h + "'");
      t.haystack = h == "noise" ? NiahHaystack::noise : NiahHaystack::text;
      t.key = item_from_string(name.substr(a + 1, b - a - 1), name);
      t.value = item_from_string(name.substr(b + 1), name);
    }
    tasks.push_back(t);
  }
  if (tasks.empty()) throw std::invalid_argument("--niah-tasks: no task given");
  return tasks;
}

const char* niah_haystack_name(NiahHaystack h) { return h == NiahHaystack::noise ? "noise" : "text"; }

const char* niah_item_name(NiahItem i) {
  return i == NiahItem::words ? "words" : i == NiahItem::numbers ? "numbers" : "uuids";
}

std::string niah_needle(NiahItem value_type, const std::string& key, const std::string& value) {
  // RULER formats the needle with the plural type name even for a single needle.
  return std::string("One of the special magic ") + niah_item_name(value_type) + " for " + key + " is: " + value + ".";
}

std::string niah_prompt(NiahItem value_type, const std::string& haystack_with_needle, const std::string& key) {
  const std::string v = singular(value_type);
  return "A special magic " + v + " is hidden within the following text. Make sure to memorize it. I will quiz you about the " +
         v + " afterwards.\n" + haystack_with_needle + "\nWhat is the special magic " + v + " for " + key +
         " mentioned in the provided text? The special magic " + v + " for " + key + " mentioned in the provided text is";
}

bool niah_correct(const std::string& prediction, const std::string& value) {
  return lower(prediction).find(lower(value)) != std::string::npos;
}

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') continue;
    size_t j = i + 1;
    while (j < text.size() && std::string("\"')]").find(text[j]) != std::string::npos) ++j;
    if (j < text.size() && text[j] == ' ') {
      out.push_back(text.substr(begin, j - begin));
      begin = j + 1;
      i = j;
    }
  }
  if (begin < text.size()) out.push_back(text.substr(begin));
  return out;
}

NiahGenerator::NiahGenerator(const Tokenizer& tok, std::shared_ptr<const TokenDataset> split, uint64_t seed)
    : tok_(tok), split_(std::move(split)), seed_(seed), dummy_prefix_(tok.add_dummy_prefix()) {
  if (split_->num_docs() == 0) throw std::invalid_argument("niah: " + split_->dir() + " (" + split_->split() + ") has no documents");
}

std::string NiahGenerator::random_item(NiahItem type, Rng& rng) const {
  switch (type) {
    case NiahItem::numbers: return std::to_string(1000000 + rng.below(9000000));  // 7 digits, as RULER
    case NiahItem::words: {
      const int64_t na = sizeof kAdjectives / sizeof *kAdjectives, nn = sizeof kNouns / sizeof *kNouns;
      const int64_t a = rng.below(na), n = rng.below(nn);
      return std::string(kAdjectives[a]) + "-" + kNouns[n];
    }
    case NiahItem::uuids: {
      // A random UUID, version 4 (RFC 4122: version nibble 4, variant bits 10), as Python's uuid.
      uint64_t hi = rng.next(), lo = rng.next();
      hi = (hi & ~0xF000ULL) | 0x4000ULL;
      lo = (lo & ~(0xC000ULL << 48)) | (0x8000ULL << 48);
      char buf[40];
      std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(hi >> 32),
                    static_cast<unsigned long long>((hi >> 16) & 0xFFFF), static_cast<unsigned long long>(hi & 0xFFFF),
                    static_cast<unsigned long long>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
      return buf;
    }
  }
  return "";
}

std::vector<std::string> NiahGenerator::text_words(int64_t first_doc, int64_t max_words) const {
  std::vector<std::string> words;
  const int64_t docs = split_->num_docs();
  std::vector<int64_t> ids;
  for (int64_t k = 0; static_cast<int64_t>(words.size()) < max_words; ++k) {
    if (k == docs && words.empty())
      throw std::invalid_argument("niah: the documents of " + split_->dir() + " (" + split_->split() + ") hold no text");
    auto [begin, end] = split_->doc_span((first_doc + k) % docs);
    // A word takes at least one token: reading more tokens than the words still missing (with
    // room for spaces and punctuation) is enough; the last, maybe cut, word of a cut read is dropped.
    const int64_t need = max_words - static_cast<int64_t>(words.size());
    const int64_t len = end - 1 - begin, n = std::min(len, 4 * need + 256);
    ids.resize(static_cast<size_t>(n));
    split_->read(begin, n, ids.data());
    const size_t before = words.size();
    split_words(tok_.decode(ids.data(), ids.size()), words, static_cast<size_t>(max_words) + (n < len ? 1 : 0));
    if (n < len && words.size() > before) words.pop_back();
  }
  return words;
}

std::string NiahGenerator::haystack_text(const NiahTask& task, const std::vector<std::string>& words, int64_t n,
                                         int64_t depth, const std::string& needle) const {
  if (task.haystack == NiahHaystack::noise) {
    const int64_t at = n * depth / 100;
    std::string s;
    for (int64_t k = 0; k <= n; ++k) {
      if (k == at) append(s, "\n", needle);
      if (k < n) append(s, "\n", kNiahNoise);
    }
    return s;
  }
  const std::vector<std::string> sents = split_sentences(join(words, " ", 0, static_cast<size_t>(n)));
  const size_t at = sents.size() * static_cast<size_t>(depth) / 100;
  std::string s = join(sents, " ", 0, at);
  append(s, " ", needle);
  append(s, " ", join(sents, " ", at, sents.size()));
  return s;
}

std::vector<int64_t> NiahGenerator::filler(int64_t doc, int64_t n) const {
  // n tokens that end a document of the split, then its EOS: stream[b - n - 1, b) for the start b
  // of a later document (first one from `doc` on that leaves room).
  const int64_t docs = split_->num_docs();
  std::vector<int64_t> out(static_cast<size_t>(n + 1), split_->eos_id());
  for (int64_t k = 0; k < docs; ++k) {
    const int64_t d = (doc + k) % docs;
    if (d == 0) continue;
    const int64_t b = split_->doc_span(d).first;
    if (b < n + 1) continue;
    split_->read(b - n - 1, n + 1, out.data());
    return out;
  }
  return out;  // the split is shorter than the filler: EOS only
}

NiahSample NiahGenerator::make(const NiahTask& task, int64_t context, int64_t depth, int64_t index, int64_t gen) const {
  if (depth < 0 || depth > 100) throw std::invalid_argument("--depths: " + std::to_string(depth) + " is not in [0, 100]");
  if (gen < 1) throw std::invalid_argument("--niah-gen must be >= 1");
  Rng rng{counter_hash(counter_hash(counter_hash(counter_hash(seed_, fnv1a(task.name)), static_cast<uint64_t>(context)),
                                    static_cast<uint64_t>(depth)),
                       static_cast<uint64_t>(index))};
  NiahSample s;
  s.task = task.name;
  s.context = context;
  s.depth = depth;
  s.index = index;
  s.key = random_item(task.key, rng);
  s.value = random_item(task.value, rng);
  const std::string needle = niah_needle(task.value, s.key, s.value);
  const int64_t budget = context - gen - 1;  // prompt tokens after the EOS
  const int64_t start_doc = rng.below(split_->num_docs());
  std::vector<std::string> words;
  if (task.haystack == NiahHaystack::text) words = text_words(start_doc, std::max<int64_t>(budget, 1));
  const int64_t max_units = task.haystack == NiahHaystack::text ? static_cast<int64_t>(words.size()) : std::max<int64_t>(budget, 0);
  auto prompt = [&](int64_t n) { return niah_prompt(task.value, haystack_text(task, words, n, depth, needle), s.key); };
  std::map<int64_t, std::vector<int>> encoded;  // haystack size -> prompt ids
  auto length = [&](int64_t n) {
    auto it = encoded.find(n);
    if (it == encoded.end()) it = encoded.emplace(n, tok_.encode(prompt(n))).first;
    return static_cast<int64_t>(it->second.size());
  };
  const int64_t bare = length(0);
  if (bare > budget)
    throw std::invalid_argument("niah: context " + std::to_string(context) + " is too short for task " + task.name + ": EOS + " +
                                std::to_string(bare) + " prompt tokens without haystack + " + std::to_string(gen) +
                                " generated tokens");
  // Estimate the haystack size from per-unit token counts, then find the exact largest fitting
  // size around it (RULER's binary search, started at the estimate). sentencepiece encodes the
  // words of a text one by one, so the estimate is exact up to the joins and two or three
  // encodings of the whole prompt settle it.
  int64_t est = 0;
  if (task.haystack == NiahHaystack::noise) {
    const double per_line = std::max(1.0, static_cast<double>(length(8) - bare) / 8.0);
    est = static_cast<int64_t>(static_cast<double>(budget - bare) / per_line);
  } else {
    std::unordered_map<std::string, int64_t> cost;  // tokens of a word after a space
    auto word_tokens = [&](const std::string& w) {
      auto it = cost.find(w);
      if (it == cost.end())
        it = cost.emplace(w, static_cast<int64_t>(tok_.encode(dummy_prefix_ ? w : " " + w).size())).first;
      return it->second;
    };
    for (int64_t used = bare; est < max_units && used + word_tokens(words[static_cast<size_t>(est)]) <= budget; ++est)
      used += word_tokens(words[static_cast<size_t>(est)]);
  }
  est = std::clamp<int64_t>(est, 0, max_units);
  int64_t lo = 0, hi = max_units + 1;  // length(lo) fits; length(hi) does not, or hi is past the end
  const int64_t step0 = 1;
  if (length(est) <= budget) {
    lo = est;
    for (int64_t step = step0; lo < max_units; step *= 2) {
      const int64_t probe = std::min(max_units, lo + step);
      if (length(probe) > budget) {
        hi = probe;
        break;
      }
      lo = probe;
    }
  } else {
    hi = est;
    for (int64_t step = step0;; step *= 2) {
      const int64_t probe = std::max<int64_t>(0, hi - step);
      if (probe == 0 || length(probe) <= budget) {  // length(0) fits (checked above)
        lo = probe;
        break;
      }
      hi = probe;
    }
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (length(mid) <= budget ? lo : hi) = mid;
  }
  s.haystack_units = lo;
  const std::string text = prompt(lo);
  length(lo);
  const std::vector<int>& ids = encoded.at(lo);
  const int64_t fill = budget - static_cast<int64_t>(ids.size());
  s.tokens = filler(start_doc, fill);
  s.prompt_begin = static_cast<int64_t>(s.tokens.size());
  s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
  // The needle's first token: its tokens after the first (whose joining with the space or line
  // break before it varies) occur once in the prompt; else count the tokens of the text before it.
  const std::vector<int> nt = tok_.encode(needle);
  const auto hit = nt.size() > 1 ? std::search(ids.begin(), ids.end(), nt.begin() + 1, nt.end()) : ids.end();
  if (hit != ids.end() && hit != ids.begin()) {
    s.needle_at = s.prompt_begin + (hit - ids.begin()) - 1;
  } else {
    std::string before = text.substr(0, text.find(needle));
    while (!before.empty() && std::isspace(static_cast<unsigned char>(before.back()))) before.pop_back();
    s.needle_at = s.prompt_begin + static_cast<int64_t>(tok_.encode(before).size());
  }
  return s;
}

}  // namespace ttt
