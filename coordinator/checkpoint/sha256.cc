#include "coordinator/checkpoint/sha256.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace xfer::coordinator::checkpoint {
namespace {

EVP_MD_CTX* ctx(void* p) { return static_cast<EVP_MD_CTX*>(p); }

}  // namespace

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (context_ == nullptr || EVP_DigestInit_ex(ctx(context_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx(context_));
    throw std::runtime_error("OpenSSL: cannot initialise a SHA-256 context");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx(context_)); }

void Sha256::update(std::string_view data) {
  if (EVP_DigestUpdate(ctx(context_), data.data(), data.size()) != 1) {
    throw std::runtime_error("OpenSSL: SHA-256 update failed");
  }
}

std::string Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx(context_), digest, &length) != 1) {
    throw std::runtime_error("OpenSSL: SHA-256 final failed");
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

std::string sha256_hex(std::string_view data) {
  Sha256 hash;
  hash.update(data);
  return hash.hex_digest();
}

}  // namespace xfer::coordinator::checkpoint
