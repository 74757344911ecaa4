#!/usr/bin/env python3
"""Independent offline verifier of an unlearnd certificate bundle (docs/certificates.md).

    tools/verify_certificates.py bundle.json --public-key signing_key.pub.pem [--allow-legacy]
    tools/verify_certificates.py --self-test

Python 3 standard library only. It shares no code with the server or unlearnctl: RFC 8785 JSON
canonicalisation and RFC 8032 Ed25519 verification are implemented here from the RFCs. For each
record it checks that SHA-256 of the canonical form of "certificate" equals "sha256", that
"signature" is a valid Ed25519 signature of those bytes under the given key, that the key ids
match, and that "previous_sha256" (and the certificate's previous_certificate_sha256) equals the
preceding record's hash ("" for the first). Exit 0 if every record holds, 1 if one fails,
2 for unusable input.
"""

import argparse
import base64
import hashlib
import json
import math
import sys

BUNDLE_FORMAT = "unlearning-certificate-bundle-v1"
FORMAT_V1 = "jcs-ed25519-v1"
FORMAT_LEGACY = "legacy-protojson-sha256"

# ---- RFC 8785: JSON Canonicalization Scheme ------------------------------------------------


def ecma_number(x):
    """ECMAScript Number.prototype.toString of a finite double."""
    if isinstance(x, bool):
        raise ValueError("not a number")
    if isinstance(x, int):
        if abs(x) <= 2**53:
            return str(x)
        x = float(x)  # what a JavaScript parser would hold
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinity have no JSON form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    text = repr(abs(x))  # the shortest round-trip digits
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    e10 = int(exp or 0) - len(frac)
    stripped = digits.rstrip("0")
    e10 += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = k + e10  # value = 0.digits * 10^n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-")
        out += str(abs(e))
    return sign + out


def canonical(value):
    """The RFC 8785 canonical text of a parsed JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        value.encode("utf-8")  # lone surrogates have no UTF-8 form
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return ecma_number(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        return "{" + ",".join(canonical(n) + ":" + canonical(value[n]) for n in names) + "}"
    raise ValueError("not a JSON value: %r" % (value,))


def canonical_bytes(value):
    return canonical(value).encode("utf-8")


# ---- RFC 8032 section 5.1: Ed25519 verification ---------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
BASE = (_GX, _GY, 1, _GX * _GY % P)


def _add(a, b):
    pa = (a[1] - a[0]) * (b[1] - b[0]) % P
    pb = (a[1] + a[0]) * (b[1] + b[0]) % P
    pc = 2 * a[3] * b[3] * D % P
    pd = 2 * a[2] * b[2] % P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, point):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, point)
        point = _add(point, point)
        s >>= 1
    return q


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def ed25519_verify(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return _equal(_mul(s, BASE), _add(r, _mul(h, a)))


# ---- keys and bundles ------------------------------------------------------------------------

SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


def parse_public_key(text):
    """Raw 32 bytes from a PEM SubjectPublicKeyInfo or 64 hex digits."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    lines = text.splitlines()
    if lines and lines[0] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----":
        der = base64.b64decode("".join(lines[1:-1]))
        if len(der) == 44 and der.startswith(SPKI_ED25519_PREFIX):
            return der[12:]
    raise ValueError("neither an Ed25519 PEM public key nor 64 hex digits")


def key_id(public):
    return hashlib.sha256(public).hexdigest()[:32]


def _s(obj, name):
    value = obj.get(name, "") if isinstance(obj, dict) else ""
    return value if isinstance(value, str) else ""


def verify_bundle(bundle, public, allow_legacy):
    """Returns (bundle errors, [(index, certificate_id, [errors])])."""
    if not isinstance(bundle, dict) or bundle.get("bundle_format") != BUNDLE_FORMAT:
        return ["not a certificate bundle (bundle_format is not %r)" % BUNDLE_FORMAT], []
    records = bundle.get("records")
    if not isinstance(records, list):
        return ["bundle has no records array"], []
    kid = key_id(public)
    model_id = _s(bundle, "model_id")
    previous = ""
    results = []
    for i, rec in enumerate(records):
        errors = []
        fmt, sha, prev = _s(rec, "format"), _s(rec, "sha256"), _s(rec, "previous_sha256")
        if not isinstance(rec, dict):
            errors.append("not a JSON object")
        elif fmt == FORMAT_V1:
            cert = rec.get("certificate")
            if not isinstance(cert, dict):
                errors.append('no "certificate" object')
            else:
                try:
                    payload = canonical_bytes(cert)
                except ValueError as e:
                    payload = None
                    errors.append("certificate has no canonical form: %s" % e)
                if payload is not None:
                    computed = hashlib.sha256(payload).hexdigest()
                    if computed != sha:
                        errors.append("hash mismatch: canonical certificate hashes to %s..., the "
                                      "record says %s... (the certificate was edited)"
                                      % (computed[:16], sha[:16]))
                    try:
                        signature = bytes.fromhex(_s(rec, "signature"))
                    except ValueError:
                        signature = b""
                    if not ed25519_verify(public, payload, signature):
                        errors.append("signature does not verify with the given public key")
                if _s(rec, "key_id") != kid or _s(cert, "signing_key_id") != kid:
                    errors.append("signed with key %s, not the given key %s"
                                  % (_s(rec, "key_id"), kid))
                if _s(cert, "format") != FORMAT_V1:
                    errors.append("certificate format is %r" % _s(cert, "format"))
                if _s(cert, "previous_certificate_sha256") != prev:
                    errors.append("the certificate's previous_certificate_sha256 differs from the "
                                  "record's")
                if _s(cert, "certificate_id") != _s(rec, "certificate_id"):
                    errors.append("the certificate's certificate_id differs from the record's")
                if _s(cert, "model_id") != model_id:
                    errors.append("certificate of model %r in the bundle of model %r"
                                  % (_s(cert, "model_id"), model_id))
        elif fmt == FORMAT_LEGACY:
            text = _s(rec, "payload_text")
            if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
                errors.append("hash mismatch: the legacy payload_text was edited")
            try:
                legacy = json.loads(text)
            except ValueError:
                legacy = {}
            if _s(legacy, "previous_certificate_sha256") != prev:
                errors.append("the certificate's previous_certificate_sha256 differs from the "
                              "record's")
            if not allow_legacy:
                errors.append("legacy record (unsigned, written before signing; --allow-legacy "
                              "accepts it)")
        else:
            errors.append("unknown format %r" % fmt)
        if prev != previous:
            errors.append("chain broken: links to %s but the preceding record %s (a record was "
                          "deleted, inserted or reordered)"
                          % ((prev[:16] + "...") if prev else '""',
                             ("hashes to %s..." % previous[:16]) if i else "does not exist"))
        previous = sha
        results.append((i, _s(rec, "certificate_id"), errors))
    return [], results


# ---- self test: RFC vectors ------------------------------------------------------------------


def self_test():
    import struct

    def bits(h):
        return struct.unpack(">d", bytes.fromhex(h))[0]

    numbers = [
        ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ]
    for h, want in numbers:
        got = ecma_number(bits(h))
        assert got == want, (h, got, want)
    doc = json.loads('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
                     ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
                     ' "literals": [null, true, false]}')
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical(doc) == want, canonical(doc)
    order = json.loads('{"\\u20ac":1,"\\r":2,"\\ufb33":3,"1":4,"\\ud83d\\ude00":5,"\\u0080":6,'
                       '"\\u00f6":7}')
    assert canonical(order) == '{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\U0001F600":5,"\ufb33":3}'
    pub = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert ed25519_verify(pub, b"", sig) and not ed25519_verify(pub, b"x", sig)
    pub2 = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    sig2 = bytes.fromhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
    assert ed25519_verify(pub2, b"\x72", sig2) and not ed25519_verify(pub, b"\x72", sig2)
    print("self-test: RFC 8785 and RFC 8032 vectors ok")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", help="bundle file (unlearnctl certificate export)")
    parser.add_argument("--public-key", help="the server's public key: PEM or 64 hex digits")
    parser.add_argument("--allow-legacy", action="store_true",
                        help="accept unsigned records written before signing")
    parser.add_argument("--self-test", action="store_true", help="check the RFC test vectors")
    args = parser.parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    if not args.bundle or not args.public_key:
        parser.error("BUNDLE and --public-key are required")
    try:
        with open(args.public_key, encoding="utf-8") as f:
            public = parse_public_key(f.read())
        with open(args.bundle, encoding="utf-8") as f:
            bundle = json.load(f)
    except (OSError, ValueError) as e:
        print("verify_certificates: %s" % e, file=sys.stderr)
        return 2
    bundle_errors, results = verify_bundle(bundle, public, args.allow_legacy)
    for e in bundle_errors:
        print("bundle: FAIL: %s" % e)
    bad = 0
    for index, cid, errors in results:
        name = "record %d (%s)" % (index, cid)
        if not errors:
            print("%s: ok" % name)
        for e in errors:
            print("%s: FAIL: %s" % (name, e))
        bad += bool(errors)
    ok = not bundle_errors and bad == 0
    print("%s: %d records, %d failing, key %s" % ("OK" if ok else "FAILED", len(results), bad,
                                                   key_id(public)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
