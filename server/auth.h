// Authentication, authorization and the audit log (docs/security.md).
//
// Callers present a bearer token (`authorization: Bearer <token>` metadata). The token file lists
// each token's SHA-256 (never the token), its name (the caller's identity: audit log, job owner),
// its roles and optionally the models it may use. Every handler asks an AuthorizedCall first:
//   missing or unknown token                -> UNAUTHENTICATED
//   known token without the role or model   -> PERMISSION_DENIED
// and the call writes one audit line when it finishes (who, peer, RPC, model, request/job id,
// status code; never request contents). No torch in here.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

namespace unlearning::server {

// Roles, a bit set.
enum Role : uint32_t {
  kRoleQuery = 1,    // Generate, Score, Classify, Sample, ListModels, DescribeModel
  kRoleErase = 2,    // Erase (submit, watch own), GetJob/CancelJob/ListJobs/GetCertificate (own)
  kRoleAdmin = 4,    // everything: LoadModel, RollbackModel (force), every caller's jobs
  kRoleMetrics = 8,  // GET /metrics only (a Prometheus scraper); admin may scrape too
};
// The roles of the gRPC API (a metrics-only token has none of them).
inline constexpr uint32_t kAnyRole = kRoleQuery | kRoleErase | kRoleAdmin;

// "query", "erase+admin", ...
std::string RoleNames(uint32_t roles);

// One line of the token file.
struct TokenEntry {
  std::string name;    // identity: audit log, job owner
  std::string sha256;  // lowercase hex SHA-256 of the token
  uint32_t roles = 0;
  std::vector<std::string> models;  // empty = every model
  // From "expires" (RFC 3339); at and after it the token is refused (UNAUTHENTICATED).
  absl::Time expires = absl::InfiniteFuture();
  bool ExpiredAt(absl::Time now) const { return now >= expires; }
};

// The token file, parsed. Format (docs/security.md): JSON lines
//   {"name": "alice", "sha256": "<64 hex>", "roles": ["erase"], "models": ["demo"],
//    "expires": "2027-06-30T00:00:00Z"}   ("models" and "expires" optional)
// blank lines and lines starting with '#' are ignored. Names and hashes are unique.
class TokenTable {
 public:
  static absl::StatusOr<TokenTable> Parse(const std::string& text, const std::string& source);
  static absl::StatusOr<TokenTable> LoadFile(const std::string& path);
  // The entry for a token (by its SHA-256), or null.
  const TokenEntry* FindByToken(const std::string& token) const;
  const TokenEntry* FindByHash(const std::string& sha256) const;
  size_t size() const { return by_hash_.size(); }
  // Entries whose expiry is at or before `now`.
  size_t ExpiredAt(absl::Time now) const;

 private:
  std::map<std::string, TokenEntry> by_hash_;
};

// The token file line for a token (unlearnctl token hash); `expires` InfiniteFuture = no
// "expires" key.
std::string TokenFileLine(const std::string& name, const std::string& token,
                          const std::vector<std::string>& roles,
                          const std::vector<std::string>& models,
                          absl::Time expires = absl::InfiniteFuture());

// Who is calling.
struct Caller {
  std::string name;  // token name; "" when authentication is off (--insecure)
  uint32_t roles = 0;
  std::vector<std::string> models;  // empty = every model
  std::string token_sha256;         // to re-check a long-lived stream's token ("" if insecure)
  bool insecure = false;

  bool Has(uint32_t any_of) const { return (roles & any_of) != 0; }
  bool IsAdmin() const { return Has(kRoleAdmin); }
  bool MayUse(const std::string& model_id) const;
  // Jobs it may see and cancel: its own, or any for an admin.
  bool Owns(const std::string& job_owner) const { return IsAdmin() || job_owner == name; }
};

struct AuthOptions {
  std::string token_file;  // "" = no authentication: needs `insecure`
  bool insecure = false;   // explicit: every caller may do everything (logged loudly)
  std::string audit_log;   // JSON lines file ("" = no audit log)
};

// One audit line.
struct AuditEntry {
  std::string caller;  // token name, "-" when unauthenticated, "insecure" without auth
  std::string peer;    // gRPC peer ("ipv4:127.0.0.1:5555"), plus the client certificate's CN
  std::string rpc;     // "ModelService/LoadModel", "ErasureService/Erase.submit", ...
  std::string model_id;
  std::string request_id;
  std::string job_id;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string reason;  // only for refusals by this layer (never request contents)
};

// The audit log is hash-chained: each line's "prev" is the SHA-256 (hex) of the line before it (its
// bytes without the newline), so editing, deleting, inserting or reordering lines breaks the chain
// at the next line. The first line of a new log has 64 zeros; after a restart the chain continues
// from the file's last line, after a SIGHUP reopen (log rotation) from the last line written.
inline constexpr char kAuditGenesis[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Checks the chain of an audit log file: the number of lines on success; kDataLoss naming the first
// line whose "prev" does not match the line before it (or that is not a JSON object). The first
// line's "prev" must be `first_prev` (kAuditGenesis for a log that starts the chain; the hash of
// the previous file's last line for a rotated one; "" = accept any).
absl::StatusOr<int64_t> VerifyAuditLog(const std::string& path,
                                       const std::string& first_prev = kAuditGenesis);

// Thread-safe. Owned by the server; Reload() is called on SIGHUP.
class Authorizer {
 public:
  static absl::StatusOr<std::unique_ptr<Authorizer>> Create(const AuthOptions& options);
  ~Authorizer();

  // Re-reads the token file and reopens the audit log (log rotation). A bad token file keeps the
  // current table and returns the error (the caller logs it).
  absl::Status Reload();
  bool insecure() const { return options_.insecure; }
  size_t tokens() const;
  // Tokens in the table that have expired by now (they stay listed and are refused).
  size_t expired_tokens() const;

  // The caller of `ctx`: UNAUTHENTICATED (with a hint) when the token is missing or unknown.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx) const;
  // The same from an `authorization` header value ("Bearer <token>"; "" = none).
  absl::StatusOr<Caller> AuthenticateHeader(const std::string& authorization) const;
  // A GET /metrics: UNAUTHENTICATED without a known token, PERMISSION_DENIED unless it has the
  // metrics or admin role; refusals are audited (rpc "HTTP/GET /metrics"), passing scrapes are not.
  absl::Status AuthorizeMetricsScrape(const std::string& authorization, const std::string& peer);
  // The same caller with the current table's roles (a stream re-checks before each request):
  // UNAUTHENTICATED when the token was removed meanwhile.
  absl::StatusOr<Caller> Refresh(const Caller& caller) const;
  // PERMISSION_DENIED naming what is missing unless `caller` has one of `any_of` and may use
  // `model_id` ("" = no particular model).
  static absl::Status Check(const Caller& caller, uint32_t any_of, const std::string& model_id,
                            const std::string& rpc);

  void Audit(const AuditEntry& entry);

 private:
  explicit Authorizer(AuthOptions options) : options_(std::move(options)) {}
  absl::Status OpenAuditLog();

  const AuthOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  absl::Mutex audit_mu_;
  std::FILE* audit_ ABSL_GUARDED_BY(audit_mu_) = nullptr;
  std::string audit_prev_ ABSL_GUARDED_BY(audit_mu_) = kAuditGenesis;  // hash of the last line
};

// One RPC's authorization and audit record. Cheap to copy (a handler that finishes on another
// thread captures it). With a null authorizer every call is allowed and nothing is audited.
class AuthorizedCall {
 public:
  AuthorizedCall(Authorizer* auth, const grpc::ServerContextBase& ctx, std::string rpc);

  // Authenticates (once) and checks the roles and the model. On refusal the returned status is
  // the one to finish the call with (and it is audited by Finish/Audit).
  grpc::Status Check(uint32_t any_of, const std::string& model_id = "");
  const Caller& caller() const { return caller_; }

  void set_model(std::string model_id) { entry_.model_id = std::move(model_id); }
  void set_request_id(std::string id) { entry_.request_id = std::move(id); }
  void set_job_id(std::string id) { entry_.job_id = std::move(id); }
  void set_rpc(std::string rpc) { entry_.rpc = std::move(rpc); }

  // Writes the audit line for `status`.
  void Audit(const grpc::Status& status);
  // Audits and finishes a unary call; returns the reactor.
  grpc::ServerUnaryReactor* Finish(grpc::ServerUnaryReactor* reactor, const grpc::Status& status);

 private:
  Authorizer* auth_;
  Caller caller_;
  bool authenticated_ = false;
  AuditEntry entry_;
};

// grpc::Status from absl::Status (same code and message).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace unlearning::server
