#include "core/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/common/torch_status.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian data; this reader assumes a "
              "little-endian host");

namespace unlearning::core {
namespace {

constexpr uint64_t kHeaderLengthBytes = 8;
// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int64_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
    {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* DtypeByName(const std::string& name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* DtypeByType(torch::ScalarType type) {
  for (const DtypeInfo& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what));
}

// Reads a non-negative integer from a JSON value that must be an unsigned (or
// non-negative signed) integer; floats, strings and negatives are rejected.
bool GetUint(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

// a * b with overflow detection.
bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

absl::StatusOr<Entry> ParseEntry(const std::string& name, const nlohmann::json& v,
                                 uint64_t data_size) {
  if (!v.is_object()) return Invalid(absl::StrCat("entry '", name, "' is not an object"));
  auto dtype_it = v.find("dtype");
  auto shape_it = v.find("shape");
  auto offsets_it = v.find("data_offsets");
  if (dtype_it == v.end() || !dtype_it->is_string()) {
    return Invalid(absl::StrCat("entry '", name, "' has no string \"dtype\""));
  }
  if (shape_it == v.end() || !shape_it->is_array()) {
    return Invalid(absl::StrCat("entry '", name, "' has no array \"shape\""));
  }
  if (offsets_it == v.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return Invalid(absl::StrCat("entry '", name, "' has no [begin, end] \"data_offsets\""));
  }
  Entry e;
  e.name = name;
  const std::string dtype_name = dtype_it->get<std::string>();
  e.dtype = DtypeByName(dtype_name);
  if (e.dtype == nullptr) {
    return Invalid(absl::StrCat("entry '", name, "' has unsupported dtype '", dtype_name, "'"));
  }
  uint64_t bytes = static_cast<uint64_t>(e.dtype->size);
  for (const nlohmann::json& d : *shape_it) {
    uint64_t dim = 0;
    if (!GetUint(d, &dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(absl::StrCat("entry '", name, "' has an invalid dimension ", d.dump()));
    }
    if (MulOverflows(bytes, dim, &bytes)) {
      return Invalid(absl::StrCat("entry '", name, "' is too large"));
    }
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  if (!GetUint((*offsets_it)[0], &e.begin) || !GetUint((*offsets_it)[1], &e.end)) {
    return Invalid(absl::StrCat("entry '", name, "' has invalid data_offsets"));
  }
  if (e.begin > e.end || e.end > data_size) {
    return Invalid(absl::StrCat("entry '", name, "' data_offsets [", e.begin, ", ", e.end,
                                "] out of range (data is ", data_size, " bytes)"));
  }
  if (e.end - e.begin != bytes) {
    return Invalid(absl::StrCat("entry '", name, "' has ", e.end - e.begin,
                                " bytes but dtype and shape need ", bytes));
  }
  return e;
}

absl::Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("write failed: ", std::strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensors(const std::string& bytes) {
  if (bytes.size() < kHeaderLengthBytes)
    return Invalid("file shorter than the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), kHeaderLengthBytes);
  const uint64_t available = bytes.size() - kHeaderLengthBytes;
  if (header_len > available) {
    return Invalid(absl::StrCat("header length ", header_len, " exceeds the file (", available,
                                " bytes after the length)"));
  }
  if (header_len > kMaxHeaderBytes) return Invalid("header too large");
  const char* header_begin = bytes.data() + kHeaderLengthBytes;
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) return Invalid("header is not valid JSON");
  if (!header.is_object()) return Invalid("header is not a JSON object");

  const uint64_t data_offset = kHeaderLengthBytes + header_len;
  const uint64_t data_size = bytes.size() - data_offset;
  SafetensorsFile file;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Invalid("__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Invalid(absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        }
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    absl::StatusOr<Entry> entry = ParseEntry(it.key(), *it, data_size);
    if (!entry.ok()) return entry.status();
    entries.push_back(*std::move(entry));
  }

  // The tensors must tile the data section exactly: no overlaps, no holes,
  // nothing trailing.
  std::vector<const Entry*> order;
  order.reserve(entries.size());
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const Entry* e : order) {
    if (e->begin < cursor) {
      return Invalid(absl::StrCat("entry '", e->name, "' overlaps the previous tensor"));
    }
    if (e->begin > cursor) {
      return Invalid(absl::StrCat("gap in the data section before entry '", e->name, "'"));
    }
    cursor = e->end;
  }
  if (cursor != data_size) {
    return Invalid(
        absl::StrCat("data section has ", data_size, " bytes but the tensors cover ", cursor));
  }

  absl::Status status = TorchCall("safetensors: allocating tensors", [&] {
    for (const Entry& e : entries) {
      torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
      if (e.end > e.begin) {
        std::memcpy(t.data_ptr(), bytes.data() + data_offset + e.begin, e.end - e.begin);
      }
      file.tensors.emplace(e.name, std::move(t));
    }
  });
  if (!status.ok()) return status;
  return file;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (::access(path.c_str(), F_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("safetensors: no such file: ", path));
    }
    return absl::PermissionDeniedError(absl::StrCat("safetensors: cannot open ", path));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("safetensors: read failed: ", path));
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(buffer.str());
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat(file.status().message(), " (", path, ")"));
  }
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::map<std::string, torch::Tensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<torch::Tensor> cpu;
  cpu.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") return Invalid("a tensor cannot be named __metadata__");
    if (!tensor.defined()) return Invalid(absl::StrCat("tensor '", name, "' is undefined"));
    const DtypeInfo* dtype = DtypeByType(tensor.scalar_type());
    if (dtype == nullptr) {
      return Invalid(absl::StrCat("tensor '", name, "' has unsupported dtype ",
                                  c10::toString(tensor.scalar_type())));
    }
    // C++17 lambdas cannot capture structured bindings (clang refuses; the fuzz build uses it).
    const torch::Tensor& source = tensor;
    absl::StatusOr<torch::Tensor> t =
        TorchCall("safetensors: copying to CPU", [&]() -> absl::StatusOr<torch::Tensor> {
          return source.detach().to(torch::kCPU).contiguous();
        });
    if (!t.ok()) return t.status();
    const uint64_t nbytes = static_cast<uint64_t>(t->numel()) * dtype->size;
    header[name] = {{"dtype", dtype->name},
                    {"shape", t->sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(*std::move(t));
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference
  // writer does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const uint64_t header_len = header_text.size();
  std::string out;
  out.reserve(kHeaderLengthBytes + header_len + offset);
  out.append(reinterpret_cast<const char*>(&header_len), kHeaderLengthBytes);
  out.append(header_text);
  for (const torch::Tensor& t : cpu) {
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, metadata);
  if (!bytes.ok()) return bytes.status();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("safetensors: cannot create ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  absl::Status status = WriteAll(fd, bytes->data(), bytes->size());
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::InternalError(absl::StrCat("fsync failed: ", std::strerror(errno)));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::InternalError(absl::StrCat("close failed: ", std::strerror(errno)));
  }
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("safetensors: ", path, ": ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace unlearning::core
