// Process exit codes of unlearnctl. Scripts branch on these, so they are part
// of the CLI contract (documented in docs/cli.md); never renumber an existing
// code.
#pragma once

namespace unlearning::client {

enum ExitCode : int {
  // The command succeeded (for erasures: the job COMPLETED, or was ACCEPTED
  // without --wait).
  kExitOk = 0,
  // Anything not covered below (e.g. an unexpected server answer).
  kExitError = 1,
  // Bad command line or local input: unknown flag, bad --param, unreadable or
  // malformed file.
  kExitUsage = 2,
  // An RPC failed: server unreachable, NOT_FOUND, INVALID_ARGUMENT, deadline
  // exceeded, ...
  kExitRpc = 3,
  // The server REJECTED the erasure request (nothing was stored).
  kExitRejected = 4,
  // The job ended FAILED (the method failed; nothing published).
  kExitJobFailed = 5,
  // The job ended FAILED_VERIFICATION (thresholds missed; nothing published).
  kExitJobFailedVerification = 6,
  // The job ended CANCELLED.
  kExitJobCancelled = 7,
  // `certificate verify`: a record of the bundle failed (signature, hash or chain).
  kExitVerifyFailed = 8,
};

}  // namespace unlearning::client
