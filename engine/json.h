// Minimal JSON output for metrics (JSONL) and headers: an ordered object builder and an
// append-only JSONL writer that flushes every record. Non-finite numbers are written as null
// (JSON has no NaN).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace kiln {

std::string json_escape(const std::string& s);  // with the surrounding quotes
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
};

}  // namespace kiln
