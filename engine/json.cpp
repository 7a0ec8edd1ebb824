#include "engine/json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "engine/error.h"
#include "engine/file_io.h"
#include "engine/numtext.h"

namespace kiln {

namespace {
// \u00XX: a control character, or a byte that is not part of valid UTF-8 (read back as the
// code point U+00XX; the original byte is not recoverable, which only the error text needs).
void append_u_escape(std::string& o, unsigned char c) {
  char b[8];
  std::snprintf(b, sizeof b, "\\u%04x", c);
  o += b;
}

// Length of the valid UTF-8 sequence starting at p[0] (of n bytes left), or 0 if none.
size_t utf8_sequence(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong below U+0800
    if (c == 0xed) hi = 0x9f;  // UTF-16 surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;  // overlong below U+10000
    if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
  } else {
    return 0;  // a continuation byte, an overlong lead (c0, c1) or f5..ff
  }
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i)
    if (p[i] < 0x80 || p[i] > 0xbf) return 0;
  return len;
}

// A control character (below 0x20, or DEL: a terminal control too) as its JSON escape;
// false, appending nothing, for any other byte.
bool append_control_escape(std::string& o, unsigned char c) {
  switch (c) {
    case '\n':
      o += "\\n";
      return true;
    case '\r':
      o += "\\r";
      return true;
    case '\t':
      o += "\\t";
      return true;
    default:
      if (c >= 0x20 && c != 0x7f) return false;
      append_u_escape(o, c);
      return true;
  }
}
}  // namespace

size_t utf8_error_offset(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_sequence(p + i, s.size() - i);
    if (len == 0) return i;
    i += len;
  }
  return std::string::npos;
}

std::string escape_controls(const std::string& s) {
  std::string o;
  for (unsigned char c : s)
    if (!append_control_escape(o, c)) o += static_cast<char>(c);
  return o;
}

std::string printable(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return json_escape(s);
  return s;
}

std::string json_escape(const std::string& s) {
  std::string o = "\"";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = p[i];
    if (c >= 0x80) {
      const size_t len = utf8_sequence(p + i, s.size() - i);
      if (len == 0) {
        append_u_escape(o, c);
      } else {
        o.append(s, i, len);
        i += len - 1;
      }
      continue;
    }
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (!append_control_escape(o, c)) {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  CLocaleScope c;  // '.' whatever the host's locale
  char b[32];
  for (int prec = 6; prec <= 17; ++prec) {  // shortest form that reads back exactly
    std::snprintf(b, sizeof b, "%.*g", prec, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

std::string json_number(float v) {
  if (!std::isfinite(v)) return "null";
  CLocaleScope c;
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
  // fopen's "a"/"w", but a FIFO no process reads is refused at once (ENXIO) instead of blocking
  const int fd =
      open_without_waiting(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0666);
  KILN_CHECK(fd >= 0 || errno != ENXIO,
             path << ": a FIFO no process reads (start its reader first)");
  if (fd >= 0 && !(f_ = ::fdopen(fd, append ? "a" : "w"))) ::close(fd);
  KILN_CHECK(f_, path << ": cannot open for writing: " << std::strerror(errno));
  if (append) {  // a torn last line (a run that failed or was killed mid-record)
    const int fd = fileno(f_);
    struct stat st {};
    char last = '\n';
    if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
        last != '\n')
      pending_newline_ = true;
  }
}

JsonlWriter::~JsonlWriter() {
  if (f_) std::fclose(f_);
}

void JsonlWriter::write(const std::string& line) {
  if (!f_) return;
  const int fd = fileno(f_);
  std::string out = (pending_newline_ ? "\n" : "") + line + "\n";
  const off_t start = lseek(fd, 0, SEEK_END);
  if (const int err = write_all(fd, out.data(), out.size())) {
    if (start >= 0) (void)ftruncate(fd, start);  // no torn record for a reader or a resume
    KILN_FAIL(path_ << ": write failed: " << std::strerror(err));
  }
  pending_newline_ = false;
}

}  // namespace kiln
