// tests/test_trainer_metrics.cpp — metrics.jsonl rows and their truncation on resume; the
// duration and count formats of the progress line; a failed write is an error.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "trainer/metrics.h"
#include "tests/trainer_test_util.h"

using namespace ttt;

TEST_CASE("metrics.jsonl: rows appended, resume drops rows after the resumed step and cut lines") {
  const std::string dir = ttt::testing::tmp_path("metrics");
  const std::string path = dir + "/metrics.jsonl";
  std::filesystem::remove_all(dir);
  {
    MetricsLog m(path);
    for (int s = 1; s <= 5; ++s) m.write({{"step", s}, {"loss", 10.0 - s}, {"elapsed_s", 1.5 * s}});
  }
  std::ofstream(path, std::ios::app) << "{\"step\": 6, \"lo";  // a line cut by a crash
  MetricsLog resumed(path, 3);
  CHECK(resumed.last_row()["step"] == 3);
  CHECK(resumed.last_row()["elapsed_s"] == 4.5);
  resumed.write({{"step", 4}, {"loss", 0.5}});
  std::ifstream in(path);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 4);
  CHECK(rows[2]["step"] == 3);
  CHECK(rows[3]["loss"] == 0.5);
}

TEST_CASE("formats") {
  CHECK(format_duration(45.2) == "45s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(7620) == "2h07m");
  CHECK(format_duration(3 * 86400 + 4 * 3600) == "3d04h");
  CHECK(format_duration(-1) == "?");
  // One formatter for counts everywhere (data/progress.h): tokens/s, tokens seen, documents.
  CHECK(human_count(12345) == "12.3k");
  CHECK(human_count(4.56e6) == "4.56M");
  CHECK(human_count(7.89e9) == "7.89B");
  CHECK(human_count(7) == "7");
  CHECK(human_bytes(1.5e9) == "1.5 GB");
  CHECK(progress_bar(0.5, 8) == "[####....]");
  CHECK(progress_bar(2.0, 4) == "[####]");
}

TEST_CASE("a metrics row that cannot be written is an error naming the file") {
  MetricsLog m("/dev/full");
  CHECK_THROWS_WITH(m.write({{"step", 1}}), doctest::Contains("cannot write metrics file '/dev/full': No space left on device"));
}
