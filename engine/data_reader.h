// DataReader: sequential reads from a raw or gzip file (detected by the 1f 8b magic, not by the
// name), so the IDX and CIFAR loaders read exactly what a header declares and never inflate a
// whole file up front (a bad or hostile .gz cannot force a huge allocation). Errors name the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace kiln {

class DataReader {
 public:
  explicit DataReader(const std::string& path);  // runtime error if it cannot be opened
  ~DataReader();
  DataReader(const DataReader&) = delete;
  DataReader& operator=(const DataReader&) = delete;

  // Reads up to n bytes; fewer only at the end of the (uncompressed) data.
  size_t read(uint8_t* dst, size_t n);
  // Reads and discards up to `limit` bytes; returns how many there were.
  uint64_t skip(uint64_t limit);
  uint64_t offset() const { return offset_; }  // uncompressed bytes delivered so far
  bool gzip() const;
  // Size of a raw file in bytes; -1 for gzip (unknown until inflated).
  int64_t raw_size() const;
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  uint64_t offset_ = 0;
};

}  // namespace kiln
