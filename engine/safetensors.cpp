// The safetensors container: encode, decode with full validation, atomic file writes and the
// CRC-32 used by kiln checkpoints. Nothing here knows about models; engine/checkpoint.cpp maps
// models and optimizers onto it.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/json.h"
#include "engine/process.h"

namespace kiln {

namespace {

// The reference implementation refuses headers above 100,000,000 bytes; so do we (a corrupt
// length must not make us allocate gigabytes).
constexpr uint64_t kMaxHeader = 100000000;

bool host_little_endian() {
  uint32_t probe = 1;
  uint8_t b;
  std::memcpy(&b, &probe, 1);
  return b == 1;
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// ".tmp.<host>.": this machine's name, PID namespace and boot hashed to 8 hex digits (fixed
// length, no odd characters), so writers on machines (or containers of one machine) that share
// a directory never take each other's temp files for a dead process's.
const std::string& temp_tag() {
  static const std::string tag = [] {
    // The same text as before process.h (the raw readlink and boot_id lines), so temp files a
    // crashed writer of an earlier kiln left keep their tag and are still cleaned up.
    const std::string ns = pid_namespace(), boot = boot_id();
    const std::string id = host_name() + '\n' + (ns == "-" ? "" : "pid:[" + ns + "]") + '\n' +
                           (boot == "-" ? "" : boot);
    uint32_t h = 2166136261u;  // FNV-1a
    for (char c : id) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%08x", h);
    return ".tmp." + std::string(hex) + ".";
  }();
  return tag;
}

// The part of a file's name its temp files start with: at most 200 characters, so that the
// tag, a pid and a counter fit in NAME_MAX (255) whatever the name's own length.
std::string temp_stem(const std::string& path) {
  const size_t slash = path.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  return path.substr(0, base) + path.substr(base, 200);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string shape_json(const Shape& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {  // zlib takes uInt lengths
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

size_t st_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const std::string* SafetensorsFile::meta(const std::string& key) const {
  for (const auto& kv : metadata)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

std::vector<uint8_t> encode_safetensors(const SafetensorsFile& f) {
  KILN_CHECK(host_little_endian(), "safetensors: big-endian hosts are not supported");
  JsonObject meta;
  for (const auto& kv : f.metadata) meta.add(kv.first, kv.second);
  std::string header = "{\"__metadata__\":" + meta.str();
  // Wider dtypes first, as the reference writer lays them out: every tensor then starts at a
  // multiple of its element size (the data section starts 8-byte aligned), so a reader may view
  // the bytes in place (an I64 after an odd number of F32s could not be).
  std::vector<const StTensor*> order;
  for (const auto& t : f.tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const StTensor* a, const StTensor* b) {
    return st_dtype_size(a->dtype) > st_dtype_size(b->dtype);
  });
  uint64_t off = 0;
  for (const StTensor* tp : order) {
    const StTensor& t = *tp;
    size_t es = st_dtype_size(t.dtype);
    KILN_CHECK(es > 0, "safetensors: tensor " << t.name << " has unknown dtype " << t.dtype);
    KILN_CHECK(t.data.size() == static_cast<size_t>(shape_numel(t.shape)) * es,
               "safetensors: tensor " << t.name << " holds " << t.data.size() << " bytes, its shape "
                                      << shape_str(t.shape) << " needs " << shape_numel(t.shape) * es);
    header += "," + json_escape(t.name) + ":{\"dtype\":" + json_escape(t.dtype) +
              ",\"shape\":" + shape_json(t.shape) + ",\"data_offsets\":[" + std::to_string(off) +
              "," + std::to_string(off + t.data.size()) + "]}";
    off += t.data.size();
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';
  std::vector<uint8_t> out(8 + header.size() + off);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  uint8_t* p = out.data() + 8 + header.size();
  for (const StTensor* t : order) {
    if (!t->data.empty()) std::memcpy(p, t->data.data(), t->data.size());
    p += t->data.size();
  }
  return out;
}

SafetensorsFile decode_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  KILN_CHECK(host_little_endian(), what << ": big-endian hosts are not supported");
  KILN_CHECK(size >= 8, what << ": truncated: " << size
                             << " bytes, a safetensors file starts with an 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(data[i]) << (8 * i);
  KILN_CHECK(n <= size - 8, what << ": header length " << n << " runs past the end of the file ("
                                 << size << " bytes): truncated or not a safetensors file");
  KILN_CHECK(n <= kMaxHeader, what << ": header length " << n
                                   << " exceeds the 100,000,000-byte limit of safetensors");
  KILN_CHECK(n >= 2, what << ": header length " << n << " is too small for a JSON object");
  std::string text(reinterpret_cast<const char*>(data) + 8, n);
  const size_t bad = utf8_error_offset(text);
  KILN_CHECK(bad == std::string::npos,
             what << ": header is not valid UTF-8 (byte " << 8 + bad << " of the file)");
  JsonValue root;
  try {
    root = parse_json(text);
  } catch (const Error& e) {
    KILN_FAIL(what << ": header is not valid JSON (" << e.message() << ")");
  }
  KILN_CHECK(root.is_object(), what << ": header is " << json_type_name(root.type) << ", expected an object");
  const uint8_t* base = data + 8 + n;
  uint64_t data_size = size - 8 - n;
  SafetensorsFile f;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      KILN_CHECK(v.is_object(), what << ": __metadata__ is " << json_type_name(v.type) << ", expected an object");
      for (const auto& [k, mv] : v.members) {
        KILN_CHECK(mv.is_string(), what << ": __metadata__ key " << printable(k) << " is "
                                        << json_type_name(mv.type)
                                        << ", safetensors metadata values are strings");
        f.metadata.emplace_back(k, mv.text);
      }
      continue;
    }
    std::string tw = what + ": tensor " + printable(name);
    KILN_CHECK(v.is_object(), tw << ": entry is " << json_type_name(v.type) << ", expected an object");
    const JsonValue* dt = v.find("dtype");
    const JsonValue* sh = v.find("shape");
    const JsonValue* off = v.find("data_offsets");
    KILN_CHECK(dt && dt->is_string(), tw << ": missing or non-string dtype");
    KILN_CHECK(sh && sh->is_array(), tw << ": missing or non-array shape");
    KILN_CHECK(off && off->is_array() && off->items.size() == 2, tw << ": data_offsets must be [begin, end]");
    KILN_CHECK(v.members.size() == 3, tw << ": unexpected keys besides dtype, shape, data_offsets");
    size_t es = st_dtype_size(dt->text);
    KILN_CHECK(es > 0, tw << ": unknown dtype " << json_escape(dt->text));
    StTensor t;
    t.name = name;
    t.dtype = dt->text;
    uint64_t numel = 1;
    for (const auto& d : sh->items) {
      int64_t x = -1;
      try {
        x = d.as_int64();
      } catch (const Error&) {
      }
      KILN_CHECK(x >= 0, tw << ": shape entries must be non-negative integers");
      t.shape.push_back(x);
      KILN_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(x), &numel),
                 tw << ": shape " << shape_str(t.shape) << " overflows 64 bits");
    }
    int64_t b = -1, e = -1;
    try {
      b = off->items[0].as_int64();
      e = off->items[1].as_int64();
    } catch (const Error&) {
    }
    KILN_CHECK(b >= 0 && e >= b, tw << ": data_offsets must be non-negative integers with begin <= end");
    KILN_CHECK(static_cast<uint64_t>(e) <= data_size,
               tw << ": data_offsets [" << b << ", " << e << "] run past the data section (" << data_size
                  << " bytes): truncated file?");
    KILN_CHECK(numel <= data_size / es && static_cast<uint64_t>(e - b) == numel * es,
               tw << ": data_offsets span " << e - b << " bytes, shape " << shape_str(t.shape) << " of "
                  << t.dtype << " needs " << numel * es);
    t.data.assign(base + b, base + e);
    spans.emplace_back(b, e);
    f.tensors.push_back(std::move(t));
  }
  // Like the reference reader: the tensors tile the data section exactly.
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (const auto& [b, e] : spans) {
    KILN_CHECK(b == at, what << ": tensor data " << (b < at ? "overlaps" : "leaves a hole") << " at byte " << b
                             << " of the data section");
    at = e;
  }
  KILN_CHECK(at == data_size, what << ": " << data_size - at << " bytes after the last tensor (" << data_size
                                   << "-byte data section)");
  return f;
}

std::string read_safetensors_header(const std::string& path) {
  if (!not_regular_file_error(path).empty()) return "";  // a FIFO's open would block
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) return "";
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n < 2 || n > kMaxHeader) return "";
  std::string header(n, '\0');
  if (!in.read(&header[0], static_cast<std::streamsize>(n))) return "";
  return header;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const std::string dir = not_regular_file_error(path);
  KILN_CHECK(dir.empty(), "checkpoint " << path << ": " << dir);
  std::vector<uint8_t> bytes;
  const FileRead r = read_whole_file(path, bytes);
  KILN_CHECK(r.err == 0, "checkpoint " << path << ": " << r.why);
  return decode_safetensors(bytes.data(), bytes.size(), "checkpoint " + path);
}

bool is_stale_temp_file(const std::string& name) {
  // <target><tag><pid>.<k>
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || !all_digits(name.substr(dot + 1))) return false;
  const size_t pid_at = name.rfind('.', dot - 1);
  if (pid_at == std::string::npos) return false;
  const std::string pid = name.substr(pid_at + 1, dot - pid_at - 1);
  const std::string& tag = temp_tag();
  if (!all_digits(pid) || pid.size() > 9 || pid_at + 1 < tag.size() + 1 ||
      name.compare(pid_at + 1 - tag.size(), tag.size(), tag) != 0)
    return false;
  const pid_t p = static_cast<pid_t>(std::stol(pid));
  return process_gone(p);
}

std::string atomic_temp_name(const std::string& path, long pid, unsigned k) {
  return temp_stem(path) + temp_tag() + std::to_string(pid) + "." + std::to_string(k);
}

std::string link_target(const std::string& path) {
  std::string at = path;
  struct stat st;
  for (int links = 0; links <= 40; ++links) {
    if (::lstat(at.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return at;
    // (st_size is no guide: /proc/self/fd links report 64 whatever their length)
    std::vector<char> buf(std::max<size_t>(static_cast<size_t>(st.st_size), PATH_MAX) + 1);
    const ssize_t n = ::readlink(at.c_str(), buf.data(), buf.size());
    if (n < 0 || static_cast<size_t>(n) >= buf.size()) return at;  // (changed meanwhile)
    const std::string to(buf.data(), static_cast<size_t>(n));
    at = to[0] == '/' || at.find('/') == std::string::npos ? to : dir_of(at) + "/" + to;
  }
  return "";
}

void write_file_atomic(const std::string& user_path, const void* data, size_t size) {
  static std::atomic<unsigned> counter{0};
  KILN_USAGE_CHECK(!user_path.empty(), "cannot write a file with an empty name");
  // The file behind a link is replaced, not the link.
  const std::string path = link_target(user_path);
  KILN_CHECK(!path.empty(), user_path << ": " << std::strerror(ELOOP));
  std::string dir = dir_of(path);
  const std::string stem = temp_stem(path), prefix = stem.substr(stem.rfind('/') + 1) + temp_tag();
  if (DIR* d = ::opendir(dir.c_str())) {  // what a writer killed mid-write left for this file
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0 &&
          is_stale_temp_file(n))
        ::unlink((dir + "/" + n).c_str());
    }
    ::closedir(d);
  }
  // The rename would replace whatever is at `path`: a device (/dev/null, /dev/full), a FIFO or
  // a directory must stay what it is.
  struct stat existing;
  KILN_CHECK(::stat(path.c_str(), &existing) != 0 || S_ISREG(existing.st_mode),
             user_path << ": exists and is not a regular file; not replacing it");
  // A name taken already is another process's of the same pid (a restarted container's
  // leftover, its pid alive again as this one): the next counter.
  std::string tmp;
  int fd = -1;
  for (int tries = 0; fd < 0 && tries < 100000; ++tries) {
    tmp = atomic_temp_name(path, getpid(), counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  KILN_CHECK(fd >= 0, user_path << ": cannot create a temporary file in " << dir << ": "
                                << std::strerror(errno));
  int err = write_all(fd, data, size);
  if (!err) err = fsync_retry(fd);
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    KILN_FAIL(user_path << ": write failed, previous file left untouched: " << std::strerror(err));
  }
  // The rename is durable only once the directory entry is on disk.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync_retry(dfd);
    ::close(dfd);
  }
}

}  // namespace kiln
