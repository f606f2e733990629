// data/sha256.cpp — SHA-256 through OpenSSL's EVP digest interface (libcrypto).
#include "data/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <stdexcept>

namespace ttt {

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest is the one-shot form of DigestInit/Update/Final; it fails only when OpenSSL itself
  // cannot work (no memory, a FIPS provider refusing the algorithm).
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) != 1 || len != 32)
    throw std::runtime_error("sha256: OpenSSL's EVP_Digest failed");
  char hex[65];
  for (unsigned int i = 0; i < len; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return std::string(hex, 64);
}

}  // namespace ttt
