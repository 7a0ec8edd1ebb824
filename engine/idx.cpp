// IDX files (MNIST, Fashion-MNIST) and the raw-or-gzip reader under every dataset loader.
// read_idx trusts nothing in the file: it checks the magic, each dimension, the element count
// (no overflow, at most 1e10) and that the payload is exactly as long as declared, and every
// message starts with the path and says at which byte things went wrong. Memory use is bounded
// by what the file really holds, not by what its header claims.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/data_reader.h"
#include "engine/dataset.h"
#include "engine/error.h"

namespace kiln {

// ---- DataReader -------------------------------------------------------------------------------
struct DataReader::Impl {
  FILE* f = nullptr;
  bool gz = false;
  int64_t size = -1;
  z_stream zs{};
  bool zs_open = false, stream_end = false;
  uint64_t compressed_consumed = 0;  // compressed bytes handed to zlib and used
  uint8_t in[1 << 16];
  size_t in_len = 0, in_pos = 0;

  ~Impl() {
    if (zs_open) inflateEnd(&zs);
    if (f) std::fclose(f);
  }
  std::string path;
  // fread, with EINTR retried and any other read error thrown naming the file (glibc's fread
  // returns short on both, which read as a truncated or corrupt file).
  size_t read_some(uint8_t* dst, size_t n) {
    for (;;) {
      const size_t r = std::fread(dst, 1, n, f);
      if (r > 0 || !std::ferror(f)) return r;
      const int err = errno;
      std::clearerr(f);
      if (err == EINTR) continue;
      KILN_FAIL(path << ": read failed: " << std::strerror(err));
    }
  }
  bool refill() {
    if (in_pos < in_len) return true;
    in_len = read_some(in, sizeof in);
    in_pos = 0;
    return in_len > 0;
  }
  // At least k (<= sizeof in) unread bytes in the buffer, reading more if the file has them:
  // a gzip member's magic may straddle two reads.
  bool ensure(size_t k) {
    if (in_len - in_pos >= k) return true;
    std::memmove(in, in + in_pos, in_len - in_pos);
    in_len -= in_pos;
    in_pos = 0;
    while (in_len < k) {
      const size_t r = read_some(in + in_len, sizeof in - in_len);
      if (r == 0) break;
      in_len += r;
    }
    return in_len >= k;
  }
};

DataReader::DataReader(const std::string& path) : impl_(new Impl), path_(path) {
  Impl& d = *impl_;
  d.path = path;
  d.f = std::fopen(path.c_str(), "rb");
  KILN_CHECK(d.f, path << ": cannot open: " << std::strerror(errno));
  struct stat st {};
  KILN_CHECK(fstat(fileno(d.f), &st) == 0 && S_ISREG(st.st_mode), path << ": not a regular file");
  if (std::fseek(d.f, 0, SEEK_END) == 0) d.size = std::ftell(d.f);
  std::rewind(d.f);
  d.refill();
  d.gz = d.in_len >= 2 && d.in[0] == 0x1f && d.in[1] == 0x8b;
  if (d.gz) {
    KILN_CHECK(inflateInit2(&d.zs, 16 + MAX_WBITS) == Z_OK, path << ": zlib inflateInit failed");
    d.zs_open = true;
  }
}

DataReader::~DataReader() = default;

bool DataReader::gzip() const {
  return impl_->gz;
}
int64_t DataReader::raw_size() const {
  return impl_->gz ? -1 : impl_->size;
}

size_t DataReader::read(uint8_t* dst, size_t n) {
  Impl& d = *impl_;
  size_t got = 0;
  if (!d.gz) {
    while (got < n && d.refill()) {
      size_t k = std::min(n - got, d.in_len - d.in_pos);
      std::memcpy(dst + got, d.in + d.in_pos, k);
      d.in_pos += k;
      got += k;
    }
    offset_ += got;
    return got;
  }
  while (got < n) {
    if (d.stream_end) {
      // A gzip file may hold several members (`cat a.gz b.gz`), and zero bytes after one are
      // padding (to a tape or disk block) that gzip and Python's gzip skip; anything else
      // after the end of the stream is corruption.
      while (d.refill() && d.in[d.in_pos] == 0) {
        ++d.in_pos;
        ++d.compressed_consumed;
      }
      if (!d.refill()) break;
      KILN_CHECK(d.ensure(2) && d.in[d.in_pos] == 0x1f && d.in[d.in_pos + 1] == 0x8b,
                 path_ << ": unexpected bytes after the gzip stream at compressed byte offset "
                       << d.compressed_consumed);
      inflateReset(&d.zs);
      d.stream_end = false;
    }
    if (!d.refill()) {
      KILN_FAIL(path_ << ": truncated gzip stream: compressed data ends at byte "
                      << d.compressed_consumed << " after " << offset_ + got << " inflated bytes");
    }
    d.zs.next_in = d.in + d.in_pos;
    d.zs.avail_in = static_cast<uInt>(d.in_len - d.in_pos);
    size_t want = std::min<size_t>(n - got, 1u << 30);
    d.zs.next_out = dst + got;
    d.zs.avail_out = static_cast<uInt>(want);
    int rc = inflate(&d.zs, Z_NO_FLUSH);
    size_t used = (d.in_len - d.in_pos) - d.zs.avail_in;
    d.in_pos += used;
    d.compressed_consumed += used;
    got += want - d.zs.avail_out;
    if (rc == Z_STREAM_END) {
      d.stream_end = true;
    } else {
      KILN_CHECK(rc == Z_OK || rc == Z_BUF_ERROR,
                 path_ << ": corrupt gzip data near compressed byte offset "
                       << d.compressed_consumed << ": " << (d.zs.msg ? d.zs.msg : zError(rc)));
    }
  }
  offset_ += got;
  return got;
}

uint64_t DataReader::skip(uint64_t limit) {
  uint8_t buf[1 << 14];
  uint64_t total = 0;
  while (total < limit) {
    size_t k = read(buf, static_cast<size_t>(std::min<uint64_t>(sizeof buf, limit - total)));
    total += k;
    if (k < sizeof buf) break;
  }
  return total;
}

// ---- whole files ------------------------------------------------------------------------------
// A library caller gets OutOfMemory naming the file, not std::bad_alloc (the apps' loaders add
// what they were loading in front).
static std::string reading(const std::string& path) {
  return "reading " + path;
}

static std::vector<uint8_t> read_file_maybe_gz_impl(const std::string& path) {
  DataReader r(path);
  std::vector<uint8_t> out;
  const size_t chunk = 1 << 20;
  for (;;) {
    size_t old = out.size();
    out.resize(old + chunk);
    size_t k = r.read(out.data() + old, chunk);
    out.resize(old + k);
    if (k < chunk) break;
  }
  return out;
}

std::vector<uint8_t> read_file_maybe_gz(const std::string& path) {
  return with_memory_context([&] { return reading(path); },
                             [&] { return read_file_maybe_gz_impl(path); });
}

// ---- IDX --------------------------------------------------------------------------------------
static uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

static IdxArray read_idx_impl(const std::string& path, int64_t max_records,
                              const IdxHeaderCheck& check);

IdxArray read_idx(const std::string& path, int64_t max_records, const IdxHeaderCheck& check) {
  return with_memory_context([&] { return reading(path); },
                             [&] { return read_idx_impl(path, max_records, check); });
}

// The magic and the dims, checked; the reader is left at the first data byte.
static std::vector<int64_t> read_idx_header(DataReader& r, const std::string& path) {
  constexpr int64_t kMaxElements = 10000000000LL;  // 1e10: far above any IDX dataset
  const char* unc = r.gzip() ? " (uncompressed)" : "";
  uint8_t head[4 + 4 * 4];
  size_t n = r.read(head, 4);
  KILN_CHECK(n > 0, path << ": empty file (expected a 4-byte IDX magic number)");
  KILN_CHECK(n == 4, path << ": file ends at byte " << n << unc << " inside the 4-byte IDX magic");
  KILN_CHECK(head[0] == 0 && head[1] == 0,
             path << ": bad IDX magic 0x" << std::hex << be32(head) << std::dec
                  << " at byte 0 (expected 0x0000080N: two zero bytes, type 0x08, N dimensions)");
  KILN_CHECK(head[2] == 0x08, path << ": unsupported IDX element type 0x" << std::hex
                                   << int(head[2]) << std::dec
                                   << " at byte 2 (only 0x08, unsigned byte, is supported)");
  const int ndim = head[3];
  KILN_CHECK(ndim >= 1 && ndim <= 4,
             path << ": IDX magic at byte 0 declares " << ndim << " dimensions (expected 1..4)");
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  n = r.read(head + 4, 4 * ndim);
  KILN_CHECK(n == 4u * ndim, path << ": header truncated: file ends at byte " << 4 + n << unc
                                  << ", a " << ndim << "-dimensional IDX header is " << header
                                  << " bytes");
  std::vector<int64_t> dims;
  int64_t elems = 1;
  for (int k = 0; k < ndim; ++k) {
    uint32_t v = be32(head + 4 + 4 * k);
    KILN_CHECK(v <= 0x7FFFFFFFu, path << ": dimension " << k << " at byte " << 4 + 4 * k << " is "
                                      << v << " (larger than a signed 32-bit size)");
    dims.push_back(v);
    // Checked before multiplying, so the product can neither overflow nor pass the limit.
    KILN_CHECK(v == 0 || elems <= kMaxElements / static_cast<int64_t>(v),
               path << ": dimension " << k << " at byte " << 4 + 4 * k << " (" << v
                    << ") brings the element count past 1e10; not a plausible IDX file");
    elems *= v;
  }
  return dims;
}

std::vector<int64_t> read_idx_dims(const std::string& path) {
  DataReader r(path);
  return read_idx_header(r, path);
}

static IdxArray read_idx_impl(const std::string& path, int64_t max_records,
                              const IdxHeaderCheck& check) {
  DataReader r(path);
  const char* unc = r.gzip() ? " (uncompressed)" : "";
  IdxArray a;
  a.dims = read_idx_header(r, path);
  // The caller's checks come before any data is read or allocated: a gzip of a few megabytes
  // can inflate to gigabytes.
  if (check) check(a.dims);
  const size_t header = 4 + 4 * a.dims.size();
  uint64_t expected = 1;
  for (int64_t v : a.dims) expected *= static_cast<uint64_t>(v);
  if (r.raw_size() >= 0) {
    // Raw file: size known, so a lying header is caught before any allocation.
    uint64_t have = static_cast<uint64_t>(r.raw_size()) - header;
    KILN_CHECK(have >= expected, path << ": truncated: expected " << expected
                                      << " bytes of data after the " << header
                                      << "-byte header, found " << have << " (file ends at byte "
                                      << r.raw_size() << ")");
  }
  // The bytes kept: every record, or the first max_records of them.
  uint64_t keep = expected;
  if (max_records >= 0 && a.dims[0] > max_records)
    keep = static_cast<uint64_t>(max_records) * (expected / static_cast<uint64_t>(a.dims[0]));
  // Grow in chunks: a gzip file's true size is unknown until inflated.
  const uint64_t chunk = 16u << 20;
  while (a.data.size() < keep) {
    size_t old = a.data.size();
    size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, keep - old));
    a.data.resize(old + want);
    size_t got = r.read(a.data.data() + old, want);
    KILN_CHECK(got == want, path << ": truncated: expected " << expected
                                 << " bytes of data after the " << header << "-byte header, found "
                                 << old + got << " (file ends at byte " << header + old + got << unc
                                 << ")");
  }
  // The records not kept: read past, and there must be as many bytes as the header says.
  if (keep < expected) {
    const uint64_t skipped = r.skip(expected - keep);
    KILN_CHECK(skipped == expected - keep,
               path << ": truncated: expected " << expected << " bytes of data after the " << header
                    << "-byte header, found " << keep + skipped << " (file ends at byte "
                    << header + keep + skipped << unc << ")");
  }
  // Reading on to the end also makes zlib verify the gzip CRC of the whole stream.
  const uint64_t extra = r.skip(64u << 20);
  KILN_CHECK(extra == 0, path << ": " << extra << (extra >= (64u << 20) ? "+" : "")
                              << " trailing bytes after the " << expected
                              << " bytes of data declared by the header (data ends at byte "
                              << header + expected << unc << ")");
  return a;
}

}  // namespace kiln
