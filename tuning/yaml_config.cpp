// YAML run configs: a flat mapping of option: value, the same names as the flags (hyphens or
// underscores). Lists are accepted for list options (milestones: [30, 60]).
#include <cerrno>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "engine/file_io.h"
#include "engine/json.h"
#include "tuning/options.h"
#include "tuning/yaml_util.h"

#ifdef KILN_HAVE_YAML
#include <yaml-cpp/yaml.h>
#endif

namespace kiln {

#ifdef KILN_HAVE_YAML
std::string read_yaml_text(const std::string& path, const char* what) {
  const std::string dir = directory_error(path);
  KILN_USAGE_CHECK(dir.empty(), path << ": " << dir << " (a " << what << " is one YAML file)");
  std::string text;  // (a FIFO is not waited on: see read_text_file)
  const FileRead r = read_text_file(path, size_t{16} << 20, text);
  // Usage errors: a file that is not there or not a config; a read that fails is runtime's.
  KILN_USAGE_CHECK(
      r.failure == FileRead::kNone || r.failure == FileRead::kRead,
      path << ": "
           << (r.failure == FileRead::kTooLarge
                   ? "more than 16 MiB: not a " + std::string(what) + " file"
               : r.failure == FileRead::kEmptyFifo ? r.why
                                                   : "cannot open " + std::string(what) + " file"));
  KILN_CHECK(r.failure == FileRead::kNone, path << ": read failed");
  return text;
}

// Found by lines, not by YAML::LoadAll, which loops forever on some malformed input in
// yaml-cpp 0.7.
void check_one_document(const std::string& text, const std::string& path) {
  std::istringstream lines(text);
  std::string line;
  bool content = false;
  int ended = 0;  // the line of a document-end marker (...): yaml-cpp drops what follows it
  auto is_marker = [&](const char* m) {
    return line.compare(0, 3, m) == 0 &&
           (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
  };
  bool started = false;  // a --- or content seen: a '%' line is no longer a directive
  for (int n = 1; std::getline(lines, line); ++n) {
    const bool marker = is_marker("---");
    if (!started && !marker && !line.empty() && line[0] == '%') continue;  // %YAML 1.2, %TAG
    started = started || marker;
    KILN_USAGE_CHECK(
        !(marker && content),
        path << ": line " << n << ": a second YAML document (---); the file is one mapping");
    if (is_marker("...")) {
      if (!ended) ended = n;
      continue;
    }
    // A document's content may start on its --- line ("--- {model: mlp}").
    const std::string body = marker ? line.substr(3) : line;
    const size_t first = body.find_first_not_of(" \t\r");
    if (first != std::string::npos && body[first] != '#') {
      KILN_USAGE_CHECK(!ended, path << ": line " << n
                                    << ": text after the end of the YAML document "
                                    << "('...' on line " << ended
                                    << ") would be dropped; the file is one mapping");
      content = true;
    }
  }
}

void check_unique_keys(const YAML::Node& map, const std::string& path, const std::string& where) {
  std::vector<std::pair<std::string, int>> seen;  // normalised key, line
  for (const auto& kv : map) {
    const int line = kv.first.Mark().line + 1;
    KILN_USAGE_CHECK(kv.first.IsScalar(),
                     path << where << ": line " << line << ": keys must be plain words");
    const std::string key = kv.first.as<std::string>();
    for (unsigned char ch : key)  // one-line errors: a key is echoed in every message about it
      KILN_USAGE_CHECK(ch >= 0x20 && ch != 0x7f, path << where << ": line " << line << ": key "
                                                      << printable(key)
                                                      << " has a line break or control character");
    const std::string norm = normalize_key(key);
    for (const auto& [k, l] : seen)
      KILN_USAGE_CHECK(k != norm, path << where << ": key '" << printable(key) << "' (line " << line
                                       << "): already set at line " << l);
    seen.emplace_back(norm, line);
  }
}

std::string yaml_list_text(const YAML::Node& list, const std::string& origin,
                           const OptionSpec* opt) {
  KILN_USAGE_CHECK(opt && opt->type == "list", origin << ": expected a single "
                                                      << (opt ? opt->type : "value")
                                                      << ", got a list");
  std::string out;
  for (const auto& item : list) {
    KILN_USAGE_CHECK(item.IsScalar(), origin << ": list items must be scalars");
    out += (out.empty() ? "" : ",") + item.as<std::string>();
  }
  return out;
}
#endif

void apply_yaml_config(RunConfig& cfg, const std::string& path,
                       std::map<std::string, std::string>* keys) {
#ifdef KILN_HAVE_YAML
  const std::string text = read_yaml_text(path, "config");
  check_one_document(text, path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    KILN_USAGE_FAIL(path << ": not valid YAML at line " << e.mark.line + 1 << ": "
                         << printable(e.msg));
  }
  if (root.IsNull()) return;  // an empty file changes nothing
  KILN_USAGE_CHECK(root.IsMap(), path << ": expected a mapping of option: value at the top level");
  const OptionTable& table = run_options();
  const YAML::Node& croot = root;                         // const: operator[] must not insert
  for (const char* sweep_key : {"parameters", "method"})  // a sweep file handed to --config
    KILN_USAGE_CHECK(!croot[sweep_key], path << ": key '" << sweep_key
                                             << "': this is a sweep file; run it with: sweep "
                                             << path);
  try {
    check_unique_keys(root, path, "");  // last-wins would hide one
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      std::string origin = path + ": key '" + printable(key) + "'";
      const YAML::Node& v = kv.second;
      std::string value;
      if (v.IsScalar()) {
        value = v.as<std::string>();
      } else if (v.IsSequence()) {
        // (an unknown key: table.set below names it, with a suggestion)
        if (const OptionSpec* s = table.find(key)) value = yaml_list_text(v, origin, s);
      } else if (v.IsNull()) {
        KILN_USAGE_FAIL(origin << ": has no value");
      } else {
        KILN_USAGE_FAIL(origin << ": nested mappings are not options (write option: value)");
      }
      table.set(cfg, key, value, origin);
      if (keys) (*keys)[table.find(key)->name] = printable(key);
    }
  } catch (const YAML::Exception& e) {  // anything yaml-cpp rejects that the checks above missed
    KILN_USAGE_FAIL(path << ": not a valid config at line " << e.mark.line + 1 << ": "
                         << printable(e.msg));
  }
#else
  (void)cfg;
  (void)keys;
  KILN_USAGE_FAIL(path << ": this kiln was built without yaml-cpp; install libyaml-cpp-dev");
#endif
}

}  // namespace kiln
