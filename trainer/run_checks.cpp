// trainer/run_checks.cpp — see run_checks.h.
#include "trainer/run_checks.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "data/sha256.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

std::string read_bytes(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + what + " '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string short_sha(const std::string& sha) { return sha.substr(0, 12); }

bool same_directory(const std::string& a, const std::string& b) {
  std::error_code ec;
  return a == b || (fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec));
}

}  // namespace

std::string training_tokenizer(const RunConfig& cfg, const TokenSource& data) {
  const std::string shards_sha = data.tokenizer_sha256();
  if (!cfg.data.tokenizer.empty()) {
    const std::string where = cfg.origin_of("data.tokenizer") + ": key 'data.tokenizer'";
    if (!fs::is_regular_file(cfg.data.tokenizer))
      throw std::invalid_argument(where + ": '" + cfg.data.tokenizer + "' does not exist");
    std::string bytes = read_bytes(cfg.data.tokenizer, "tokenizer");
    const std::string sha = sha256_hex(bytes);
    if (!shards_sha.empty() && sha != shards_sha)
      throw std::invalid_argument(where + ": '" + cfg.data.tokenizer + "' (sha256 " + short_sha(sha) +
                                  ") is not the tokenizer the data was made with (" + data.describe() +
                                  ": sha256 " + short_sha(shards_sha) + ")");
    return bytes;
  }
  const std::string path = data.tokenizer_path();
  if (path.empty()) return "";
  std::string bytes = read_bytes(path, "tokenizer");
  const std::string sha = sha256_hex(bytes);
  if (!shards_sha.empty() && sha != shards_sha)
    throw std::invalid_argument("'" + path + "' (sha256 " + short_sha(sha) + ") is not the tokenizer the shards beside it "
                                "were made with (sha256 " + short_sha(shards_sha) + "): it was replaced after `ttt data "
                                "prepare`; put the original back, prepare the data again, or set data.tokenizer to "
                                "the right model");
  return bytes;
}

std::vector<std::string> training_plan_changes(const RunConfig& stored, const RunConfig& now) {
  static const std::set<std::string> free_keys = {
      "name", "description", "model.seed", "model.ttt.impl", "model.ttt.checkpoint_group", "model.remat_io", "train.micro_batch",
      "train.device", "train.log_every", "train.eval_every", "train.eval_windows", "train.max_minutes",
      "train.peak_tflops", "data.tokenizer"};
  static const std::vector<std::string> free_sections = {"checkpoint.", "eval.", "dist."};
  std::vector<std::string> out;
  for (const std::string& d : config_differences(stored, now)) {
    const std::string key = d.substr(0, d.find(": "));
    if (free_keys.count(key)) continue;
    bool free_section = false;
    for (const auto& s : free_sections) free_section |= key.rfind(s, 0) == 0;
    if (free_section) continue;
    if (key == "data.dir" && same_directory(stored.data.dir, now.data.dir)) continue;
    out.push_back(d);
  }
  return out;
}

std::string resume_command(const std::string& run_dir) {
  // Paths with characters a shell would interpret are single-quoted.
  auto quote = [](const std::string& p) {
    if (p.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+-=:,@%") == std::string::npos)
      return p;
    std::string q = "'";
    for (char c : p) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const std::string config = (fs::path(run_dir) / "config.yaml").string();
  return "ttt train --config " + quote(config) + " --run-dir " + quote(run_dir) + " --resume";
}

}  // namespace ttt
