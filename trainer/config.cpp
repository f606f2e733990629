// trainer/config.cpp — loading, overriding, validating and dumping RunConfig (see config.h).
//
// Values are parsed strictly against the type of the schema field: an int key takes "12", "1e6"
// or "2.5e9" (integral values only), a float key any number, a bool key true/false/yes/no/on/off,
// a list-of-ints key a YAML sequence or "1024,2048". Anything else is an error naming where the
// value came from, the key, the expected type and the value.
#include "trainer/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace ttt {

namespace {

// --- strict scalar parsing -----------------------------------------------------------------------

bool parse_double(const std::string& s, double& out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s.front()))) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

// Whole-string parses: "12abc" is an error, not 12.
bool parse_int(const std::string& s, int64_t& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return true;
  // Scientific notation for large counts ("2.5e9"), accepted only when the value is integral.
  double d;
  if (!parse_double(s, d) || d != std::floor(d) || std::fabs(d) > 9.0e18) return false;
  out = static_cast<int64_t>(d);
  return true;
}

bool parse_bool(const std::string& s0, bool& out) {
  std::string s = s0;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "yes" || s == "on") return out = true, true;
  if (s == "false" || s == "no" || s == "off") return out = false, true;
  return false;
}

std::string describe(const YAML::Node& v) {
  if (!v.IsDefined() || v.IsNull()) return "null";
  if (v.IsScalar()) return "'" + v.Scalar() + "'";
  if (v.IsSequence()) return "a list";
  return "a mapping";
}

// Sets the field of `key` from `v`; `where` prefixes the error ("file:line" or "--set k=v").
void assign(RunConfig& cfg, const ConfigKey& key, const YAML::Node& v, const std::string& where) {
  ConfigField field = key.field(cfg);
  auto fail = [&](const std::string& extra = "") {
    throw std::invalid_argument(where + ": key '" + key.name + "': expected " + config_type_name(field) + extra +
                                ", got " + describe(v));
  };
  const bool scalar = v.IsDefined() && v.IsScalar();
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          std::vector<int64_t> out;
          auto add = [&](const std::string& s) {
            int64_t x;
            if (!parse_int(s, x)) fail();
            out.push_back(x);
          };
          if (v.IsSequence()) {
            for (const auto& e : v) {
              if (!e.IsScalar()) fail();
              add(e.Scalar());
            }
          } else if (scalar) {
            std::stringstream ss(v.Scalar());  // "1024,2048" from the command line
            for (std::string part; std::getline(ss, part, ',');) add(part);
          } else if (!v.IsNull()) {
            fail();
          }
          *p = out;
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (v.IsNull()) {
            *p = "";
          } else {
            if (!scalar) fail();
            if (!key.choices.empty() &&
                std::find(key.choices.begin(), key.choices.end(), v.Scalar()) == key.choices.end()) {
              std::string list;
              for (auto& c : key.choices) list += (list.empty() ? "" : ", ") + c;
              fail(" (one of: " + list + ")");
            }
            *p = v.Scalar();
          }
        } else {
          if (!scalar) fail();
          const std::string& s = v.Scalar();
          if constexpr (std::is_same_v<T, int64_t>) {
            if (!parse_int(s, *p)) fail();
          } else if constexpr (std::is_same_v<T, uint64_t>) {
            // Seeds use the full 64-bit range.
            auto r = std::from_chars(s.data(), s.data() + s.size(), *p);
            int64_t x;
            if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
              if (!parse_int(s, x) || x < 0) fail();
              *p = static_cast<uint64_t>(x);
            }
          } else if constexpr (std::is_same_v<T, double>) {
            if (!parse_double(s, *p)) fail();
          } else if constexpr (std::is_same_v<T, bool>) {
            if (!parse_bool(s, *p)) fail(" (true or false)");
          }
        }
      },
      field);
  if (key.name == "train.device") {
    try {
      (void)parse_device(cfg.train.device);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + ": key 'train.device': " + e.what());
    }
  }
  cfg.set_keys.insert(key.name);
  cfg.origins[key.name] = where;
}

// --- unknown keys --------------------------------------------------------------------------------

// Levenshtein distance, two rows: the key list is short, clarity wins over speed.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool is_section(const std::string& name) {
  for (const auto& k : config_schema())
    if (k.name.rfind(name + ".", 0) == 0) return true;
  return false;
}

std::string last_component(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string parent_of(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

// "unknown key 'train.lrr' (did you mean 'train.lr'?)", else the keys valid at that level.
std::string unknown_key_message(const std::string& name) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& k : config_schema()) {
    size_t d = edit_distance(name, k.name);
    if (last_component(k.name) == last_component(name)) d = std::min<size_t>(d, 1);  // right key, wrong section
    if (d < best_d) best_d = d, best = k.name;
    // Sections are candidates too ("trian" -> "train").
    for (std::string sec = parent_of(k.name); !sec.empty(); sec = parent_of(sec)) {
      size_t ds = edit_distance(name, sec);
      if (ds < best_d) best_d = ds, best = sec;
    }
  }
  std::string msg = "unknown key '" + name + "'";
  if (best_d <= std::max<size_t>(2, name.size() / 4)) return msg + " (did you mean '" + best + "'?)";
  std::string parent = parent_of(name);
  // "foo.bar" where "foo" is no section: name the unknown section and list the real ones.
  std::string unknown_section;
  while (!parent.empty() && !is_section(parent)) unknown_section = parent, parent = parent_of(parent);
  if (!unknown_section.empty()) msg = "unknown section '" + unknown_section + "' in '" + name + "'";
  std::string valid;
  for (const auto& k : config_schema()) {
    if (parent_of(k.name) != parent && !(parent.empty() && k.name.find('.') != std::string::npos)) continue;
    std::string shown = parent.empty() ? k.name.substr(0, k.name.find('.')) : last_component(k.name);
    if (valid.find(" " + shown + ",") == std::string::npos) valid += " " + shown + ",";
  }
  if (!valid.empty()) valid.pop_back();
  return msg + " (valid keys" + (parent.empty() ? "" : " in '" + parent + "'") + ":" + valid + ")";
}

// --- walking a YAML document -----------------------------------------------------------------------

std::string where_of(const std::string& origin, const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? origin + ":" + std::to_string(m.line + 1) : origin;
}

// Walks a mapping: a leaf key is assigned, a section is descended into, anything else is an
// unknown key. Every error carries the file and line of the key.
void load_mapping(RunConfig& cfg, const YAML::Node& node, const std::string& prefix, const std::string& origin) {
  if (!node.IsMap())
    throw std::invalid_argument(where_of(origin, node) + ": " +
                                (prefix.empty() ? "the config" : "section '" + prefix + "'") +
                                " must be a mapping of keys to values, got " + describe(node));
  std::map<std::string, std::string> seen;  // yaml-cpp keeps duplicate keys; the YAML spec forbids them
  for (const auto& it : node) {
    const std::string name = prefix.empty() ? it.first.Scalar() : prefix + "." + it.first.Scalar();
    const std::string where = where_of(origin, it.first);
    if (!seen.emplace(name, where).second)
      throw std::invalid_argument(where + ": key '" + name + "' appears twice (first at " + seen[name] + ")");
    if (const ConfigKey* key = find_config_key(name)) {
      assign(cfg, *key, it.second, where);
    } else if (is_section(name)) {
      if (it.second.IsNull()) continue;  // an empty section ("eval:") is fine
      load_mapping(cfg, it.second, name, origin);
    } else {
      throw std::invalid_argument(where + ": " + unknown_key_message(name));
    }
  }
}

void load_document(RunConfig& cfg, const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return;  // empty file: defaults
  load_mapping(cfg, root, "", origin);
}

// --- writing -----------------------------------------------------------------------------------------

std::string format_value(ConfigField f) {
  struct Fmt {
    std::string operator()(int64_t* p) const { return std::to_string(*p); }
    std::string operator()(uint64_t* p) const { return std::to_string(*p); }
    std::string operator()(double* p) const { return format_yaml_float(*p); }
    std::string operator()(bool* p) const { return *p ? "true" : "false"; }
    // A JSON string is a valid YAML double-quoted scalar.
    std::string operator()(std::string* p) const { return nlohmann::json(*p).dump(); }
    std::string operator()(std::vector<int64_t>* p) const {
      std::string s = "[";
      for (size_t i = 0; i < p->size(); ++i) s += (i ? ", " : "") + std::to_string((*p)[i]);
      return s + "]";
    }
  };
  return std::visit(Fmt{}, f);
}

// Writes the keys in schema order as nested YAML; `docs` adds each key's documentation above it.
// Hand-written rather than YAML::Emitter: the order, indentation and float format (which must
// round-trip exactly and read as floats in PyYAML) are part of the file's contract.
std::string write_yaml(RunConfig& cfg, bool docs) {
  std::ostringstream out;
  std::vector<std::string> open;  // the sections currently open
  for (const auto& key : config_schema()) {
    std::vector<std::string> path;
    std::stringstream ss(key.name);
    for (std::string part; std::getline(ss, part, '.');) path.push_back(part);
    size_t common = 0;
    while (common < open.size() && common + 1 < path.size() && open[common] == path[common]) ++common;
    open.resize(common);
    for (size_t i = common; i + 1 < path.size(); ++i) {
      if (i == 0 && docs) out << "\n";
      out << std::string(2 * i, ' ') << path[i] << ":\n";
      open.push_back(path[i]);
    }
    const std::string indent(2 * (path.size() - 1), ' ');
    if (docs) {
      std::string doc = key.doc;
      if (!key.choices.empty()) {
        doc += " One of:";
        for (auto& c : key.choices) doc += " " + c;
        doc += ".";
      }
      if (key.required_for_train) doc += " Required for `ttt train`.";
      out << indent << "# " << doc << "\n";
    }
    out << indent << path.back() << ": " << format_value(key.field(cfg)) << "\n";
  }
  return out.str();
}

}  // namespace

std::string format_yaml_float(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest text that reads back exactly
  std::string s(buf, r.ptr);
  auto e = s.find_first_of("eE");
  std::string mant = e == std::string::npos ? s : s.substr(0, e);
  std::string exp = e == std::string::npos ? "" : s.substr(e + 1);
  if (mant.find('.') == std::string::npos) mant += ".0";  // YAML 1.1 floats need a dot
  if (!exp.empty() && exp[0] != '-' && exp[0] != '+') exp = "+" + exp;  // ... and a signed exponent
  return exp.empty() ? mant : mant + "e" + exp;
}

void apply_override(RunConfig& cfg, const std::string& assignment) {
  const std::string where = "--set " + assignment;
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument(where + ": expected section.key=value (e.g. --set train.lr=3e-3)");
  const std::string name = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  const ConfigKey* key = find_config_key(name);
  if (!key) {
    if (is_section(name))
      throw std::invalid_argument(where + ": '" + name + "' is a section; set one of its keys");
    throw std::invalid_argument(where + ": " + unknown_key_message(name));
  }
  RunConfig probe;
  YAML::Node v;
  if (std::holds_alternative<std::string*>(key->field(probe))) {
    v = YAML::Node(text);  // a string key takes the text as written (it may contain ':' or quotes)
  } else {
    try {
      v = YAML::Load(text);  // numbers, bools, lists ("[1,2]")
    } catch (const YAML::Exception&) {
      v = YAML::Node(text);
    }
    if (text.empty()) v = YAML::Node(YAML::NodeType::Null);
  }
  assign(cfg, *key, v, where);
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig cfg;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) throw std::invalid_argument("cannot open config file '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    load_document(cfg, ss.str(), path);
    cfg.source = path;
  }
  for (const auto& o : overrides) apply_override(cfg, o);
  return cfg;
}

RunConfig load_config_string(const std::string& yaml, const std::string& origin) {
  RunConfig cfg;
  load_document(cfg, yaml, origin);
  cfg.source = origin;
  return cfg;
}

void validate_for_training(const RunConfig& cfg, bool check_required) {
  const std::string from = cfg.source.empty() ? "config" : cfg.source;
  for (const auto& key : config_schema())
    if (check_required && key.required_for_train && !cfg.was_set(key.name)) {
      RunConfig tmp;
      throw std::invalid_argument(from + ": missing required key '" + key.name + "' (" +
                                  config_type_name(key.field(tmp)) + ": " + key.doc +
                                  ") — set it in the file or with --set " + key.name + "=...");
    }
  // Blame the place that set the value (a --set, or the file and line), not just the file.
  auto need = [&](bool ok, const std::string& key, const std::string& what) {
    if (!ok) throw std::invalid_argument(cfg.origin_of(key) + ": key '" + key + "': " + what);
  };
  const TrainConfig& t = cfg.train;
  need(t.lr > 0, "train.lr", "must be > 0");
  need(t.min_lr >= 0 && t.min_lr <= t.lr, "train.min_lr", "must be in [0, train.lr]");
  need(t.batch_tokens > 0, "train.batch_tokens", "must be > 0");
  need(t.micro_batch > 0, "train.micro_batch", "must be > 0");
  need(t.tokens >= 0, "train.tokens", "must be >= 0");
  need(t.steps >= 0, "train.steps", "must be >= 0");
  need(t.warmup_frac >= 0 && t.warmup_frac <= 1, "train.warmup_frac", "must be in [0, 1]");
  need(t.beta1 >= 0 && t.beta1 < 1, "train.beta1", "must be in [0, 1)");
  need(t.beta2 >= 0 && t.beta2 < 1, "train.beta2", "must be in [0, 1)");
  need(t.eps > 0, "train.eps", "must be > 0");
  need(t.weight_decay >= 0, "train.weight_decay", "must be >= 0");
  need(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = off)");
  need(t.log_every > 0, "train.log_every", "must be > 0");
  need(t.eval_every >= 0, "train.eval_every", "must be >= 0");
  need(t.eval_windows > 0, "train.eval_windows", "must be > 0");
  need(t.dtype == "fp32" || t.dtype == "bf16", "train.dtype", "must be fp32 or bf16");
  need(cfg.dist.timeout_s > 0, "dist.timeout_s", "must be > 0");
  need(cfg.dist.bucket_mb > 0, "dist.bucket_mb", "must be > 0");
  need(cfg.dist.zero == 0 || cfg.dist.zero == 1, "dist.zero", "must be 0 or 1");
  need(cfg.checkpoint.every >= 0, "checkpoint.every", "must be >= 0");
  need(cfg.checkpoint.keep_last >= 0, "checkpoint.keep_last", "must be >= 0 (0 = keep all)");
  need(cfg.model.max_seq_len > 0, "model.max_seq_len", "must be > 0");
  need(t.seq_len >= 0, "train.seq_len", "must be >= 0 (0 = model.max_seq_len)");
}

std::string RunConfig::origin_of(const std::string& key) const {
  auto it = origins.find(key);
  if (it != origins.end()) return it->second;
  return source.empty() ? "config" : source;
}

std::vector<std::string> config_differences(const RunConfig& a, const RunConfig& b) {
  RunConfig ca = a, cb = b;
  std::vector<std::string> out;
  for (const auto& key : config_schema()) {
    std::string va = format_value(key.field(ca)), vb = format_value(key.field(cb));
    if (va != vb) out.push_back(key.name + ": " + va + " -> " + vb);
  }
  return out;
}

std::string dump_config(const RunConfig& cfg) {
  RunConfig copy = cfg;  // the schema accessors take a mutable config
  return write_yaml(copy, false);
}

std::string defaults_yaml_with_docs() {
  RunConfig defaults;
  return "# configs/defaults.yaml — every configuration key with its default value and meaning.\n"
         "# Generated by `ttt config defaults` from trainer/config_schema.cpp (tests/test_trainer_config.cpp\n"
         "# checks that this file matches the code). A run's config file sets only what differs;\n"
         "# `--set section.key=value` overrides on the command line.\n\n" +
         write_yaml(defaults, true);
}

}  // namespace ttt
