// Ed25519 signing keys and signatures through OpenSSL's libcrypto (EVP_PKEY_ED25519), plus the
// key file handling of the server's certificate signing key (docs/certificates.md).
//
// Thread-safety: a SigningKey is immutable after construction; Sign may be called concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace unlearning::core::certs {

class SigningKey {
 public:
  // A fresh random key. kInternal if OpenSSL fails.
  static absl::StatusOr<SigningKey> Generate();
  // From a PKCS#8 PEM private key ("-----BEGIN PRIVATE KEY-----"). kInvalidArgument if it does
  // not parse or is not an Ed25519 key.
  static absl::StatusOr<SigningKey> FromPrivatePem(std::string_view pem);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // The 64-byte signature of `message` (raw bytes). kInternal if OpenSSL fails.
  absl::StatusOr<std::string> Sign(std::string_view message) const;
  // Raw 32-byte public key.
  const std::string& public_key() const { return public_key_; }
  // KeyId(public_key()).
  const std::string& key_id() const { return key_id_; }
  // PKCS#8 PEM of the private key (what a key file holds).
  absl::StatusOr<std::string> PrivatePem() const;

 private:
  explicit SigningKey(void* pkey);
  void* pkey_ = nullptr;  // EVP_PKEY*, opaque so OpenSSL stays out of the header.
  std::string public_key_;
  std::string key_id_;
};

// True iff `signature` (64 raw bytes) is a valid Ed25519 signature of `message` under
// `public_key` (32 raw bytes).
bool VerifyEd25519(std::string_view public_key, std::string_view message,
                   std::string_view signature);

// The first 32 hex digits of SHA-256(public_key): how records name the key they were signed with.
std::string KeyId(std::string_view public_key);
// SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----") of a raw 32-byte public key.
absl::StatusOr<std::string> PublicKeyPem(std::string_view public_key);
// A public key from a file's text: a PEM public key, or 64 hex digits (whitespace around is
// ignored). Returns the raw 32 bytes. kInvalidArgument otherwise.
absl::StatusOr<std::string> ParsePublicKey(std::string_view text);

// Lower-case hex of bytes, and back (kInvalidArgument for odd length or a non-hex digit).
std::string ToHex(std::string_view bytes);
absl::StatusOr<std::string> FromHex(std::string_view hex);
// SHA-256 (lower-case hex) of `data`.
std::string Sha256Hex(std::string_view data);

// The server's key: reads the PEM private key at `path`, or, if the file does not exist and
// `create` is true, generates one and writes it there with mode 0600 (created exclusively,
// fsynced, directory fsynced). kFailedPrecondition if an existing file is readable by group or
// others; kNotFound if it is missing and !create; kInvalidArgument if it does not parse.
absl::StatusOr<SigningKey> LoadOrCreateKeyFile(const std::string& path, bool create);
// Publishes the public half next to the data: <prefix>.pem (SubjectPublicKeyInfo PEM) and
// <prefix>.hex (64 hex digits and a newline), replaced atomically. kInternal on IO errors.
absl::Status WritePublicKeyFiles(const SigningKey& key, const std::string& prefix);

}  // namespace unlearning::core::certs
