// data/sha256.h — SHA-256 (FIPS 180-4) of a byte string, as lowercase hex.
//
// Used to identify a tokenizer: the checksum of the .model file's bytes is stored in every shard
// so a model and its data can be checked for agreement. Computed by OpenSSL (libssl-dev).
#pragma once

#include <string>
#include <string_view>

namespace ttt {

std::string sha256_hex(std::string_view bytes);

}  // namespace ttt
