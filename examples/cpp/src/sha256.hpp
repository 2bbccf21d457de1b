// SHA-256 (FIPS 180-4), self-contained: the bundle's file digests are checked without OpenSSL.
#pragma once
#include <cstdint>
#include <string>

namespace bmd {

// Lowercase hex sha256 of a whole file; throws std::runtime_error if it cannot be read.
std::string sha256_file(const std::string& path);
// Lowercase hex sha256 of a byte string (used by the self-test).
std::string sha256_hex(const std::string& bytes);

}  // namespace bmd
