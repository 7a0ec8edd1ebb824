// Minimal JSON output for metrics (JSONL) and headers: an ordered object builder and an
// append-only JSONL writer that flushes every record. Non-finite numbers are written as null
// (JSON has no NaN).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace kiln {

// With the surrounding quotes. Valid UTF-8 passes through; a byte that is not part of a valid
// UTF-8 sequence is written as \u00XX (read as Latin-1), so the output is always valid JSON text.
std::string json_escape(const std::string& s);
// The offset of the first byte that is not part of a valid UTF-8 sequence (no overlong forms,
// no surrogates, nothing past U+10FFFF), or std::string::npos when s is valid UTF-8.
size_t utf8_error_offset(const std::string& s);
// s itself when it is printable ASCII, else json_escape(s): for names read from a file that
// go into one-line error messages (no newlines or terminal escapes pass through).
std::string printable(const std::string& s);
// s with each control character (below 0x20, and DEL) as its JSON escape (\n, \u001b) and the
// rest, UTF-8 included, as is: an error message on one line, whatever a file put in it.
std::string escape_controls(const std::string& s);
std::string json_number(double v);              // shortest round-trip form; null if not finite
std::string json_number(float v);

class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& v);
  JsonObject& add(const std::string& key, const char* v) { return add(key, std::string(v)); }
  JsonObject& add(const std::string& key, double v);
  JsonObject& add(const std::string& key, float v);  // shortest form that reads back as this float
  JsonObject& add(const std::string& key, int v) { return add(key, static_cast<long long>(v)); }
  JsonObject& add(const std::string& key, long v) { return add(key, static_cast<long long>(v)); }
  JsonObject& add(const std::string& key, long long v);
  JsonObject& add(const std::string& key, bool v);
  JsonObject& add_raw(const std::string& key, const std::string& json);  // already JSON
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

// Opens `path` for writing (truncating unless append); an empty path makes a closed writer.
class JsonlWriter {
 public:
  JsonlWriter(const std::string& path, bool append);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;
  bool open() const { return f_ != nullptr; }
  void write(const std::string& json_line);  // one record + '\n', flushed

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
  bool pending_newline_ = false;  // appending after a torn last line
};

}  // namespace kiln

// ---- Parsing (checkpoint headers, tool outputs) -----------------------------------------------
namespace kiln {

// A parsed JSON value. Objects keep their key order; numbers keep their source text so
// integers beyond 2^53 (byte offsets) read back exactly through as_int64().
struct JsonValue {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0;
  std::string text;  // the string's value, or a number's source text
  std::vector<JsonValue> items;                             // Array
  std::vector<std::pair<std::string, JsonValue>> members;   // Object

  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Number; }
  const JsonValue* find(const std::string& key) const;  // nullptr when absent (or not an object)
  // The number as an exact integer; throws when it is not one or does not fit.
  int64_t as_int64() const;
};
const char* json_type_name(JsonValue::Type t);

// Strict RFC 8259: one value, optional surrounding whitespace, no trailing commas, no
// comments, no NaN, duplicate object keys rejected, nesting limited to 512 levels. Errors are
// runtime Errors "JSON at offset N: <what>", which callers prefix with the file name.
JsonValue parse_json(const std::string& text);

}  // namespace kiln
