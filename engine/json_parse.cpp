// Strict JSON parser (RFC 8259) for safetensors headers and other machine-written JSON. It is a
// recursive-descent parser over a byte string with a depth limit, so hostile input (the fuzz
// target feeds it arbitrary checkpoint headers) cannot overflow the stack.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_set>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"

namespace kiln {

namespace {

constexpr int kMaxDepth = 512;
constexpr size_t kHashKeysFrom = 16;

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  JsonValue parse_document() {
    ws();
    JsonValue v = value(0);
    ws();
    if (i_ != s_.size()) fail("unexpected '" + printable(s_[i_]) + "' after the value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    KILN_FAIL("JSON at offset " << i_ << ": " << what);
  }
  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    char b[8];
    std::snprintf(b, sizeof b, "\\x%02x", u);
    return b;
  }
  bool eof() const { return i_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[i_]; }
  void ws() {
    while (!eof() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (eof()) fail(std::string("expected '") + c + "', got the end of the text");
    if (s_[i_] != c) fail(std::string("expected '") + c + "', got '" + printable(s_[i_]) + "'");
    ++i_;
  }
  void literal(const char* word) {
    size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) fail(std::string("invalid literal (expected '") + word + "')");
    i_ += n;
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 512 levels");
    if (eof()) fail("expected a value, got the end of the text");
    JsonValue v;
    char c = s_[i_];
    if (c == '{') {
      v.type = JsonValue::Type::Object;
      ++i_;
      ws();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      // Duplicate keys: a linear scan while the object is small, a hash set past that (a
      // hostile header of millions of keys took hours when every key scanned all before it).
      std::unordered_set<std::string> keys;
      for (;;) {
        ws();
        if (peek() != '"') fail("expected a string key");
        size_t key_at = i_;
        std::string key = string();
        bool dup = false;
        if (v.members.size() < kHashKeysFrom) {
          for (const auto& m : v.members) dup = dup || m.first == key;
        } else {
          if (keys.empty())
            for (const auto& m : v.members) keys.insert(m.first);
          dup = !keys.insert(key).second;
        }
        if (dup) {
          i_ = key_at;
          fail("duplicate key " + json_escape(key));
        }
        ws();
        expect(':');
        ws();
        JsonValue item = value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(item));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = JsonValue::Type::Array;
      ++i_;
      ws();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        v.items.push_back(value(depth + 1));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = JsonValue::Type::String;
      v.text = string();
      return v;
    }
    if (c == 't' || c == 'f') {
      literal(c == 't' ? "true" : "false");
      v.type = JsonValue::Type::Bool;
      v.boolean = c == 't';
      return v;
    }
    if (c == 'n') {
      literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    fail("unexpected '" + printable(c) + "'");
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  JsonValue number() {
    size_t b = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
      if (digit(peek())) fail("leading zeros are not allowed");
    } else if (digit(peek())) {
      while (digit(peek())) ++i_;
    } else {
      fail("expected a digit");
    }
    if (peek() == '.') {
      ++i_;
      if (!digit(peek())) fail("expected a digit after '.'");
      while (digit(peek())) ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!digit(peek())) fail("expected a digit in the exponent");
      while (digit(peek())) ++i_;
    }
    JsonValue v;
    v.type = JsonValue::Type::Number;
    v.text = s_.substr(b, i_ - b);
    v.number = strtod_c(v.text.c_str(), nullptr);  // overflow gives inf; as_int64 rejects it
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      u <<= 4;
      if (c >= '0' && c <= '9') u |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') u |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') u |= static_cast<unsigned>(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return u;
  }

  static void utf8(std::string& o, unsigned cp) {
    if (cp < 0x80) {
      o += static_cast<char>(cp);
    } else if (cp < 0x800) {
      o += static_cast<char>(0xC0 | (cp >> 6));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      o += static_cast<char>(0xE0 | (cp >> 12));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      o += static_cast<char>(0xF0 | (cp >> 18));
      o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    expect('"');
    std::string o;
    for (;;) {
      if (eof()) fail("unterminated string");
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return o;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        o += c;
        ++i_;
        continue;
      }
      ++i_;
      if (eof()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': o += '"'; break;
        case '\\': o += '\\'; break;
        case '/': o += '/'; break;
        case 'b': o += '\b'; break;
        case 'f': o += '\f'; break;
        case 'n': o += '\n'; break;
        case 'r': o += '\r'; break;
        case 't': o += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate needs its low half
            if (s_.compare(i_, 2, "\\u") != 0) fail("unpaired surrogate in \\u escape");
            i_ += 2;
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate in \\u escape");
          }
          utf8(o, cp);
          break;
        }
        default:
          --i_;
          fail("bad escape '\\" + printable(e) + "'");
      }
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

const JsonValue* JsonValue::find(const std::string& key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

int64_t JsonValue::as_int64() const {
  KILN_CHECK(type == Type::Number, "expected an integer, got " << json_type_name(type));
  bool plain = !text.empty() && text.find_first_of(".eE") == std::string::npos;
  errno = 0;
  char* end = nullptr;
  long long v = plain ? std::strtoll(text.c_str(), &end, 10) : 0;
  KILN_CHECK(plain && errno == 0 && end && *end == 0, "expected an integer, got " << text);
  return v;
}

const char* json_type_name(JsonValue::Type t) {
  switch (t) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "a boolean";
    case JsonValue::Type::Number: return "a number";
    case JsonValue::Type::String: return "a string";
    case JsonValue::Type::Array: return "an array";
    case JsonValue::Type::Object: return "an object";
  }
  return "?";
}

JsonValue parse_json(const std::string& text) { return Parser(text).parse_document(); }

}  // namespace kiln
