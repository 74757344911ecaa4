#include "core/certs/ed25519.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

namespace unlearning::core::certs {
namespace {

EVP_PKEY* Key(void* p) { return static_cast<EVP_PKEY*>(p); }

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

absl::StatusOr<std::string> RawPublic(EVP_PKEY* pkey) {
  unsigned char raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw) {
    return absl::InternalError("ed25519: cannot read the public key");
  }
  return std::string(reinterpret_cast<const char*>(raw), len);
}

absl::Status WriteAtomically(const std::string& path, const std::string& text, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", strerror(errno)));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

void FsyncDir(const std::string& file) {
  std::string dir = std::filesystem::path(file).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

SigningKey::SigningKey(void* pkey) : pkey_(pkey) {}
SigningKey::SigningKey(SigningKey&& other) noexcept
    : pkey_(std::exchange(other.pkey_, nullptr)),
      public_key_(std::move(other.public_key_)),
      key_id_(std::move(other.key_id_)) {}
SigningKey& SigningKey::operator=(SigningKey&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(Key(pkey_));
    pkey_ = std::exchange(other.pkey_, nullptr);
    public_key_ = std::move(other.public_key_);
    key_id_ = std::move(other.key_id_);
  }
  return *this;
}
SigningKey::~SigningKey() { EVP_PKEY_free(Key(pkey_)); }

absl::StatusOr<SigningKey> SigningKey::Generate() {
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  const bool ok =
      ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return absl::InternalError("ed25519: key generation failed");
  SigningKey key(pkey);
  auto raw = RawPublic(pkey);
  if (!raw.ok()) return raw.status();
  key.public_key_ = *raw;
  key.key_id_ = KeyId(*raw);
  return key;
}

absl::StatusOr<SigningKey> SigningKey::FromPrivatePem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError("signing key: not a PEM private key");
  }
  SigningKey key(pkey);
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("signing key: not an Ed25519 key");
  }
  auto raw = RawPublic(pkey);
  if (!raw.ok()) return raw.status();
  key.public_key_ = *raw;
  key.key_id_ = KeyId(*raw);
  return key;
}

absl::StatusOr<std::string> SigningKey::Sign(std::string_view message) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t len = sizeof sig;
  const bool ok =
      ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, Key(pkey_)) == 1 &&
      EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || len != sizeof sig) return absl::InternalError("ed25519: signing failed");
  return std::string(reinterpret_cast<const char*>(sig), len);
}

absl::StatusOr<std::string> SigningKey::PrivatePem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  const bool ok = bio != nullptr && PEM_write_bio_PrivateKey(bio, Key(pkey_), nullptr, nullptr, 0,
                                                             nullptr, nullptr) == 1;
  std::string out = ok ? BioText(bio) : "";
  BIO_free(bio);
  if (!ok) return absl::InternalError("ed25519: cannot encode the private key");
  return out;
}

bool VerifyEd25519(std::string_view public_key, std::string_view message,
                   std::string_view signature) {
  if (public_key.size() != 32 || signature.size() != 64) return false;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(public_key.data()), 32);
  if (pkey == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), 64,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return ok;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return ToHex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string KeyId(std::string_view public_key) { return Sha256Hex(public_key).substr(0, 32); }

absl::StatusOr<std::string> PublicKeyPem(std::string_view public_key) {
  if (public_key.size() != 32) return absl::InvalidArgumentError("ed25519: key is not 32 bytes");
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(public_key.data()), 32);
  BIO* bio = BIO_new(BIO_s_mem());
  const bool ok = pkey != nullptr && bio != nullptr && PEM_write_bio_PUBKEY(bio, pkey) == 1;
  std::string out = ok ? BioText(bio) : "";
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  if (!ok) return absl::InternalError("ed25519: cannot encode the public key");
  return out;
}

absl::StatusOr<std::string> ParsePublicKey(std::string_view text) {
  std::string_view trimmed = text;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) {
    trimmed.remove_prefix(1);
  }
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) {
    trimmed.remove_suffix(1);
  }
  if (trimmed.size() == 64) {
    auto raw = FromHex(trimmed);
    if (raw.ok()) return raw;
  }
  BIO* bio = BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size()));
  EVP_PKEY* pkey = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        "public key: neither a PEM public key nor 64 hex digits (a raw Ed25519 key)");
  }
  absl::StatusOr<std::string> raw = EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519
                                        ? RawPublic(pkey)
                                        : absl::InvalidArgumentError("public key: not Ed25519");
  EVP_PKEY_free(pkey);
  return raw;
}

std::string ToHex(std::string_view bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    out.push_back(kHex[(static_cast<unsigned char>(c) >> 4) & 0xF]);
    out.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
  }
  return out;
}

absl::StatusOr<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("hex: odd number of digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("hex: not a hex digit");
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

absl::StatusOr<SigningKey> LoadOrCreateKeyFile(const std::string& path, bool create) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if ((st.st_mode & 077) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("signing key ", path, " is accessible by group or others (mode ",
                       absl::StrFormat("%03o", st.st_mode & 0777), "); chmod 600 it"));
    }
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) return absl::InternalError(absl::StrCat("cannot read ", path));
    auto key = SigningKey::FromPrivatePem(text.str());
    if (!key.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", key.status().message()));
    }
    return key;
  }
  if (errno != ENOENT) {
    return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", strerror(errno)));
  }
  if (!create) return absl::NotFoundError(absl::StrCat("signing key ", path, " does not exist"));
  auto key = SigningKey::Generate();
  if (!key.ok()) return key.status();
  auto pem = key->PrivatePem();
  if (!pem.ok()) return pem.status();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  const bool ok = ::write(fd, pem->data(), pem->size()) == static_cast<ssize_t>(pem->size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  }
  FsyncDir(path);
  return key;
}

absl::Status WritePublicKeyFiles(const SigningKey& key, const std::string& prefix) {
  auto pem = PublicKeyPem(key.public_key());
  if (!pem.ok()) return pem.status();
  if (auto s = WriteAtomically(prefix + ".pem", *pem, 0644); !s.ok()) return s;
  if (auto s = WriteAtomically(prefix + ".hex", ToHex(key.public_key()) + "\n", 0644); !s.ok()) {
    return s;
  }
  FsyncDir(prefix + ".pem");
  return absl::OkStatus();
}

}  // namespace unlearning::core::certs
