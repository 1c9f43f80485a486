"""The verifiable audit log over HTTP and the CLI (DESIGN §5): checkpoints as
C2SP signed notes, RFC 6962 inclusion and consistency proofs, paged entries,
`casevault audit verify|checkpoint`, tamper detection.

Everything the server answers is checked here with an independent
implementation: RFC 9162 §2.1 hashing and proof verification with hashlib,
signed-note signatures with the `cryptography` package's Ed25519."""
import base64
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from conftest import BIN, assert_problem, run_cli

EM_DASH = "\u2014"


# ---- an independent RFC 9162 / C2SP implementation ----

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 §2.1.4.2"""
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_hash] + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


def parse_vkey(text):
    name, keyhash, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert raw[0] == 1 and len(raw) == 33
    pk = raw[1:]
    want = hashlib.sha256(name.encode() + b"\n" + b"\x01" + pk).digest()[:4]
    assert keyhash == want.hex(), "key hash is SHA-256(name || 0x0A || 0x01 || key)[:4]"
    return name, want, pk


def open_checkpoint(note: str, vkey: str):
    """Verify a signed note by the C2SP rules; return (origin, size, root)."""
    name, keyid, pk = parse_vkey(vkey)
    text, sep, sigs = note.rpartition("\n\n")
    assert sep, "no blank line before the signatures"
    text += "\n"
    verified = False
    for line in sigs.splitlines():
        assert line.startswith(EM_DASH + " ")
        sname, sig = line[2:].split(" ")
        blob = base64.b64decode(sig, validate=True)
        if sname == name and blob[:4] == keyid:
            Ed25519PublicKey.from_public_bytes(pk).verify(blob[4:], text.encode())
            verified = True
    assert verified, "no signature by the log's key"
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4, lines
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    assert origin == name and str(size) == lines[1] and len(root) == 32
    return origin, size, root


SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "../../schemas/audit_entry.schema.json")))


def check_entry_schema(obj):
    """The subset of JSON Schema that schemas/audit_entry.schema.json uses."""
    types = {"string": str, "object": dict, "null": type(None), "integer": int}

    def check(value, schema, where):
        t = schema.get("type")
        if t:
            allowed = t if isinstance(t, list) else [t]
            assert any(isinstance(value, types[a]) and not (a == "integer" and isinstance(value, bool))
                       for a in allowed), (where, value)
        if isinstance(value, dict) and "properties" in schema:
            assert set(schema["required"]) <= set(value), where
            if schema.get("additionalProperties") is False:
                assert set(value) <= set(schema["properties"]), (where, set(value))
            for k, sub in schema["properties"].items():
                if k in value:
                    check(value[k], sub, where + "." + k)
        if "enum" in schema:
            assert value in schema["enum"], (where, value)
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), (where, value)
        if "minimum" in schema:
            assert value >= schema["minimum"], where

    check(obj, SCHEMA, "entry")


def b(s):
    return base64.b64decode(s, validate=True)


def entries_of(server, tok):
    out, start = [], 0
    for _ in range(100):
        r = server.get(f"/v1/audit/entries?start={start}", token=tok)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["entries"]
        if page["next"] is None:
            return out
        start = page["next"]
    raise AssertionError("too many pages")


# ---- tests ----

def test_checkpoint_entries_and_proofs_verify_independently(server):
    aud = server.token("auditor")
    vkey = open(server.data + "/keys/checkpoint.vkey").read()
    assert vkey.endswith("\n") and vkey.count("\n") == 1
    r = server.get("/v1/audit/checkpoint", token=aud)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    origin, size, root = open_checkpoint(r.text, vkey)
    instance = run_cli("audit", "checkpoint", "--data", server.data, check=True)  # same origin
    assert instance.stdout.startswith(origin + "\n")
    assert origin.startswith("casevault/") and len(origin) == len("casevault/") + 26
    entries = entries_of(server, aud)
    assert len(entries) >= size >= 2  # instance.init, token.create
    leaves = []
    for i, e in enumerate(entries):
        assert e["seq"] == i
        obj = json.loads(e["entry"])
        # canonical: sorted keys, compact
        assert e["entry"] == json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                        ensure_ascii=False)
        assert set(obj) == {"action", "actor", "case_id", "client", "details", "object_id",
                            "outcome", "request_id", "seq", "time"}
        check_entry_schema(obj)
        assert obj["seq"] == i
        leaf = leaf_hash(e["entry"].encode())
        assert b(e["leaf_hash"]) == leaf
        leaves.append(leaf)
    assert json.loads(entries[0]["entry"])["action"] == "instance.init"
    tc = [json.loads(e["entry"]) for e in entries if json.loads(e["entry"])["action"] == "token.create"]
    assert tc and tc[0]["actor"] == {"id": "cli", "role": "operator"}
    assert tc[0]["details"] == {"role": "auditor"}
    assert mth(leaves[:size]) == root
    # every inclusion proof at the checkpoint's size, and at smaller sizes
    for n in range(1, size + 1):
        for i in range(n):
            p = server.get(f"/v1/audit/proof/inclusion?index={i}&size={n}", token=aud).json()
            assert p["index"] == i and p["size"] == n
            assert b(p["leaf_hash"]) == leaves[i] and b(p["root_hash"]) == mth(leaves[:n])
            assert verify_inclusion(i, n, leaves[i], [b(h) for h in p["proof"]], mth(leaves[:n]))
    for m in range(1, size + 1):
        for n in range(m, size + 1):
            p = server.get(f"/v1/audit/proof/consistency?old={m}&new={n}", token=aud).json()
            assert p["old"] == m and p["new"] == n
            assert b(p["old_root"]) == mth(leaves[:m]) and b(p["new_root"]) == mth(leaves[:n])
            assert verify_consistency(m, n, mth(leaves[:m]), mth(leaves[:n]),
                                      [b(h) for h in p["proof"]])


def test_new_entries_get_a_new_checkpoint_and_consistency_proof(server):
    aud = server.token("auditor")
    vkey = open(server.data + "/keys/checkpoint.vkey").read()
    _, size1, root1 = open_checkpoint(server.get("/v1/audit/checkpoint", token=aud).text, vkey)
    # Appended by other processes while the server runs: never cached.
    for i in range(3):
        server.token("reviewer", name=f"rev-{i}")
    deadline = time.monotonic() + 10
    size2 = size1
    while time.monotonic() < deadline:
        _, size2, root2 = open_checkpoint(server.get("/v1/audit/checkpoint", token=aud).text, vkey)
        if size2 >= size1 + 3:
            break
        time.sleep(0.3)
    assert size2 >= size1 + 3, "the checkpoint never covered the new entries"
    p = server.get(f"/v1/audit/proof/consistency?old={size1}&new={size2}", token=aud).json()
    assert verify_consistency(size1, size2, root1, root2, [b(h) for h in p["proof"]])
    # A checkpoint on demand for an older size verifies and matches the root.
    note = server.get(f"/v1/audit/checkpoint?size={size1}", token=aud).text
    assert open_checkpoint(note, vkey) == (open_checkpoint(note, vkey)[0], size1, root1)
    # The stored checkpoints all verify offline.
    v = run_cli("audit", "verify", "--data", server.data)
    assert v.returncode == 0, v.stderr
    assert "audit log verified" in v.stdout


def test_bad_parameters_are_400_problems(server):
    aud = server.token("auditor")
    size = len(entries_of(server, aud))
    cases = [
        ("/v1/audit/proof/inclusion?size=1", 400, "invalid_field", "'index' is required"),
        ("/v1/audit/proof/inclusion?index=0", 400, "invalid_field", "'size' is required"),
        ("/v1/audit/proof/inclusion?index=x&size=1", 400, "invalid_field", "'index' must be"),
        ("/v1/audit/proof/inclusion?index=-1&size=1", 400, "invalid_field", "'index' must be"),
        ("/v1/audit/proof/inclusion?index=0&size=1e3", 400, "invalid_field", "'size' must be"),
        ("/v1/audit/proof/inclusion?index=0&size=99999999999999999999", 400, "invalid_field",
         "'size' must be"),
        ("/v1/audit/proof/inclusion?index=0&size=0", 400, "out_of_range", "at least 1"),
        ("/v1/audit/proof/inclusion?index=1&size=1", 400, "out_of_range", "index 1 must be below size 1"),
        (f"/v1/audit/proof/inclusion?index=0&size={size + 5}", 400, "out_of_range",
         "beyond the tree"),
        ("/v1/audit/proof/consistency?new=2", 400, "invalid_field", "'old' is required"),
        ("/v1/audit/proof/consistency?old=0&new=2", 400, "out_of_range", "old must be at least 1"),
        ("/v1/audit/proof/consistency?old=2&new=1", 400, "out_of_range", "must not exceed"),
        (f"/v1/audit/proof/consistency?old=1&new={size + 1}", 400, "out_of_range",
         "beyond the tree"),
        (f"/v1/audit/entries?start={size + 1}", 400, "out_of_range", "beyond the tree"),
        ("/v1/audit/entries?start=3&end=2", 400, "out_of_range", "must not be below"),
        ("/v1/audit/entries?start=abc", 400, "invalid_field", "'start' must be"),
        (f"/v1/audit/checkpoint?size={size + 10}", 400, "out_of_range", "beyond the tree"),
        ("/v1/audit/checkpoint?size=-3", 400, "invalid_field", "'size' must be"),
    ]
    for path, status, code, detail in cases:
        body = assert_problem(server.get(path, token=aud), status, code)
        assert detail in body["detail"], (path, body)
    body = assert_problem(server.get(f"/v1/audit/proof/inclusion?index=0&size={size + 5}",
                                     token=aud), 400, "out_of_range")
    assert body["tree_size"] == size
    # only auditors
    admin = server.token("admin")
    assert_problem(server.get("/v1/audit/checkpoint", token=admin), 403, "forbidden")
    assert_problem(server.get("/v1/audit/entries", token=server.token("reviewer")), 403,
                   "forbidden")
    assert_problem(server.get("/v1/audit/checkpoint"), 401, "unauthorized")


def test_entries_paging(server):
    aud = server.token("auditor")
    for i in range(4):
        server.token("reviewer", name=f"p{i}")
    total = len(entries_of(server, aud))
    r = server.get("/v1/audit/entries?start=1&end=3", token=aud).json()
    assert [e["seq"] for e in r["entries"]] == [1, 2]
    assert r["start"] == 1 and r["end"] == 3 and r["next"] == 3 and r["tree_size"] == total
    r = server.get(f"/v1/audit/entries?start=2&end={total + 50}", token=aud).json()
    assert r["end"] == total and r["next"] is None and len(r["entries"]) == total - 2
    r = server.get(f"/v1/audit/entries?start={total}", token=aud).json()
    assert r["entries"] == [] and r["next"] is None


def test_origin_from_config_rewrites_vkey_and_is_audited(server_factory, tmp_path):
    data = tmp_path / "d"
    s = server_factory(args=["--set", "audit.origin=audit.example.org/cases"], data=data)
    aud = s.token("auditor")
    vkey = (data / "keys" / "checkpoint.vkey").read_text()
    assert vkey.startswith("audit.example.org/cases+")
    origin, size, root = open_checkpoint(s.get("/v1/audit/checkpoint", token=aud).text, vkey)
    assert origin == "audit.example.org/cases"
    actions = [json.loads(e["entry"]) for e in entries_of(s, aud)]
    changed = [a for a in actions if a["action"] == "audit.origin"]
    assert len(changed) == 1 and changed[0]["details"]["to"] == "audit.example.org/cases"
    assert changed[0]["details"]["from"].startswith("casevault/")
    # The CLI signs under the same origin.
    p = run_cli("audit", "checkpoint", "--data", str(data), check=True)
    assert p.stdout.startswith("audit.example.org/cases\n")
    open_checkpoint(p.stdout, vkey)
    bad = run_cli("serve", "--data", str(tmp_path / "x"), "--set", "audit.origin=has space")
    assert bad.returncode == 2 and "audit.origin must be" in bad.stderr
    bad = run_cli("serve", "--data", str(tmp_path / "x"), "--set", "audit.origin=a+b")
    assert bad.returncode == 2 and "audit.origin must be" in bad.stderr


def test_cli_verify_detects_an_edited_entry(tmp_path):
    d = tmp_path / "data"
    run_cli("init", "--data", str(d), check=True)
    for i in range(5):
        run_cli("token", "create", "--data", str(d), "--role", "reviewer", "--name", f"r{i}",
                check=True)
    cp = run_cli("audit", "checkpoint", "--data", str(d), check=True)
    vkey = (d / "keys" / "checkpoint.vkey").read_text()
    origin, size, root = open_checkpoint(cp.stdout, vkey)
    assert size == 6
    again = run_cli("audit", "checkpoint", "--data", str(d), check=True)
    assert again.stdout == cp.stdout, "no growth, no new checkpoint"
    ok = run_cli("audit", "verify", "--data", str(d))
    assert ok.returncode == 0, ok.stderr
    assert "6 entries, 1 checkpoints" in ok.stdout
    assert base64.b64encode(root).decode() in ok.stdout
    db = sqlite3.connect(d / "casevault.db")
    row = db.execute("SELECT entry FROM audit_entries WHERE seq=3").fetchone()[0]
    db.execute("UPDATE audit_entries SET entry=? WHERE seq=3",
               (row.replace('"reviewer"', '"admin"'),))
    db.commit()
    db.close()
    bad = run_cli("audit", "verify", "--data", str(d))
    assert bad.returncode == 1
    assert "FAILED at index 3" in bad.stderr, bad.stderr
    # A removed verifier key file is reported too.
    db = sqlite3.connect(d / "casevault.db")
    db.execute("UPDATE audit_entries SET entry=? WHERE seq=3", (row,))
    db.commit()
    db.close()
    assert run_cli("audit", "verify", "--data", str(d)).returncode == 0
    (d / "keys" / "checkpoint.vkey").unlink()
    bad = run_cli("audit", "verify", "--data", str(d))
    assert bad.returncode == 1 and "checkpoint.vkey" in bad.stderr


def test_cli_usage_errors(tmp_path):
    cases = [
        (["audit"], "expected a subcommand"),
        (["audit", "prove"], "unknown subcommand 'prove'"),
        (["audit", "verify"], "--data DIR is required"),
        (["audit", "verify", "--data", str(tmp_path), "--bogus"], "unknown option '--bogus'"),
        (["audit", "checkpoint", "--data", str(tmp_path), "--size", "x"], "--size must be"),
    ]
    for args, msg in cases:
        p = run_cli(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    p = run_cli("audit", "verify", "--data", str(tmp_path / "none"))
    assert p.returncode == 1 and "not an initialized data directory" in p.stderr
    d = tmp_path / "d"
    run_cli("init", "--data", str(d), check=True)
    p = run_cli("audit", "checkpoint", "--data", str(d), "--size", "5")
    assert p.returncode == 1 and "beyond the tree, which has 1 entries" in p.stderr


def test_concurrent_writers_keep_one_gapless_tree(server):
    """CLI processes append while the server answers proofs and signs
    checkpoints: seq stays gapless, every checkpoint stays consistent."""
    aud = server.token("auditor")
    vkey = open(server.data + "/keys/checkpoint.vkey").read()
    _, size0, root0 = open_checkpoint(server.get("/v1/audit/checkpoint", token=aud).text, vkey)
    procs = [subprocess.Popen([BIN, "token", "create", "--data", server.data, "--role", "reviewer",
                               "--name", f"c{i}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    seen = []
    deadline = time.monotonic() + 60
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        seen.append(open_checkpoint(server.get("/v1/audit/checkpoint", token=aud).text, vkey))
        time.sleep(0.05)
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    time.sleep(1.2)  # one checkpoint interval
    seen.append(open_checkpoint(server.get("/v1/audit/checkpoint", token=aud).text, vkey))
    entries = entries_of(server, aud)
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    leaves = [leaf_hash(e["entry"].encode()) for e in entries]
    last = seen[-1]
    assert last[1] == len(entries) == size0 + 8
    for origin, size, root in seen:
        assert mth(leaves[:size]) == root
        p = server.get(f"/v1/audit/proof/consistency?old={size0}&new={size}", token=aud).json()
        assert verify_consistency(size0, size, root0, root, [b(h) for h in p["proof"]])
    v = run_cli("audit", "verify", "--data", server.data)
    assert v.returncode == 0, v.stderr
