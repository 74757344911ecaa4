#!/usr/bin/env python3
"""Checks the hash chain of an unlearnd audit log (docs/security.md), standard library only.

Each line is a JSON object whose "prev" is the SHA-256 (hex) of the previous line's bytes (without
the newline); the first line of a log that starts the chain has 64 zeros. Editing, deleting,
inserting or reordering lines breaks the chain at the next line.

Usage: tools/verify_audit_log.py AUDIT_LOG [--first-prev HEX | --any-start]
  --first-prev HEX  the hash the first line must name (a rotated file: the SHA-256 of the previous
                    file's last line)
  --any-start       accept whatever the first line names
Exit 0 and "ok: N lines" when the chain holds; exit 1 naming the first broken line otherwise.
"""
import hashlib
import json
import sys

GENESIS = "0" * 64


def main(argv):
    args = argv[1:]
    if not args:
        sys.exit(__doc__)
    path, first_prev = args[0], GENESIS
    if args[1:2] == ["--first-prev"] and len(args) == 3:
        first_prev = args[2]
    elif args[1:] == ["--any-start"]:
        first_prev = None
    elif len(args) != 1:
        sys.exit(__doc__)
    prev_hash = first_prev
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            n += 1
            line = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                entry = json.loads(line)
                prev = entry["prev"]
            except (ValueError, KeyError, TypeError):
                print(f"{path} line {n}: not an audit entry with a \"prev\" hash")
                return 1
            if not (n == 1 and first_prev is None) and prev != prev_hash:
                print(f"{path} line {n}: prev {prev} != {prev_hash} "
                      "(a line was changed, removed, inserted or reordered)")
                return 1
            prev_hash = hashlib.sha256(line).hexdigest()
    print(f"ok: {n} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
