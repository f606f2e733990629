// tests/test_trainer_niah.cpp — S-NIAH (trainer/niah.h, trainer/niah_eval.h): RULER's templates
// (derived here from RULER's raw template text the way its niah.py does), samples of exact length
// with the needle at the asked depth, the metric and the grid through oracle "models", and the
// batched, chunked greedy generation against `generate` row by row on tiny real models.
#include <doctest/doctest.h>

#include <algorithm>
#include <regex>

#include "autograd/ops.h"
#include "data/dataset.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"
#include "layers/language_model.h"
#include "layers/presets.h"
#include "tests/data_test_util.h"
#include "trainer/generate.h"
#include "trainer/niah.h"
#include "trainer/niah_eval.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// RULER's scripts/data/synthetic/constants.py niah template + answer prefix, made singular as
// niah.py does for one needle and one query ('Some'->'A', 'are all'->'is', 'are'->'is').
std::string ruler_prompt(const std::string& type_plural, const std::string& context, const std::string& query) {
  std::string t =
      "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz "
      "you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} "
      "mentioned in the provided text? The special magic {type_needle_v} for {query} mentioned in the provided text are";
  t = replace_all(replace_all(replace_all(t, "Some", "A"), "are all", "is"), "are", "is");
  t = replace_all(t, "{type_needle_v}", type_plural.substr(0, type_plural.size() - 1));
  return replace_all(replace_all(t, "{context}", context), "{query}", query);
}

// A val split of make_text documents tokenized with `tok`.
std::shared_ptr<const TokenDataset> text_split(const TempDir& dir, const Tokenizer& tok, int docs) {
  ShardMeta m;
  m.split = "val";
  m.vocab_size = tok.vocab_size();
  m.eos_id = tok.eos_id();
  m.tokenizer_sha256 = tok.sha256();
  m.tokenizer_file = "tiny.model";
  m.sources_json = "[\"generated\"]";
  ShardWriter w(dir.path.string(), m, 1 << 20);
  for (int d = 0; d < docs; ++d) {
    auto ids = tok.encode(make_text(500 + d, 120));
    ids.push_back(tok.eos_id());
    w.add_document(ids);
  }
  w.finish();
  return TokenDataset::open(dir.path.string(), "val");
}

struct Fixture {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_tiny_tokenizer(dir));
  std::shared_ptr<const TokenDataset> split = text_split(dir, tok, 12);
};

// The prompt text of a sample (after the filler and EOS).
std::string prompt_of(const Fixture& f, const NiahSample& s) {
  return f.tok.decode(s.tokens.data() + s.prompt_begin, s.tokens.size() - static_cast<size_t>(s.prompt_begin));
}

// An oracle: reads the value of the queried key from the prompt and answers it, then EOS. If
// `only_late`, it answers only when the needle lies in the second half of the haystack.
GreedyFn oracle(const Tokenizer& tok, bool only_late, int64_t* calls = nullptr, size_t* max_rows = nullptr) {
  return [&tok, only_late, calls, max_rows](const std::vector<std::vector<int64_t>>& prompts, int64_t max_new,
                                           const RowDoneFn&) {
    if (calls) ++*calls;
    if (max_rows) *max_rows = std::max(*max_rows, prompts.size());
    std::vector<std::vector<int64_t>> out;
    for (const auto& p : prompts) {
      REQUIRE(p.size() == prompts[0].size());
      const std::string text = tok.decode(p.data(), p.size());
      std::smatch q, n;
      REQUIRE(std::regex_search(text, q, std::regex("magic \\w+ for (\\S+) mentioned in the provided text is$")));
      REQUIRE(std::regex_search(text, n, std::regex("for " + q[1].str() + " is: (\\S+)\\.")));
      // Late: in the second half of the haystack (between the first line and the question).
      const size_t h0 = text.find("afterwards.\n"), h1 = text.rfind("\nWhat is");
      const bool late = static_cast<size_t>(n.position(0)) > (h0 + h1) / 2;
      std::vector<int> ids = tok.encode(" " + (only_late && !late ? std::string("0") : n[1].str()));
      std::vector<int64_t> o(ids.begin(), ids.end());
      o.push_back(tok.eos_id());
      if (static_cast<int64_t>(o.size()) > max_new) o.resize(static_cast<size_t>(max_new));
      out.push_back(o);
    }
    return out;
  };
}

}  // namespace

TEST_CASE("task names: RULER's single-needle configs and HAYSTACK/KEY/VALUE") {
  auto t = parse_niah_tasks("single_1,single_2,single_3,noise/numbers/uuids");
  REQUIRE(t.size() == 4);
  CHECK((t[0].haystack == NiahHaystack::noise && t[0].key == NiahItem::words && t[0].value == NiahItem::numbers));
  CHECK((t[1].haystack == NiahHaystack::text && t[1].key == NiahItem::words && t[1].value == NiahItem::numbers));
  CHECK((t[2].haystack == NiahHaystack::text && t[2].value == NiahItem::uuids));
  CHECK((t[3].haystack == NiahHaystack::noise && t[3].key == NiahItem::numbers && t[3].value == NiahItem::uuids));
  CHECK(t[3].name == "noise/numbers/uuids");
  CHECK_THROWS_WITH_AS(parse_niah_tasks("single_4"), doctest::Contains("--niah-tasks"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_niah_tasks("essay/words/numbers"), doctest::Contains("noise or text"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_niah_tasks("text/words/digits"), doctest::Contains("words, numbers or uuids"),
                       std::invalid_argument);
  CHECK_THROWS_AS(parse_niah_tasks(","), std::invalid_argument);
}

TEST_CASE("prompt and needle are RULER's, for every value type") {
  for (auto [type, name] : {std::pair{NiahItem::numbers, "numbers"}, {NiahItem::words, "words"}, {NiahItem::uuids, "uuids"}}) {
    CHECK(niah_prompt(type, "HAY", "odd-zebra") == ruler_prompt(name, "HAY", "odd-zebra"));
    CHECK(niah_needle(type, "odd-zebra", "1234567") ==
          std::string("One of the special magic ") + name + " for odd-zebra is: 1234567.");
  }
  CHECK(niah_prompt(NiahItem::numbers, "H", "k").rfind("A special magic number is hidden", 0) == 0);
}

TEST_CASE("metric: the value anywhere in the prediction, case ignored") {
  CHECK(niah_correct(" 1234567.", "1234567"));
  CHECK(niah_correct("The answer: ODD-Zebra", "odd-zebra"));
  CHECK_FALSE(niah_correct(" 123456", "1234567"));
  CHECK_FALSE(niah_correct("", "x"));
}

TEST_CASE("sentences split after . ! ? (and closing quotes) before a space; joining gives the text back") {
  auto s = split_sentences("One. Two! \"Three?\" Four.5 five (six.) seven");
  CHECK(s == std::vector<std::string>{"One.", "Two!", "\"Three?\"", "Four.5 five (six.)", "seven"});
  std::string joined;
  for (size_t i = 0; i < s.size(); ++i) joined += (i ? " " : "") + s[i];
  CHECK(joined == "One. Two! \"Three?\" Four.5 five (six.) seven");
  CHECK(split_sentences("").empty());
}

TEST_CASE("samples: exact length, EOS before the prompt, needle at the depth, deterministic") {
  Fixture f;
  NiahGenerator gen(f.tok, f.split, 7);
  const int64_t gen_tokens = 16;
  for (const NiahTask& task : parse_niah_tasks("single_1,single_2,single_3,noise/numbers/words")) {
    for (int64_t context : {600, 1000}) {
      for (int64_t depth : {0, 50, 100}) {
        CAPTURE(task.name);
        CAPTURE(context);
        CAPTURE(depth);
        NiahSample s = gen.make(task, context, depth, 0, gen_tokens);
        REQUIRE(static_cast<int64_t>(s.tokens.size()) == context - gen_tokens);
        REQUIRE(s.prompt_begin >= 1);
        CHECK(s.tokens[static_cast<size_t>(s.prompt_begin - 1)] == f.tok.eos_id());
        const std::string p = prompt_of(f, s);
        const std::string needle = niah_needle(task.value, s.key, s.value);
        CHECK(p == niah_prompt(task.value, p.substr(p.find('\n') + 1, p.rfind('\n') - p.find('\n') - 1), s.key));
        const size_t at = p.find(needle);
        REQUIRE(at != std::string::npos);
        // The haystack is the text between the first and the last line break of the prompt.
        const size_t h0 = p.find('\n') + 1, h1 = p.rfind('\n');
        const double rel = static_cast<double>(at - h0) / static_cast<double>(h1 - h0 - needle.size());
        if (depth == 0) CHECK(at == h0);
        if (depth == 100) CHECK(at + needle.size() == h1);
        // Noise lines are all alike: half the lines is half the text. Sentences of text vary.
        if (task.haystack == NiahHaystack::noise && s.haystack_units > 0) {  // before line floor(n * depth / 100)
          const int64_t line = s.haystack_units * depth / 100;
          CHECK(rel == doctest::Approx(static_cast<double>(line) / static_cast<double>(s.haystack_units)).epsilon(0.02));
        }
        if (depth == 50 && task.haystack == NiahHaystack::text) CHECK((rel > 0.15 && rel < 0.85));
        CHECK(s.needle_at >= s.prompt_begin);
        CHECK(f.tok.decode(s.tokens.data() + s.needle_at, 8).find("One") != std::string::npos);
        // The haystack is as long as fits: what is left over is less than one more unit.
        const int64_t fill = s.prompt_begin - 1;
        CHECK(fill >= 0);
        const int64_t unit = task.haystack == NiahHaystack::noise
                                 ? static_cast<int64_t>(f.tok.encode(std::string("\n") + kNiahNoise).size())
                                 : 8;  // the longest word of make_text's vocabulary in the tiny tokenizer, and a space
        CHECK(fill <= unit);
        if (task.haystack == NiahHaystack::noise) {
          size_t lines = 0;
          for (size_t k = p.find(kNiahNoise); k != std::string::npos; k = p.find(kNiahNoise, k + 1)) ++lines;
          CHECK(static_cast<int64_t>(lines) == s.haystack_units);
        }
        // Keys and values have RULER's forms.
        const std::regex number("[1-9][0-9]{6}"), word("[a-z]+-[a-z]+"),
            uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
        CHECK(std::regex_match(s.key, task.key == NiahItem::numbers ? number : word));
        CHECK(std::regex_match(s.value, task.value == NiahItem::numbers ? number
                                        : task.value == NiahItem::words ? word
                                                                        : uuid));
        // A pure function of (seed, task, context, depth, index).
        NiahSample again = gen.make(task, context, depth, 0, gen_tokens);
        CHECK(again.tokens == s.tokens);
        CHECK(gen.make(task, context, depth, 1, gen_tokens).value != s.value);
      }
    }
  }
  NiahGenerator other(f.tok, f.split, 8);
  CHECK(other.make(parse_niah_tasks("single_2")[0], 600, 50, 0, 16).tokens != gen.make(parse_niah_tasks("single_2")[0], 600, 50, 0, 16).tokens);
  CHECK_THROWS_WITH_AS(gen.make(parse_niah_tasks("single_1")[0], 80, 50, 0, 16), doctest::Contains("too short"),
                       std::invalid_argument);
  CHECK_THROWS_AS(gen.make(parse_niah_tasks("single_1")[0], 600, 101, 0, 16), std::invalid_argument);
}

TEST_CASE("the grid: an oracle scores 1 everywhere, a half-blind one only where the needle is late") {
  Fixture f;
  NiahGenerator gen(f.tok, f.split, 3);
  NiahOptions o;
  o.tasks = parse_niah_tasks("single_1,single_2");
  o.contexts = {480, 640};
  o.depths = {0, 100};
  o.samples = 3;
  o.gen = 12;
  o.batch = 4;
  int64_t calls = 0;
  size_t max_rows = 0;
  auto all = run_niah(gen, f.tok, oracle(f.tok, false, &calls, &max_rows), o);
  CHECK(all.size() == 2 * 2 * 2 * 3);
  CHECK(calls == 2 * 2 * 2);  // 6 samples per (task, context) in batches of 4
  CHECK(max_rows == 4);
  for (const auto& r : all) CHECK(r.correct);
  auto j = niah_results_json(all, o);
  CHECK(j["tasks"][0]["accuracy"] == 1.0);
  CHECK(j["samples"].size() == all.size());
  auto late = run_niah(gen, f.tok, oracle(f.tok, true), o);
  auto jl = niah_results_json(late, o);
  for (int t = 0; t < 2; ++t) {
    const auto& grid = jl["tasks"][t]["grid"];
    REQUIRE(grid.size() == 2);  // depths
    for (int c = 0; c < 2; ++c) {
      CHECK(grid[0][c] == 0.0);  // depth 0: needle at the start
      CHECK(grid[1][c] == 1.0);  // depth 100: at the end
    }
    CHECK(jl["tasks"][t]["accuracy_by_depth"] == nlohmann::json({0.0, 1.0}));
    CHECK(jl["tasks"][t]["accuracy_by_context"] == nlohmann::json({0.5, 0.5}));
    CHECK(jl["tasks"][t]["accuracy"] == 0.5);
  }
  const std::string table = format_niah_table(late, o);
  CHECK(table.find("task single_2 (text haystack, words key, numbers value): accuracy 0.500") != std::string::npos);
}

static void check_batched_greedy(const std::string& mixer, const std::string& backbone) {
  ModelConfig c = preset("tiny", mixer, backbone);
  c.ttt.mini_batch = 4;  // prompts of 11 tokens span mini-batches, in chunks of 3, 4 and all
  LanguageModel model(c);
  std::vector<std::vector<int64_t>> prompts = {{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                               {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                                               {30, 3, 17, 17, 2, 9, 39, 0, 21, 8, 8}};
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 7;
  for (int64_t chunk : {3, 4, 100}) {
    CAPTURE(chunk);
    auto out = model_greedy(model, chunk, /*stop_token=*/-1, false)(prompts, 7, nullptr);
    REQUIRE(out.size() == 3);
    for (size_t r = 0; r < 3; ++r) CHECK(out[r] == generate(model, prompts[r], greedy));
  }
  // A row stops at the stop token or when done() says so; the others go on.
  auto ref1 = generate(model, prompts[1], greedy);
  auto out = model_greedy(model, 4, ref1[2], false)(prompts, 7, [](size_t row, const std::vector<int64_t>& g) {
    return row == 0 && g.size() == 2;
  });
  CHECK(out[0].size() == 2);
  const auto stop_at = std::find(ref1.begin(), ref1.end(), ref1[2]);  // the first emission of the stop token
  CHECK(out[1] == std::vector<int64_t>(ref1.begin(), stop_at + 1));
  CHECK(out[2].size() >= 1);
  CHECK_THROWS_AS(model_greedy(model, 4, -1, false)({{1, 2}, {1}}, 3, nullptr), std::invalid_argument);
  // A tokenizer smaller than the model's vocabulary: every generated id is one it can decode
  // (seen on the GPU with the 125M configs' 32000 rows and a 512-piece tokenizer).
  const int64_t small_vocab = 5;
  for (const auto& row : model_greedy(model, 4, -1, false, small_vocab)(prompts, 7, nullptr))
    for (int64_t id : row) CHECK(id < small_vocab);
}

TEST_CASE("batched chunked greedy generation = generate() row by row: Transformer (KV cache)") {
  check_batched_greedy("attention", "transformer");
}

TEST_CASE("batched chunked greedy generation = generate() row by row: TTT-Linear") {
  check_batched_greedy("ttt_linear", "mamba");
}
