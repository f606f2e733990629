// tests/test_data_sources.cpp — input expansion, UTF-8 validation, and the .txt / .jsonl /
// .jsonl.zst readers, including every kind of bad input and its file:line message.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "data/text_sources.h"
#include "data_test_util.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

std::vector<Document> read_all(const std::vector<std::string>& files, bool skip_bad = false,
                               SourceStats* stats = nullptr) {
  DocumentReader r(files, skip_bad);
  std::vector<Document> docs;
  Document d;
  while (r.next(d)) docs.push_back(d);
  if (stats) *stats = r.stats();
  return docs;
}

std::string error_of(const std::vector<std::string>& files, bool skip_bad = false) {
  try {
    read_all(files, skip_bad);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST_CASE("utf8: valid text passes, each kind of invalid sequence is found at its offset") {
  using sv = std::string_view;
  CHECK(find_invalid_utf8("plain ascii") == sv::npos);
  CHECK(find_invalid_utf8("naïve 日本 🐋") == sv::npos);
  CHECK(find_invalid_utf8("\xF4\x8F\xBF\xBF") == sv::npos);          // U+10FFFF, the largest
  CHECK(find_invalid_utf8("ab\xFF") == 2);                            // never valid
  CHECK(find_invalid_utf8("a\xC0\x80") == 1);                         // overlong NUL
  CHECK(find_invalid_utf8("a\xE0\x80\xAF") == 1);                     // overlong 3-byte
  CHECK(find_invalid_utf8("a\xF0\x80\x80\xAF") == 1);                 // overlong 4-byte
  CHECK(find_invalid_utf8("xy\xED\xA0\x80") == 2);                    // UTF-16 surrogate
  CHECK(find_invalid_utf8("\xF4\x90\x80\x80") == 0);                  // above U+10FFFF
  CHECK(find_invalid_utf8("abc\xE6\x97") == 3);                       // truncated at the end
  CHECK(find_invalid_utf8("\xE6\x41\x41") == 0);                      // bad continuation byte
  CHECK(find_invalid_utf8("ok\x80") == 2);                            // stray continuation byte
}

TEST_CASE("expand_inputs: globs, directories, order, duplicates, and errors") {
  TempDir dir;
  fs::create_directories(dir.path / "sub");
  write_file(dir / "b.txt", "b");
  write_file(dir / "a.txt", "a");
  write_file(dir / "c.jsonl", "{\"text\":\"c\"}\n");
  write_file(dir / "sub/d.jsonl.zst", zstd_compress("{\"text\":\"d\"}\n"));
  write_file(dir / "sub/readme.md", "ignored inside directories");

  auto files = expand_inputs({dir / "*.txt"});
  REQUIRE(files.size() == 2);
  CHECK(files[0] == dir / "a.txt");  // sorted
  CHECK(files[1] == dir / "b.txt");
  files = expand_inputs({dir.path.string()});
  REQUIRE(files.size() == 4);
  CHECK(files[3] == dir / "sub/d.jsonl.zst");
  // Order of the inputs is kept, duplicates dropped.
  files = expand_inputs({dir / "c.jsonl", dir / "*.txt", dir / "a.txt"});
  REQUIRE(files.size() == 3);
  CHECK(files[0] == dir / "c.jsonl");

  auto err = [](std::vector<std::string> in) {
    try { expand_inputs(in); } catch (const std::exception& e) { return std::string(e.what()); }
    return std::string("no exception");
  };
  CHECK(err({dir / "missing.txt"}).find("input not found: " + dir / "missing.txt") != std::string::npos);
  CHECK(err({dir / "*.parquet"}).find("no input file matches") != std::string::npos);
  CHECK(err({dir / "sub/readme.md"}).find("unsupported input type") != std::string::npos);
  fs::create_directories(dir.path / "empty");
  CHECK(err({dir / "empty"}).find("contains no .txt") != std::string::npos);
}

TEST_CASE("reader: .txt is one document, .jsonl one per line, .jsonl.zst the same compressed") {
  TempDir dir;
  std::string book = "Call me Ishmael.\n\nSome years ago — never mind how long.\n";
  write_file(dir / "book.txt", book);
  write_file(dir / "recs.jsonl",
             "{\"text\": \"first\", \"meta\": {\"x\": 1}}\n"
             "\n"                                      // blank lines are not records
             "{\"text\": \"second\\nwith a newline and \\u00e9\"}\r\n"  // CRLF line end
             "{\"text\": \"\"}\n"                      // empty text: skipped and counted
             "{\"text\": \"third, no final newline\"}");
  // Two concatenated zstd frames, a record split across them.
  std::string z = "{\"text\": \"zst one\"}\n{\"text\": \"zst";
  std::string z2 = " two\"}\n";
  write_file(dir / "recs.jsonl.zst", zstd_compress(z) + zstd_compress(z2, 19));

  SourceStats st;
  auto docs = read_all({dir / "book.txt", dir / "recs.jsonl", dir / "recs.jsonl.zst"}, false, &st);
  REQUIRE(docs.size() == 6);
  CHECK(docs[0].text == book);
  CHECK(docs[0].line == 0);
  CHECK(docs[1].text == "first");
  CHECK(docs[1].line == 1);
  CHECK(docs[2].text == "second\nwith a newline and \xC3\xA9");
  CHECK(docs[2].line == 3);
  CHECK(docs[3].text == "third, no final newline");
  CHECK(docs[3].line == 5);
  CHECK(docs[3].file == dir / "recs.jsonl");
  CHECK(docs[4].text == "zst one");
  CHECK(docs[5].text == "zst two");
  CHECK(docs[5].line == 2);
  CHECK(st.documents == 6);
  CHECK(st.empty_skipped == 1);
  CHECK(st.bad_skipped == 0);
}

TEST_CASE("reader: a large .jsonl.zst streams correctly across decoder blocks") {
  TempDir dir;
  std::string plain;
  std::vector<std::string> texts;
  for (int i = 0; i < 5000; ++i) {
    texts.push_back(make_text(i, 20 + i % 50));
    plain += nlohmann::json{{"text", texts.back()}}.dump() + "\n";
  }
  REQUIRE(plain.size() > (1 << 20));  // more than the reader's block size
  write_file(dir / "big.jsonl.zst", zstd_compress(plain));
  write_file(dir / "big.jsonl", plain);
  DocumentReader r({dir / "big.jsonl.zst"});
  Document d;
  size_t i = 0;
  while (r.next(d)) {
    REQUIRE(i < texts.size());
    CHECK(d.text == texts[i++]);
  }
  CHECK(i == texts.size());
  CHECK(r.bytes_read() == static_cast<int64_t>(fs::file_size(dir / "big.jsonl.zst")));
  CHECK(read_all({dir / "big.jsonl"}).size() == texts.size());
}

TEST_CASE("reader: each malformed record stops with file:line, or is skipped and counted with skip_bad") {
  TempDir dir;
  struct Case { const char* line; const char* expect; };
  const Case cases[] = {
      {"{\"text\": \"unterminated}", "malformed JSON"},
      {"[\"an\", \"array\"]", "expected a JSON object"},
      {"{\"title\": \"no text\"}", "no \"text\" field"},
      {"{\"text\": 42}", "\"text\" field is not a string"},
      {"{\"text\": \"bad \xFF byte\"}", "invalid UTF-8 at byte 15 of the line"},
      {"{\"text\": \"lone surrogate \\ud800\"}", "malformed JSON"},
  };
  for (const auto& c : cases) {
    std::string shown = c.line;
    CAPTURE(shown);
    std::string path = dir / "bad.jsonl";
    write_file(path, std::string("{\"text\": \"good\"}\n\n") + c.line + "\n{\"text\": \"after\"}\n");
    std::string msg = error_of({path});
    CHECK(msg.find(path + ":3: ") == 0);  // blank line 2 still counts for numbering
    CAPTURE(msg);
    CHECK(msg.find(c.expect) != std::string::npos);
    CHECK(msg.find("--skip-bad") != std::string::npos);
    SourceStats st;
    auto docs = read_all({path}, true, &st);
    REQUIRE(docs.size() == 2);
    CHECK(docs[1].text == "after");
    CHECK(st.bad_skipped == 1);
  }
}

TEST_CASE("reader: invalid UTF-8, empty files, unreadable and corrupt inputs") {
  TempDir dir;
  write_file(dir / "bad.txt", "line one\nline two \xC0\xAF\n");
  std::string msg = error_of({dir / "bad.txt"});
  CHECK(msg.find(dir / "bad.txt" + ":2: invalid UTF-8 at byte offset 18") == 0);
  SourceStats st;
  write_file(dir / "good.txt", "fine");
  CHECK(read_all({dir / "bad.txt", dir / "good.txt"}, true, &st).size() == 1);
  CHECK(st.bad_skipped == 1);

  write_file(dir / "empty.txt", "");
  CHECK(error_of({dir / "empty.txt"}).find("empty.txt: contains no documents") != std::string::npos);
  write_file(dir / "blank.jsonl", "\n\n  \n");
  CHECK(error_of({dir / "blank.jsonl"}).find("blank.jsonl: contains no documents") != std::string::npos);

  CHECK(error_of({dir / "gone.txt"}).find("cannot open input file " + dir / "gone.txt") != std::string::npos);
  if (::geteuid() != 0) {  // root reads anything, so the permission case only means something otherwise
    write_file(dir / "secret.txt", "x");
    fs::permissions(dir / "secret.txt", fs::perms::none);
    CHECK(error_of({dir / "secret.txt"}).find("cannot open input file") != std::string::npos);
  }

  std::string frame = zstd_compress("{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
  write_file(dir / "trunc.jsonl.zst", frame.substr(0, frame.size() - 4));
  CHECK(error_of({dir / "trunc.jsonl.zst"}).find("truncated zstd stream") != std::string::npos);
  write_file(dir / "notzstd.jsonl.zst", "{\"text\": \"plain text, not compressed\"}\n");
  CHECK(error_of({dir / "notzstd.jsonl.zst"}).find("corrupt zstd data") != std::string::npos);
}
