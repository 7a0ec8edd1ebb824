// Checks shared by the YAML readers (run configs, sweep files): yaml-cpp accepts a second
// document and repeated keys silently (YAML::Load keeps the first document, a map the last
// value), so both are refused with the line that repeats.
#pragma once
#ifdef KILN_HAVE_YAML
#include <yaml-cpp/yaml.h>

#include <string>

namespace kiln {

// The text of a YAML file (`what`: "config", "sweep"): usage errors name the path when it is
// a directory or cannot be opened, or holds more than 16 MiB (a device such as /dev/zero would
// otherwise be read until memory runs out).
std::string read_yaml_text(const std::string& path, const char* what);
// Usage error naming `path` and the line of a "---" that starts a second document.
void check_one_document(const std::string& text, const std::string& path);
// Usage error when two keys of `map` are the same option ('_' and '-' alike): "PATH: key 'K'
// (line L): already set at line M", or a key holds a line break or control character (every
// message about it would span lines). `where` follows the path (" in base"), may be empty.
void check_unique_keys(const YAML::Node& map, const std::string& path, const std::string& where);

struct OptionSpec;
// A YAML list given as the value of option `opt` (null: not an option), as the option's text:
// [30, 60] -> "30,60". A usage error "ORIGIN: expected a single float, got a list" unless `opt`
// is a list option, or when an item is not a scalar.
std::string yaml_list_text(const YAML::Node& list, const std::string& origin,
                           const OptionSpec* opt);

}  // namespace kiln
#endif
