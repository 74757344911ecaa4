#!/usr/bin/env bash
# Authentication and TLS with the real binaries (docs/security.md): unlearnd refuses to start with
# neither --token-file nor --insecure; tokens made by `unlearnctl token new`; gRPC over TLS with a
# CA made here by openssl; unlearnctl --tls-ca --token-file: no token -> UNAUTHENTICATED with a
# hint, a query token -> PERMISSION_DENIED on rollback and erase, answers on generate; SIGHUP adds a
# token, a broken token file on SIGHUP keeps the old tokens (logged); the audit log names callers
# and holds no token and no prompt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo

EXIT_RPC=3

# No token file and no --insecure: refused, naming the flags.
rc=0
"$UNLEARND" --listen 127.0.0.1:0 --metrics-listen "" --data-dir "$TMP/refused" \
  >"$TMP/refused.log" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "unlearnd started without --token-file or --insecure"
grep -q -- "--insecure" "$TMP/refused.log" || fail "refusal does not name --insecure"
log "no token file and no --insecure: refused"

# Certificates: a CA and a server certificate for 127.0.0.1.
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
(
  cd "$TMP"
  openssl req -x509 $ec -keyout ca.key -out ca.pem -days 1 -subj /CN=e2e-ca
  openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost
  echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >san.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 1 -extfile san.ext
) >"$TMP/openssl.log" 2>&1 || fail "openssl could not make the certificates"

# Tokens: the server's file holds only their hashes.
"$UNLEARNCTL" token new --name ops --role admin --out "$TMP/admin.token" >"$TMP/tokens.jsonl"
"$UNLEARNCTL" token new --name reader --role query --model demo --out "$TMP/query.token" \
  >>"$TMP/tokens.jsonl"
[[ $(stat -c %a "$TMP/admin.token") == 600 ]] || fail "token file is not mode 0600"
grep -qF "$(cat "$TMP/admin.token")" "$TMP/tokens.jsonl" && fail "token file holds a plain token"

start_server auth 127.0.0.1:0 --token-file "$TMP/tokens.jsonl" --audit-log "$TMP/audit.jsonl" \
  --tls-cert "$TMP/server.pem" --tls-key "$TMP/server.key"
grep -q "authentication: 2 tokens" "$TMP/auth.log" || fail "no authentication line in the log"

tls=(--tls-ca "$TMP/ca.pem")
ctl "${tls[@]}" --token-file "$TMP/admin.token" models list >/dev/null
log "admin over TLS: ok"
expect_exit $EXIT_RPC "UNAUTHENTICATED: .*--token-file" ctl "${tls[@]}" models list
expect_exit $EXIT_RPC "UNAVAILABLE" ctl --token-file "$TMP/admin.token" --timeout 5 models list
expect_exit $EXIT_RPC "PERMISSION_DENIED: .*admin" \
  ctl "${tls[@]}" --token-file "$TMP/query.token" models rollback demo --version 1
UNLEARN_TLS_CA="$TMP/ca.pem" UNLEARN_TOKEN_FILE="$TMP/query.token" expect_exit $EXIT_RPC \
  "PERMISSION_DENIED: .*erase" ctl erase --model demo --method flat --forget "$DEMO/data/forget.jsonl"
ctl "${tls[@]}" --token-file "$TMP/query.token" generate --model demo --prompt "e2e-secret-prompt" \
  --max-tokens 2 >/dev/null
log "roles: ok"

# /metrics over HTTPS needs a token with the metrics or admin role.
scrape() { curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/ca.pem" "$@" "https://$METRICS/metrics"; }
[[ $(scrape) == 401 ]] || fail "/metrics without a token did not answer 401"
[[ $(scrape -H "Authorization: Bearer $(cat "$TMP/query.token")") == 403 ]] ||
  fail "/metrics with a query token did not answer 403"
[[ $(scrape -H "Authorization: Bearer $(cat "$TMP/admin.token")") == 200 ]] ||
  fail "/metrics with the admin token did not answer 200"
log "/metrics bearer token: ok"

# SIGHUP: a new token works without a restart; a broken file keeps the old table.
"$UNLEARNCTL" token new --name late --role query --out "$TMP/late.token" >>"$TMP/tokens.jsonl"
expect_exit $EXIT_RPC "UNAUTHENTICATED" ctl "${tls[@]}" --token-file "$TMP/late.token" models list
kill -HUP "$SERVER_PID"
wait_until 10 "the reload" grep -q "SIGHUP: reloaded" "$TMP/auth.log"
ctl "${tls[@]}" --token-file "$TMP/late.token" models list >/dev/null
cp "$TMP/tokens.jsonl" "$TMP/tokens.good"
echo '{"name": "broken", "token": "plain"}' >>"$TMP/tokens.jsonl"
kill -HUP "$SERVER_PID"
wait_until 10 "the failed reload" grep -q "ERROR: SIGHUP reload failed" "$TMP/auth.log"
ctl "${tls[@]}" --token-file "$TMP/late.token" models list >/dev/null
log "SIGHUP reload: ok"

# The audit log: callers by name, refusals with their codes, never a token or a prompt.
grep -q '"caller":"ops"' "$TMP/audit.jsonl" || fail "audit log lacks the admin's calls"
grep -q '"code":"PERMISSION_DENIED"' "$TMP/audit.jsonl" || fail "audit log lacks the refusal"
grep -q '"code":"UNAUTHENTICATED"' "$TMP/audit.jsonl" || fail "audit log lacks the unauthenticated"
for t in admin query late; do
  grep -qF "$(cat "$TMP/$t.token")" "$TMP/audit.jsonl" && fail "audit log holds the $t token"
done
grep -q "e2e-secret-prompt" "$TMP/audit.jsonl" && fail "audit log holds a prompt"
log "audit log: ok ($(wc -l <"$TMP/audit.jsonl") lines)"
