// data/cli_checks.h — validators for the numeric options of every `ttt` command, with messages in
// words ("--top-k: expected an integer >= 0, got 'many'") instead of CLI11's ranges
// ("not in range 0.000000 to 1.797e308"). Used by data/cli_data.cpp and trainer/cli_*.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace ttt::cli {

namespace detail {

inline std::string format_bound(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  return s;
}

// Accepts a whole-string integer (int64) or, unless `integer`, a finite decimal number.
inline bool parse_number(const std::string& s, bool integer, double& out) {
  if (integer) {
    int64_t v;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return false;
    out = static_cast<double>(v);
    return true;
  }
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(out);
}

}  // namespace detail

// A number in [lo, hi] (hi = +inf: no upper bound); `integer` refuses fractions and numbers beyond
// int64. The message names the expectation and the value given.
inline CLI::Validator number(double lo, double hi = std::numeric_limits<double>::infinity(), bool integer = true) {
  std::string expected = integer ? "an integer" : "a number";
  if (std::isinf(hi)) expected += " >= " + detail::format_bound(lo);
  else expected += " in [" + detail::format_bound(lo) + ", " + detail::format_bound(hi) + "]";
  return CLI::Validator(
      [=](std::string& value) -> std::string {
        double v;
        if (!detail::parse_number(value, integer, v) || v < lo || v > hi)
          return "expected " + expected + ", got '" + value + "'";
        return "";
      },
      expected);
}

inline CLI::Validator non_negative_int() { return number(0); }
inline CLI::Validator positive_int() { return number(1); }

// A seed: any unsigned 64-bit integer ("-1" is refused rather than wrapped to 2^64 - 1).
inline CLI::Validator seed() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        uint64_t v;
        auto r = std::from_chars(value.data(), value.data() + value.size(), v);
        if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size())
          return "expected an integer in [0, 2^64 - 1], got '" + value + "'";
        return "";
      },
      "an integer >= 0");
}

}  // namespace ttt::cli
