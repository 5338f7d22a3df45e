#!/usr/bin/env python3
"""An independent RFC 6962 / RFC 9162 Merkle proof verifier (stdlib only).

Written from the RFCs, sharing no code with Passerelle's C++ verifier, so
that proofs printed by `passerelle audit proof` and `passerelle audit
consistency` can be checked by a second implementation.

Hashing (RFC 6962 section 2.1): SHA-256; a leaf hashes as
SHA-256(0x00 || leaf), an interior node as SHA-256(0x01 || left || right),
the empty tree as SHA-256("").

Input is JSON with the field names of the transparency-dev/merkle test
vectors, hashes in standard base64:
  inclusion:   {"leafIdx", "treeSize", "leafHash", "root", "proof"}
  consistency: {"size1", "size2", "root1", "root2", "proof"}

Usage:
  rfc6962_verify.py check FILE|-       one proof (kind from its fields);
                                       exit 0 if it verifies, 1 if not
  rfc6962_verify.py batch FILE|-       a JSON list of proofs; prints one line
                                       per proof, "ok" or "bad: <reason>";
                                       exit 0 once all were examined
  rfc6962_verify.py vectors DIR        every *.json vector under DIR must
                                       verify exactly when wantErr is false;
                                       exit 0 if all agree
  rfc6962_verify.py roots EXPORT.jsonl [SIZE...]
                                       the root of the first SIZE entries of a
                                       `passerelle audit export --format jsonl`
                                       (leaves recomputed from entry_base64;
                                       default: all), one base64 root a line
"""

import base64
import binascii
import hashlib
import json
import os
import sys

HASH_SIZE = 32


class ProofError(Exception):
    pass


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 6962 section 2.1 Merkle Tree Hash over leaf hashes, recursively:
    k is the largest power of two smaller than n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def b64(value, what):
    if not isinstance(value, str):
        raise ProofError("%s is not a base64 string" % what)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError("%s is not valid base64" % what)


def hashes(values, what):
    if values is None:
        return []
    if not isinstance(values, list):
        raise ProofError("%s is not a list" % what)
    out = []
    for i, v in enumerate(values):
        h = b64(v, "%s[%d]" % (what, i))
        if len(h) != HASH_SIZE:
            raise ProofError("%s[%d] is %d bytes, not %d" %
                             (what, i, len(h), HASH_SIZE))
        out.append(h)
    return out


def integer(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError("%s is not a non-negative integer" % what)
    return value


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise ProofError("leaf index %d is not below tree size %d" %
                         (index, size))
    if len(leaf) != HASH_SIZE:
        raise ProofError("leaf hash is not %d bytes" % HASH_SIZE)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if r != root:
        raise ProofError("computed root differs from the given root")


def verify_consistency(size1, size2, proof, root1, root2):
    """RFC 9162 section 2.1.4.2."""
    if size1 == 0:
        raise ProofError("size1 must be positive (nothing to be consistent "
                         "with)")
    if size1 > size2:
        raise ProofError("size1 %d is larger than size2 %d" % (size1, size2))
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes with different roots")
        return
    if not proof:
        raise ProofError("empty proof for different sizes")
    if len(root1) != HASH_SIZE or len(root2) != HASH_SIZE:
        raise ProofError("roots must be %d bytes" % HASH_SIZE)
    path = list(proof)
    # Step 1: a power-of-two size1 is itself a node of the larger tree.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    # Step 3: shift both while the LSB of fn is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if fr != root1:
        raise ProofError("computed root1 differs from the given root1")
    if sr != root2:
        raise ProofError("computed root2 differs from the given root2")


def check(obj):
    """Raises ProofError unless `obj` is a proof that verifies."""
    if not isinstance(obj, dict):
        raise ProofError("not a JSON object")
    if "leafIdx" in obj:
        verify_inclusion(integer(obj.get("leafIdx"), "leafIdx"),
                         integer(obj.get("treeSize"), "treeSize"),
                         b64(obj.get("leafHash"), "leafHash"),
                         hashes(obj.get("proof"), "proof"),
                         b64(obj.get("root"), "root"))
    elif "size1" in obj:
        verify_consistency(integer(obj.get("size1"), "size1"),
                           integer(obj.get("size2"), "size2"),
                           hashes(obj.get("proof"), "proof"),
                           b64(obj.get("root1"), "root1"),
                           b64(obj.get("root2"), "root2"))
    else:
        raise ProofError("neither an inclusion nor a consistency proof")


def load(path):
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cmd_check(path):
    try:
        check(load(path))
    except ProofError as e:
        print("bad: %s" % e)
        return 1
    print("ok")
    return 0


def cmd_batch(path):
    items = load(path)
    if not isinstance(items, list):
        print("batch input must be a JSON list", file=sys.stderr)
        return 2
    for item in items:
        try:
            check(item)
            print("ok")
        except ProofError as e:
            print("bad: %s" % e)
    return 0


def cmd_vectors(root):
    total = disagreements = 0
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(dirpath, name)
            vector = load(path)
            want_err = bool(vector.get("wantErr"))
            try:
                check(vector)
                got_err, why = False, ""
            except ProofError as e:
                got_err, why = True, str(e)
            total += 1
            if got_err != want_err:
                disagreements += 1
                print("DISAGREE %s: wantErr=%s, got %s" %
                      (path, want_err, why or "ok"))
    print("%d vectors, %d disagreements" % (total, disagreements))
    return 0 if total > 0 and disagreements == 0 else 1


def cmd_roots(path, sizes):
    leaves = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("index") != len(leaves):
                print("row %d has index %r" % (n, row.get("index")),
                      file=sys.stderr)
                return 1
            leaves.append(leaf_hash(b64(row.get("entry_base64"),
                                        "entry_base64")))
    for s in sizes or [len(leaves)]:
        if s > len(leaves):
            print("size %d is beyond the %d exported entries" %
                  (s, len(leaves)), file=sys.stderr)
            return 1
        print(base64.b64encode(mth(leaves[:s])).decode("ascii"))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "check":
        return cmd_check(argv[2])
    if len(argv) >= 3 and argv[1] == "batch":
        return cmd_batch(argv[2])
    if len(argv) >= 3 and argv[1] == "vectors":
        return cmd_vectors(argv[2])
    if len(argv) >= 3 and argv[1] == "roots":
        return cmd_roots(argv[2], [int(s) for s in argv[3:]])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
