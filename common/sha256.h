// SHA-256 as lowercase hex (OpenSSL EVP), the form the checkpoint manifest
// and CheckpointInfo.sha256 use.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace xfer::common {

// Incremental hashing (OpenSSL EVP). Not copyable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::string_view bytes);
  // The digest of everything given so far. Call once.
  std::string hex_digest();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

std::string sha256_hex(std::string_view bytes);

}  // namespace xfer::common
