#!/usr/bin/env bash
# Certificates a third party can check: a real chain of signed certificates (two erasures on the
# demo model) exported with `unlearnctl certificate export` verifies offline with both
# `unlearnctl certificate verify` and the independent tools/verify_certificates.py, against the
# public key file the server published and the key GetSigningKey returns; then each tampering of
# the bundle -- one field edited, one record deleted, two records swapped -- fails both verifiers
# (exit 8 / 1) naming the record. Cheap erasures (two forget examples, one epoch, thresholds
# relaxed): this test is about the certificates, not how well the data is forgotten.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo

EXIT_VERIFY_FAILED=8
PYVERIFY=(python3 "$E2E_REPO/tools/verify_certificates.py")
"${PYVERIFY[@]}" --self-test >&2 || fail "the Python verifier's RFC vectors fail"

start_server certs
KEY_PEM="$TMP/data/signing_key.pub.pem"
KEY_HEX="$TMP/data/signing_key.pub.hex"
[[ -s $KEY_PEM && -s $KEY_HEX ]] || fail "the server did not publish its public key files"
[[ $(stat -c %a "$TMP/data/signing_key.pem") == 600 ]] ||
  fail "the private key is not mode 600: $(stat -c %a "$TMP/data/signing_key.pem")"
ctl certificate key --out-pem "$TMP/rpc_key.pem" >"$TMP/key.out"
cmp -s "$TMP/rpc_key.pem" "$KEY_PEM" || fail "GetSigningKey's PEM differs from $KEY_PEM"
grep -q "public_key_hex: $(cat "$KEY_HEX")" "$TMP/key.out" || fail "certificate key: $(cat "$TMP/key.out")"

erase() {
  sed -n "$2" "$DEMO/data/forget.jsonl" >"$TMP/$1.forget.jsonl"
  ctl erase --model demo --method flat --forget "$TMP/$1.forget.jsonl" \
    --retain "$DEMO/data/retain.jsonl" --request-id "$1" --param epochs=1 --param seed=3 \
    --max-forget-ratio 1 --min-retain-ratio 0 --wait >"$TMP/$1.out" 2>"$TMP/$1.err" ||
    { cat "$TMP/$1.err" >&2; fail "erase $1 failed"; }
}
log "two erasures"
erase e2e-cert-1 1,2p
erase e2e-cert-2 3,4p

ctl certificate export --model demo --out "$TMP/bundle.json"
n="$(jq '.records | length' "$TMP/bundle.json")"
((n == 2)) || fail "expected 2 records in the bundle, got $n"
jq -e '.records[1].previous_sha256 == .records[0].sha256 and .records[0].previous_sha256 == ""' \
  "$TMP/bundle.json" >/dev/null || fail "the exported chain is not linked"

# verify_both FILE WANT: both verifiers on FILE; WANT is ok or fail. Outputs in $TMP/FILE.{ctl,py}.
verify_both() {
  local file=$1 want=$2 rc_ctl=0 rc_py=0
  "$UNLEARNCTL" certificate verify "$TMP/$file" --public-key "$KEY_PEM" >"$TMP/$file.ctl" 2>&1 ||
    rc_ctl=$?
  "${PYVERIFY[@]}" "$TMP/$file" --public-key "$KEY_HEX" >"$TMP/$file.py" 2>&1 || rc_py=$?
  if [[ $want == ok ]]; then
    ((rc_ctl == 0)) || { cat "$TMP/$file.ctl" >&2; fail "unlearnctl rejects $file (exit $rc_ctl)"; }
    ((rc_py == 0)) || { cat "$TMP/$file.py" >&2; fail "verify_certificates.py rejects $file"; }
  else
    ((rc_ctl == EXIT_VERIFY_FAILED)) ||
      { cat "$TMP/$file.ctl" >&2; fail "unlearnctl accepts $file (exit $rc_ctl)"; }
    ((rc_py == 1)) || { cat "$TMP/$file.py" >&2; fail "verify_certificates.py accepts $file"; }
  fi
  log "$file: unlearnctl exit $rc_ctl, verify_certificates.py exit $rc_py"
}
# expect_line FILE PATTERN: both verifiers' outputs of FILE name the problem.
expect_line() {
  grep -Eq -- "$2" "$TMP/$1.ctl" || { cat "$TMP/$1.ctl" >&2; fail "unlearnctl on $1: no /$2/"; }
  grep -Eq -- "$2" "$TMP/$1.py" || { cat "$TMP/$1.py" >&2; fail "python on $1: no /$2/"; }
}

verify_both bundle.json ok
cat "$TMP/bundle.json.ctl" >&2

# 1. One field edited (the published version of the first erasure).
jq '.records[0].certificate.version_after = "99"' "$TMP/bundle.json" >"$TMP/edited.json"
verify_both edited.json fail
expect_line edited.json "record 0 .*hash mismatch"
expect_line edited.json "record 0 .*signature does not verify"
# ... also when the editor recomputes the hash: the signature still fails.
E2E_VERIFY_DIR="$E2E_REPO/tools" python3 - "$TMP/edited.json" "$TMP/edited_rehashed.json" <<'PY'
import hashlib, json, sys
sys.path.insert(0, __import__("os").environ["E2E_VERIFY_DIR"])
from verify_certificates import canonical_bytes
b = json.load(open(sys.argv[1]))
b["records"][0]["sha256"] = hashlib.sha256(canonical_bytes(b["records"][0]["certificate"])).hexdigest()
json.dump(b, open(sys.argv[2], "w"), indent=1)
PY
verify_both edited_rehashed.json fail
expect_line edited_rehashed.json "record 0 .*signature does not verify"
expect_line edited_rehashed.json "record 1 .*chain broken"

# 2. One record deleted (the first: the second now starts the chain with a link to nothing).
jq 'del(.records[0])' "$TMP/bundle.json" >"$TMP/deleted.json"
verify_both deleted.json fail
expect_line deleted.json "record 0 .*chain broken"

# 3. Two records swapped.
jq '.records |= [.[1], .[0]]' "$TMP/bundle.json" >"$TMP/swapped.json"
verify_both swapped.json fail
expect_line swapped.json "record 0 .*chain broken"
expect_line swapped.json "record 1 .*chain broken"

# The wrong key fails every record; a key file that is not a key is a usage error.
python3 -c 'print("11" * 32)' >"$TMP/other.hex"
rc=0
"$UNLEARNCTL" certificate verify "$TMP/bundle.json" --public-key "$TMP/other.hex" >/dev/null || rc=$?
((rc == EXIT_VERIFY_FAILED)) || fail "unlearnctl accepts the bundle under another key (exit $rc)"
echo junk >"$TMP/junk.key"
expect_exit 2 "not a PEM public key|64 hex digits" \
  "$UNLEARNCTL" certificate verify "$TMP/bundle.json" --public-key "$TMP/junk.key"
expect_exit 3 "NOT_FOUND" ctl certificate export --model nope

# The key survives a restart: the same bundle still verifies with the new process's key.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
start_server again
ctl certificate key --out-pem "$TMP/rpc_key2.pem" >/dev/null
cmp -s "$TMP/rpc_key2.pem" "$KEY_PEM" || fail "the signing key changed across a restart"
log "ok: untouched bundle passes both verifiers; edit, delete and swap fail both"
