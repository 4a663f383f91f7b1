// SHA-256 through OpenSSL's EVP interface, fed in pieces.
#pragma once

#include <string>
#include <string_view>

namespace xfer::coordinator::checkpoint {

// Not copyable; not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::string_view data);
  // 64 lowercase hex digits. Call once; update() is not allowed afterwards.
  std::string hex_digest();

 private:
  void* context_;  // EVP_MD_CTX*, kept opaque so OpenSSL headers stay in the .cc
};

std::string sha256_hex(std::string_view data);

}  // namespace xfer::coordinator::checkpoint
