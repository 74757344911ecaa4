#include "server/auth.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include <nlohmann/json.hpp>

#include "core/common/sha256.h"

namespace unlearning::server {
namespace {

constexpr char kTokenHint[] =
    "send `authorization: Bearer <token>` (unlearnctl: --token-file FILE or UNLEARN_TOKEN_FILE)";

absl::StatusOr<uint32_t> ParseRole(const std::string& role) {
  if (role == "query") return kRoleQuery;
  if (role == "erase") return kRoleErase;
  if (role == "admin") return kRoleAdmin;
  if (role == "metrics") return kRoleMetrics;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role '", role, "' (roles: query, erase, admin, metrics)"));
}

bool IsLowerHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// gRPC's code names (the numeric codes are absl's, which names them the same way).
std::string CodeName(grpc::StatusCode code) {
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", static_cast<int>(code)) : name;
}

}  // namespace

std::string RoleNames(uint32_t roles) {
  std::vector<std::string> names;
  if (roles & kRoleQuery) names.push_back("query");
  if (roles & kRoleErase) names.push_back("erase");
  if (roles & kRoleAdmin) names.push_back("admin");
  if (roles & kRoleMetrics) names.push_back("metrics");
  return names.empty() ? "none" : absl::StrJoin(names, " or ");
}

namespace {

absl::Status ExpiredError(const TokenEntry& entry) {
  return absl::UnauthenticatedError(
      absl::StrCat("bearer token '", entry.name, "' expired at ",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", entry.expires, absl::UTCTimeZone()),
                   " (ask an admin for a new one: unlearnctl token new --expires ...)"));
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(const std::string& text, const std::string& source) {
  TokenTable table;
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = absl::StrCat(source, ":", number, ": ");
    const absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (stripped.empty() || stripped[0] == '#') continue;
    nlohmann::json j =
        nlohmann::json::parse(std::string(stripped), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "not a JSON object (expected {\"name\":..., \"sha256\":..., \"roles\":[...]})"));
    }
    for (const auto& [key, value] : j.items()) {
      if (key != "name" && key != "sha256" && key != "roles" && key != "models" &&
          key != "expires") {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "unknown key '", key, "'",
            key == "token" ? " (store the token's sha256, never the token: unlearnctl token hash)"
                           : ""));
      }
    }
    TokenEntry e;
    if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "\"name\" must be a non-empty string"));
    }
    e.name = j["name"].get<std::string>();
    if (!j.contains("sha256") || !j["sha256"].is_string() ||
        !IsLowerHex64(j["sha256"].get<std::string>())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       "\"sha256\" must be the token's SHA-256 as 64 lowercase hex digits "
                       "(unlearnctl token hash)"));
    }
    e.sha256 = j["sha256"].get<std::string>();
    if (!j.contains("roles") || !j["roles"].is_array() || j["roles"].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "\"roles\" must be a non-empty array of query, erase, admin"));
    }
    for (const auto& r : j["roles"]) {
      if (!r.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, "roles must be strings"));
      }
      absl::StatusOr<uint32_t> role = ParseRole(r.get<std::string>());
      if (!role.ok())
        return absl::InvalidArgumentError(absl::StrCat(where, role.status().message()));
      e.roles |= *role;
    }
    if (j.contains("models")) {
      if (!j["models"].is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "\"models\" must be an array of model ids (omit it for all)"));
      }
      for (const auto& m : j["models"]) {
        if (!m.is_string() || m.get<std::string>().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, "\"models\" entries must be non-empty strings"));
        }
        e.models.push_back(m.get<std::string>());
      }
    }
    if (j.contains("expires")) {
      std::string err;
      if (!j["expires"].is_string() ||
          !absl::ParseTime(absl::RFC3339_full, j["expires"].get<std::string>(), &e.expires, &err)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where,
            "\"expires\" must be an RFC 3339 time such as \"2027-06-30T00:00:00Z\" (omit it "
            "for a token that does not expire)"));
      }
    }
    if (!names.insert(e.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "duplicate name '", e.name, "'"));
    }
    if (table.by_hash_.count(e.sha256) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "the same token hash is listed twice ('", e.name, "' and '",
                       table.by_hash_[e.sha256].name, "')"));
    }
    table.by_hash_[e.sha256] = std::move(e);
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read token file '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading token file '", path, "'"));
  return Parse(text.str(), path);
}

size_t TokenTable::ExpiredAt(absl::Time now) const {
  return static_cast<size_t>(std::count_if(
      by_hash_.begin(), by_hash_.end(), [now](const auto& e) { return e.second.ExpiredAt(now); }));
}

const TokenEntry* TokenTable::FindByToken(const std::string& token) const {
  return FindByHash(core::Sha256Hex(token));
}

const TokenEntry* TokenTable::FindByHash(const std::string& sha256) const {
  auto it = by_hash_.find(sha256);
  return it == by_hash_.end() ? nullptr : &it->second;
}

std::string TokenFileLine(const std::string& name, const std::string& token,
                          const std::vector<std::string>& roles,
                          const std::vector<std::string>& models, absl::Time expires) {
  nlohmann::ordered_json j;
  j["name"] = name;
  j["sha256"] = core::Sha256Hex(token);
  j["roles"] = roles;
  if (!models.empty()) j["models"] = models;
  if (expires != absl::InfiniteFuture()) {
    j["expires"] = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", expires, absl::UTCTimeZone());
  }
  return j.dump();
}

bool Caller::MayUse(const std::string& model_id) const {
  if (models.empty()) return true;
  return std::find(models.begin(), models.end(), model_id) != models.end();
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::Create(const AuthOptions& options) {
  if (options.token_file.empty() && !options.insecure) {
    return absl::FailedPreconditionError(
        "no --token-file: pass --token-file FILE (docs/security.md), or --insecure to serve "
        "without authentication (every caller may load, roll back and erase)");
  }
  if (!options.token_file.empty() && options.insecure) {
    return absl::InvalidArgumentError("--insecure and --token-file exclude each other");
  }
  std::unique_ptr<Authorizer> auth(new Authorizer(options));
  if (!options.token_file.empty()) {
    absl::StatusOr<TokenTable> table = TokenTable::LoadFile(options.token_file);
    if (!table.ok()) return table.status();
    absl::MutexLock lock(&auth->mu_);
    auth->table_ = std::make_shared<const TokenTable>(*std::move(table));
  }
  absl::Status audit = auth->OpenAuditLog();
  if (!audit.ok()) return audit;
  return auth;
}

Authorizer::~Authorizer() {
  absl::MutexLock lock(&audit_mu_);
  if (audit_ != nullptr) std::fclose(audit_);
}

namespace {

// The last line of `path` without its newline ("" if the file is missing or empty). Reads at most
// the last 1 MiB (an audit line is far shorter).
std::string LastLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff start = std::max<std::streamoff>(0, size - (1 << 20));
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  const size_t newline = tail.rfind('\n');
  return newline == std::string::npos ? tail : tail.substr(newline + 1);
}

}  // namespace

absl::StatusOr<int64_t> VerifyAuditLog(const std::string& path, const std::string& first_prev) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read audit log ", path));
  std::string line, prev_hash;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("prev") || !j["prev"].is_string()) {
      return absl::DataLossError(
          absl::StrCat(path, " line ", n, ": not an audit entry with a \"prev\" hash"));
    }
    const std::string prev = j["prev"].get<std::string>();
    const std::string& want = n == 1 ? first_prev : prev_hash;
    if (!(n == 1 && first_prev.empty()) && prev != want) {
      return absl::DataLossError(
          absl::StrCat(path, " line ", n, ": \"prev\" is ", prev, " but the ",
                       n == 1 ? std::string("chain starts at ") : "line before hashes to ", want,
                       " (a line was changed, removed, inserted or reordered)"));
    }
    prev_hash = core::Sha256Hex(line);
  }
  return n;
}

absl::Status Authorizer::OpenAuditLog() {
  if (options_.audit_log.empty()) return absl::OkStatus();
  const std::string last = LastLine(options_.audit_log);
  std::FILE* f = std::fopen(options_.audit_log.c_str(), "a");
  if (f == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open --audit-log '", options_.audit_log, "' for appending"));
  }
  absl::MutexLock lock(&audit_mu_);
  if (audit_ != nullptr) std::fclose(audit_);
  audit_ = f;
  // Continue the chain from the file's last line; a new (rotated) file continues from the last
  // line this process wrote.
  if (!last.empty()) audit_prev_ = core::Sha256Hex(last);
  return absl::OkStatus();
}

absl::Status Authorizer::Reload() {
  absl::Status audit = OpenAuditLog();
  if (options_.token_file.empty()) return audit;
  absl::StatusOr<TokenTable> table = TokenTable::LoadFile(options_.token_file);
  if (!table.ok()) {
    return absl::Status(table.status().code(),
                        absl::StrCat(table.status().message(), " (kept the previous tokens)"));
  }
  {
    absl::MutexLock lock(&mu_);
    table_ = std::make_shared<const TokenTable>(*std::move(table));
  }
  return audit;
}

size_t Authorizer::tokens() const {
  absl::MutexLock lock(&mu_);
  return table_ ? table_->size() : 0;
}

size_t Authorizer::expired_tokens() const {
  absl::MutexLock lock(&mu_);
  return table_ ? table_->ExpiredAt(absl::Now()) : 0;
}

absl::StatusOr<Caller> Authorizer::Authenticate(const grpc::ServerContextBase& ctx) const {
  if (options_.insecure) return AuthenticateHeader("");
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(absl::StrCat("no bearer token: ", kTokenHint));
  }
  return AuthenticateHeader(std::string(it->second.data(), it->second.size()));
}

absl::StatusOr<Caller> Authorizer::AuthenticateHeader(const std::string& value) const {
  if (options_.insecure) {
    Caller c;
    c.roles = kAnyRole;
    c.insecure = true;
    return c;
  }
  if (value.empty()) {
    return absl::UnauthenticatedError(absl::StrCat("no bearer token: ", kTokenHint));
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(value, kBearer) || value.size() == kBearer.size()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the authorization header is not `Bearer <token>`: ", kTokenHint));
  }
  const std::string token = value.substr(kBearer.size());
  std::shared_ptr<const TokenTable> table;
  {
    absl::MutexLock lock(&mu_);
    table = table_;
  }
  const TokenEntry* entry = table ? table->FindByToken(token) : nullptr;
  if (entry == nullptr) {
    return absl::UnauthenticatedError(
        "unknown bearer token (not in the server's token file; revoked, mistyped, or the wrong "
        "--token-file?)");
  }
  if (entry->ExpiredAt(absl::Now())) return ExpiredError(*entry);
  Caller c;
  c.name = entry->name;
  c.roles = entry->roles;
  c.models = entry->models;
  c.token_sha256 = entry->sha256;
  return c;
}

absl::Status Authorizer::AuthorizeMetricsScrape(const std::string& authorization,
                                                const std::string& peer) {
  absl::StatusOr<Caller> caller = AuthenticateHeader(authorization);
  absl::Status status = caller.status();
  if (caller.ok() && !caller->Has(kRoleMetrics | kRoleAdmin)) {
    status = absl::PermissionDeniedError(
        absl::StrCat("GET /metrics needs the metrics or admin role; token '", caller->name,
                     "' has ", RoleNames(caller->roles)));
  }
  if (!status.ok()) {  // scrapes that pass are not audited (one every scrape interval)
    AuditEntry entry;
    entry.caller = caller.ok() ? caller->name : "-";
    entry.peer = peer;
    entry.rpc = "HTTP/GET /metrics";
    entry.code = static_cast<grpc::StatusCode>(status.code());
    entry.reason = std::string(status.message());
    Audit(entry);
  }
  return status;
}

absl::StatusOr<Caller> Authorizer::Refresh(const Caller& caller) const {
  if (caller.insecure) return caller;
  std::shared_ptr<const TokenTable> table;
  {
    absl::MutexLock lock(&mu_);
    table = table_;
  }
  const TokenEntry* entry = table ? table->FindByHash(caller.token_sha256) : nullptr;
  if (entry == nullptr) {
    return absl::UnauthenticatedError(
        "this stream's bearer token was revoked (the token file was reloaded): reconnect with a "
        "valid token");
  }
  if (entry->ExpiredAt(absl::Now())) return ExpiredError(*entry);
  Caller c = caller;
  c.name = entry->name;
  c.roles = entry->roles;
  c.models = entry->models;
  return c;
}

absl::Status Authorizer::Check(const Caller& caller, uint32_t any_of, const std::string& model_id,
                               const std::string& rpc) {
  if (!caller.Has(any_of)) {
    return absl::PermissionDeniedError(absl::StrCat(rpc, " needs the ", RoleNames(any_of),
                                                    " role; token '", caller.name, "' has ",
                                                    RoleNames(caller.roles),
                                                    " (ask an admin to add the role to the "
                                                    "token file)"));
  }
  if (!model_id.empty() && !caller.MayUse(model_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("token '", caller.name, "' may not use model '", model_id,
                     "' (it is restricted to: ", absl::StrJoin(caller.models, ", "), ")"));
  }
  return absl::OkStatus();
}

void Authorizer::Audit(const AuditEntry& entry) {
  absl::MutexLock lock(&audit_mu_);
  if (audit_ == nullptr) return;
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  j["caller"] = entry.caller;
  j["peer"] = entry.peer;
  j["rpc"] = entry.rpc;
  if (!entry.model_id.empty()) j["model"] = entry.model_id;
  if (!entry.request_id.empty()) j["request_id"] = entry.request_id;
  if (!entry.job_id.empty()) j["job_id"] = entry.job_id;
  j["code"] = CodeName(entry.code);
  if (!entry.reason.empty()) j["reason"] = entry.reason;
  j["prev"] = audit_prev_;
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  audit_prev_ = core::Sha256Hex(line);
  std::fwrite(line.data(), 1, line.size(), audit_);
  std::fputc('\n', audit_);
  std::fflush(audit_);
}

AuthorizedCall::AuthorizedCall(Authorizer* auth, const grpc::ServerContextBase& ctx,
                               std::string rpc)
    : auth_(auth) {
  entry_.rpc = std::move(rpc);
  entry_.peer = ctx.peer();
  if (auto auth_context = ctx.auth_context(); auth_context != nullptr) {
    auto cn = auth_context->FindPropertyValues("x509_common_name");
    if (!cn.empty()) {
      entry_.peer += absl::StrCat(" cn=", std::string(cn.front().data(), cn.front().size()));
    }
  }
  if (auth_ == nullptr) {
    caller_.roles = kAnyRole;
    caller_.insecure = true;
    authenticated_ = true;
    entry_.caller = "insecure";
    return;
  }
  absl::StatusOr<Caller> caller = auth_->Authenticate(ctx);
  if (caller.ok()) {
    caller_ = *std::move(caller);
    authenticated_ = true;
    entry_.caller = caller_.insecure ? "insecure" : caller_.name;
  } else {
    entry_.caller = "-";
    entry_.reason = std::string(caller.status().message());
  }
}

grpc::Status AuthorizedCall::Check(uint32_t any_of, const std::string& model_id) {
  if (!authenticated_) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, entry_.reason);
  }
  absl::Status status = Authorizer::Check(caller_, any_of, model_id, entry_.rpc);
  if (!status.ok()) {
    entry_.reason = std::string(status.message());
    return ToGrpcStatus(status);
  }
  return grpc::Status::OK;
}

void AuthorizedCall::Audit(const grpc::Status& status) {
  if (auth_ == nullptr) return;
  AuditEntry e = entry_;
  e.code = status.error_code();
  if (status.ok()) e.reason.clear();
  auth_->Audit(e);
}

grpc::ServerUnaryReactor* AuthorizedCall::Finish(grpc::ServerUnaryReactor* reactor,
                                                 const grpc::Status& status) {
  Audit(status);
  reactor->Finish(status);
  return reactor;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace unlearning::server
