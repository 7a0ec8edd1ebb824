#include "engine/json.h"

#include <cerrno>
#include <cmath>
#include <cstring>

#include "engine/error.h"

namespace kiln {

std::string json_escape(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char b[32];
  for (int prec = 6; prec <= 17; ++prec) {  // shortest form that reads back exactly
    std::snprintf(b, sizeof b, "%.*g", prec, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

std::string json_number(float v) {
  if (!std::isfinite(v)) return "null";
  char b[32];
  for (int prec = 6; prec <= 9; ++prec) {
    std::snprintf(b, sizeof b, "%.*g", prec, static_cast<double>(v));
    if (std::strtof(b, nullptr) == v) break;
  }
  return b;
}

void JsonObject::key(const std::string& k) {
  if (!body_.empty()) body_ += ",";
  body_ += json_escape(k) + ":";
}
JsonObject& JsonObject::add(const std::string& k, const std::string& v) { key(k); body_ += json_escape(v); return *this; }
JsonObject& JsonObject::add(const std::string& k, double v) { key(k); body_ += json_number(v); return *this; }
JsonObject& JsonObject::add(const std::string& k, float v) { key(k); body_ += json_number(v); return *this; }
JsonObject& JsonObject::add(const std::string& k, long long v) { key(k); body_ += std::to_string(v); return *this; }
JsonObject& JsonObject::add(const std::string& k, bool v) { key(k); body_ += v ? "true" : "false"; return *this; }
JsonObject& JsonObject::add_raw(const std::string& k, const std::string& j) { key(k); body_ += j; return *this; }

JsonlWriter::JsonlWriter(const std::string& path, bool append) : path_(path) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  KILN_CHECK(f_, path << ": cannot open for writing: " << std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  if (f_) std::fclose(f_);
}

void JsonlWriter::write(const std::string& line) {
  if (!f_) return;
  bool ok = std::fputs(line.c_str(), f_) >= 0 && std::fputc('\n', f_) != EOF && std::fflush(f_) == 0;
  KILN_CHECK(ok, path_ << ": write failed: " << std::strerror(errno));
}

}  // namespace kiln
