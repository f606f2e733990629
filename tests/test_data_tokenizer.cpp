// tests/test_data_tokenizer.cpp — SHA-256 against published/hashlib digests; tokenizer training,
// loading (from a file or memory), identity and exact round trips (including bytes the tiny
// vocabulary has never seen); streamed detokenization equals decoding at once.
#include <doctest/doctest.h>

#include <sentencepiece_trainer.h>

#include <algorithm>

#include "data/sha256.h"
#include "data/text_sources.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

using namespace ttt;
using namespace ttt::testing;

namespace {
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 251);
  return s;
}
}  // namespace

TEST_CASE("sha256: FIPS 180-4 examples and every padding boundary") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Digests from Python's hashlib of bytes i % 251: lengths around the 55/56/64-byte padding edges.
  CHECK(sha256_hex(pattern(55)) == "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59");
  CHECK(sha256_hex(pattern(56)) == "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562");
  CHECK(sha256_hex(pattern(63)) == "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488");
  CHECK(sha256_hex(pattern(64)) == "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108");
  CHECK(sha256_hex(pattern(119)) == "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6");
  CHECK(sha256_hex(pattern(120)) == "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c");
  CHECK(sha256_hex(pattern(1000)) == "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d");
}

TEST_CASE("tokenizer: trained model has the requested size, Llama ids, byte pieces, and its file's checksum") {
  TempDir dir;
  std::string path = train_tiny_tokenizer(dir, 320);
  Tokenizer tok = Tokenizer::load(path);
  CHECK(tok.vocab_size() == 320);
  CHECK(tok.piece(0) == "<unk>");
  CHECK(tok.bos_id() == 1);
  CHECK(tok.piece(1) == "<s>");
  CHECK(tok.eos_id() == 2);
  CHECK(tok.piece(2) == "</s>");
  CHECK(tok.piece(3) == "<0x00>");  // byte fallback pieces follow the specials
  CHECK(tok.piece(3 + 255) == "<0xFF>");
  CHECK(tok.sha256() == sha256_hex(read_file(path)));
  CHECK(tok.sha256().size() == 64);
  // Merges were learned: a frequent word is fewer tokens than bytes.
  CHECK(tok.encode("the whale").size() < 9);
}

TEST_CASE("tokenizer: decode(encode(text)) == text, also for unseen characters and odd whitespace") {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_tiny_tokenizer(dir));
  const std::vector<std::string> texts = {
      "the whale and the sea",
      "  leading spaces, double  spaces and trailing  ",
      "tabs\tand\nnew\n\nlines\r\n",
      "naïve café, 日本語, emoji 🐋, ∑ x²",  // not in the training text: byte fallback
      "12345 digits 3.14159",
      "x",
  };
  for (const auto& t : texts) {
    auto ids = tok.encode(t);
    CHECK(!ids.empty());
    for (int id : ids) CHECK((id >= 0 && id < tok.vocab_size()));
    CHECK(tok.decode(ids) == t);
    std::vector<int64_t> ids64(ids.begin(), ids.end());
    CHECK(tok.decode(ids64.data(), ids64.size()) == t);
  }
  CHECK(tok.encode("").empty());
  CHECK_THROWS_AS(tok.decode(std::vector<int>{5, 320}), std::out_of_range);
}

TEST_CASE("tokenizer: the same corpus and options train the same model (checksum)") {
  TempDir a, b;
  CHECK(Tokenizer::load(train_tiny_tokenizer(a)).sha256() == Tokenizer::load(train_tiny_tokenizer(b)).sha256());
}

TEST_CASE("tokenizer: bad inputs are refused with the file named") {
  TempDir dir;
  auto msg = [](auto&& fn) {
    try { fn(); } catch (const std::exception& e) { return std::string(e.what()); }
    return std::string("no exception");
  };
  CHECK(msg([&] { Tokenizer::load(dir / "missing.model"); }).find("missing.model") != std::string::npos);
  write_file(dir / "junk.model", "this is not a protobuf");
  std::string m = msg([&] { Tokenizer::load(dir / "junk.model"); });
  CHECK(m.find("junk.model") != std::string::npos);
  CHECK(m.find("not a sentencepiece model") != std::string::npos);

  write_file(dir / "c.txt", make_text(1, 300));
  TokenizerTrainOptions o;
  o.inputs = {dir / "c.txt"};
  o.out = dir / "t.model";
  o.vocab_size = 100;  // below 256 byte pieces + 3 specials
  CHECK(msg([&] { train_tokenizer(o); }).find("too small") != std::string::npos);
  o.vocab_size = 320;
  write_file(o.out, "keep me");
  CHECK(msg([&] { train_tokenizer(o); }).find("--overwrite") != std::string::npos);
  CHECK(read_file(o.out) == "keep me");  // not touched
  o.overwrite = true;
  train_tokenizer(o);
  CHECK(Tokenizer::load(o.out).vocab_size() == 320);
  CHECK(!fs::exists(o.out + ".tmp"));
  o.inputs = {dir / "nothing_here_*.txt"};
  CHECK(msg([&] { train_tokenizer(o); }).find("no input file matches") != std::string::npos);
}

TEST_CASE("tokenizer: a model trained elsewhere with other settings (unigram, NFKC, pad id) loads the same way") {
  TempDir dir;
  std::string text;
  for (int d = 0; d < 30; ++d) text += make_text(500 + d, 150) + "\n";
  write_file(dir / "c.txt", text);
  // Straight through sentencepiece's own trainer, as `spm_train` would make it.
  auto st = sentencepiece::SentencePieceTrainer::Train("--input=" + dir / "c.txt" + " --model_prefix=" + dir / "uni" +
                                                       " --vocab_size=50 --model_type=unigram --pad_id=3 --minloglevel=2");
  INFO(st.ToString());
  REQUIRE(st.ok());
  Tokenizer tok = Tokenizer::load(dir / "uni.model");
  CHECK(tok.vocab_size() == 50);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.piece(3) == "<pad>");
  CHECK(tok.decode(tok.encode("the old man and the sea")) == "the old man and the sea");
  CHECK(tok.sha256() == sha256_hex(read_file(dir / "uni.model")));
}

TEST_CASE("tokenizer: from_bytes parses a model held in memory, like load") {
  TempDir dir;
  const std::string path = train_tiny_tokenizer(dir);
  Tokenizer a = Tokenizer::load(path), b = Tokenizer::from_bytes(read_file(path), "stored copy");
  CHECK(a.sha256() == b.sha256());
  CHECK(a.encode("the whale and the sea") == b.encode("the whale and the sea"));
  CHECK_THROWS_WITH(Tokenizer::from_bytes("junk", "ckpt.h5 (stored tokenizer)"),
                    doctest::Contains("ckpt.h5 (stored tokenizer) is not a sentencepiece model"));
}

// Streams `ids` through a StreamDecoder; returns every piece it printed.
static std::vector<std::string> stream(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  StreamDecoder d(tok);
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(d.push(id));
  out.push_back(d.finish());
  return out;
}

static std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

TEST_CASE("StreamDecoder: the streamed text equals decoding all ids at once, and holds back split characters") {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_tiny_tokenizer(dir));
  // Text the tiny vocabulary has never seen: 日 and 🐋 are 3 and 4 byte-fallback pieces.
  const std::string text = "the whale 日本 and 🐋 swim,  twice  spaced\nnew line";
  auto ids32 = tok.encode(text);
  std::vector<int64_t> ids(ids32.begin(), ids32.end());
  auto parts = stream(tok, ids);
  CHECK(joined(parts) == text);
  for (const auto& p : parts) CHECK(find_invalid_utf8(p) == std::string_view::npos);  // whole characters only
  // The byte pieces of 🐋 (F0 9F 90 8B) print nothing until the last one arrives.
  const int first_byte = 3 + 0xF0;  // <0xF0>
  auto at = std::find(ids.begin(), ids.end(), first_byte);
  REQUIRE(at != ids.end());
  const size_t k = static_cast<size_t>(at - ids.begin());
  CHECK(parts[k] == "");
  CHECK(parts[k + 1] == "");
  CHECK(parts[k + 2] == "");
  CHECK(parts[k + 3].find("🐋") != std::string::npos);

  // Random ids (byte pieces in any order: incomplete and invalid sequences included), long enough
  // that an O(n^2) decoder would show: the stream always equals decode(all).
  uint64_t x = 88172645463325252ull;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int64_t> r(trial == 0 ? 4000 : 50);
    for (auto& id : r) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      id = 3 + static_cast<int64_t>(x % static_cast<uint64_t>(tok.vocab_size() - 3));  // no unk/bos/eos
    }
    CAPTURE(trial);
    CHECK(joined(stream(tok, r)) == tok.decode(r.data(), r.size()));
  }
}

TEST_CASE("tokenizer train: a vocabulary too small for the input's characters names our options") {
  TempDir dir;
  std::string text;
  for (int c = 0; c < 400; ++c) {  // 400 distinct CJK characters, each a required piece
    const uint32_t cp = 0x4E00 + static_cast<uint32_t>(c);
    text += static_cast<char>(0xE0 | (cp >> 12));
    text += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    text += static_cast<char>(0x80 | (cp & 0x3F));
    text += (c % 20 == 19) ? "\n" : " ";
  }
  write_file(dir / "c.txt", text + text);
  TokenizerTrainOptions o;
  o.inputs = {dir / "c.txt"};
  o.out = dir / "t.model";
  o.vocab_size = 300;
  o.character_coverage = 1.0;
  try {
    train_tokenizer(o);
    FAIL("expected an error");
  } catch (const std::exception& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.find("--vocab-size 300 is too small") != std::string::npos);
    CHECK(m.find("--character-coverage") != std::string::npos);
    CHECK(m.find("character_coverage") == std::string::npos);  // sentencepiece's flag name is gone
  }
  CHECK(!fs::exists(o.out));
}
