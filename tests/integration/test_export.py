"""Case archive exports (issue 7, DESIGN §6): GET /v1/cases/{id}/archive and
`casevault export`, checked with stock tools only (GNU tar, bsdtar, unzip,
Python's tarfile/zipfile, sha256sum -c, Debian's minisign and age, the
case log's tools/check_export.py) and an independent Python Merkle and
signed-note verifier (test_audit.py); byte-identical re-exports as of the
same N whatever TZ and locale; `casevault verify-export` naming every
tampered member, signature and proof; flat memory over 50 documents; the
auditor-only route.

Documents are stored as real encrypted blobs with the TEST-ONLY
`casevault _test-document-add --original F --normalized F --file-name N`
(debug builds) until uploads (issue 6) land."""
import base64
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import time
import unicodedata
import zipfile
from types import SimpleNamespace

import pytest

from conftest import BIN, assert_problem, run_cli
from test_audit import open_checkpoint, verify_inclusion, leaf_hash
from test_cases import CONTACT, P, Env, personal_case, personal_record


def needs_test_hooks():
    # Exports of many documents are seeded through the debug-only
    # _test-document-add (real encrypted blobs, no decoding), which is
    # faster than uploading 50 photos through the decoder pool.
    if "_test-document-add" not in run_cli("help").stdout:
        pytest.skip("release build: the TEST-ONLY _test-document-add command is absent")

# C26: the names an applicant's phone gives its files
C26_NAMES = ["Führerschein_überprüft.jpg", "营业执照_正本.jpg", "Свидетельство.jpg",
             "selfie-ID ✓.jpg", "ascii_only.jpg"]
FIXED = ["MANIFEST.sha256", "MANIFEST.sha256.minisig", "audit/checkpoint", "audit/entries.jsonl",
         "audit/proofs.json", "case.json"]
DIRS = ["audit/", "documents/", "originals/"]


def add_doc(server, cid, original, normalized, name, kind="id_in_hand"):
    p = run_cli("_test-document-add", "--data", server.data, "--case", cid, "--kind", kind,
                "--original", str(original), "--normalized", str(normalized), "--file-name", name)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def clean_env(**extra):
    """The environment without any locale variable, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k != "LANG"}
    env.update(extra)
    return env


@pytest.fixture
def case(server, shared):
    needs_test_hooks()
    e = Env(server)
    e.seed()
    opened = e.open(personal_case())
    cid = opened["id"]
    inputs = os.path.join(shared, "cases", "inputs")
    jpg = os.path.join(inputs, "REF-quadrant-320x240.jpg")
    png = os.path.join(inputs, "REF-quadrant-320x240.png")
    docs = []
    for i, name in enumerate(C26_NAMES):
        # the first name arrives decomposed (macOS): the export must hold it in NFC
        sent = unicodedata.normalize("NFD", name) if i == 0 else name
        docs.append(add_doc(server, cid, png if i % 2 else jpg, jpg, sent))
    names = set(FIXED)
    for d, n in zip(docs, C26_NAMES):
        names.add(f"documents/{d}-id_in_hand.jpg")
        names.add(f"originals/{d}-{n}")
    return SimpleNamespace(env=e, s=server, id=cid, token=opened["token"], docs=docs, names=names,
                           jpg=jpg, png=png)


def get_archive(case, token=None, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    r = case.s.get(f"/v1/cases/{case.id}/archive?{qs}", token or case.env.auditor)
    return r


def fetch(case, **q):
    r = get_archive(case, **q)
    assert r.status_code == 200, r.text
    return r.content, int(r.headers["X-Casevault-As-Of"])


def keys(case):
    d = os.path.join(case.s.data, "keys")
    return os.path.join(d, "casevault.pub"), os.path.join(d, "checkpoint.vkey")


def verify(case, path, *extra, stdin=None):
    pub, vkey = keys(case)
    return subprocess.run([BIN, "verify-export", "--pubkey", pub, "--vkey", vkey, *extra, path],
                          input=stdin, capture_output=True, timeout=120)


def check_contents(case, files, n):
    """Independent checks of the members' meaning (no casevault code)."""
    manifest = files["MANIFEST.sha256"].decode()
    lines = manifest.splitlines()
    assert [ln[66:] for ln in lines] == sorted(case.names - {"MANIFEST.sha256",
                                                             "MANIFEST.sha256.minisig"})
    for ln in lines:
        assert hashlib.sha256(files[ln[66:]]).hexdigest() == ln[:64], ln
    cj = json.loads(files["case.json"])
    assert cj["case_id"] == case.id and cj["as_of"] == n and cj["account_id"] == "p1"
    assert cj["identity"] == {"name": P["name"], "id_type": "cn_resident_id",
                              "id_number": P["id_number"], "mobile": P["mobile"],
                              "contact_mobile": CONTACT}
    assert cj["status_history"][0]["action"] == "case.create"
    assert cj["status_history"][0]["to"] == "draft" and cj["status_as_of"] == "draft"
    assert [d["id"] for d in cj["documents"]] == case.docs
    assert [d["superseded"] for d in cj["documents"]] == [True] * 4 + [False]
    for d in cj["documents"]:
        assert hashlib.sha256(files[d["original"]]).hexdigest() == d["original_sha256"]
        assert hashlib.sha256(files[d["normalized"]]).hexdigest() == d["normalized_sha256"]
    assert files[f"documents/{case.docs[0]}-id_in_hand.jpg"] == open(case.jpg, "rb").read()
    assert files[f"originals/{case.docs[1]}-{C26_NAMES[1]}"] == open(case.png, "rb").read()
    # the audit part, verified with the independent Python verifier of test_audit
    vkey = open(keys(case)[1]).read()
    _, size, root = open_checkpoint(files["audit/checkpoint"].decode(), vkey)
    assert size == n
    entries = files["audit/entries.jsonl"].decode().splitlines()
    proofs = json.loads(files["audit/proofs.json"])
    assert proofs["tree_size"] == n and len(proofs["proofs"]) == len(entries) >= 6
    for line, pr in zip(entries, proofs["proofs"]):
        e = json.loads(line)
        assert e["case_id"] == case.id and e["seq"] == pr["index"] < n
        leaf = leaf_hash(line.encode())
        assert base64.b64decode(pr["leaf_hash"]) == leaf
        assert verify_inclusion(e["seq"], n, leaf, [base64.b64decode(h) for h in pr["hashes"]],
                                root)
    uploads = [json.loads(x)["object_id"] for x in entries
               if json.loads(x)["action"] == "document.upload"]
    assert uploads == case.docs
    # export.create (and the case.view of the identity) landed after N
    db = sqlite3.connect(f"file:{case.s.data}/casevault.db?mode=ro", uri=True)
    rows = db.execute("SELECT seq, entry FROM audit_entries WHERE action IN "
                      "('export.create','case.view') AND case_id=? ORDER BY seq",
                      (case.id,)).fetchall()
    db.close()
    ex = [json.loads(e) for s, e in rows if json.loads(e)["action"] == "export.create"
          and json.loads(e)["details"]["as_of"] == n]
    assert ex and all(x["seq"] >= n for x in ex)
    assert ex[0]["actor"]["role"] in ("auditor", "operator")


# ---- tar ----

def test_tar_export_verifies_with_stock_tools(case, tmp_path, shared):
    r = get_archive(case, format="tar")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-tar"
    n = int(r.headers["X-Casevault-As-Of"])
    assert f'filename="case-{case.id}-{n}.tar"' in r.headers["Content-Disposition"]
    path = tmp_path / "a.tar"
    path.write_bytes(r.content)
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        files = {m.name: tf.extractfile(m).read() for m in members if m.isfile()}
        dirs = {m.name for m in members if m.isdir()}
        assert set(files) == case.names and dirs == {d.rstrip("/") for d in DIRS}
        assert len({m.mtime for m in members}) == 1
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mode == (0o755 if m.isdir() else 0o644), m.name
    assert tarfile.open(path).pax_headers == {}
    check_contents(case, files, n)
    # GNU tar extracts it; sha256sum -c and minisign -V pass in the extracted tree
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(path), "-C", str(out)], check=True, env=clean_env())
    p = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=out,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.count(": OK") == len(case.names) - 2, p.stdout
    p = subprocess.run(["minisign", "-Vm", "MANIFEST.sha256", "-p", keys(case)[0]], cwd=out,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert f"Trusted comment: casevault export case={case.id} as_of={n}" in p.stdout
    # bsdtar lists the same names (UTF-8 via pax headers)
    p = subprocess.run(["bsdtar", "-tf", str(path)], capture_output=True,
                       env=clean_env(LC_ALL="C.UTF-8"))
    assert p.returncode == 0
    assert {x.decode() for x in p.stdout.splitlines()} == case.names | set(DIRS)
    # the case log's checker (long/non-ASCII names intact)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(sorted(case.names)) + "\n", encoding="utf-8")
    p = subprocess.run(["python3", os.path.join(shared, "cases/tools/check_export.py"), str(path),
                        "--expect-names", str(names)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stdout
    p = verify(case, str(path))
    assert p.returncode == 0, p.stdout.decode()
    out = p.stdout.decode().splitlines()
    assert out[-1] == "OK" and not any(x.startswith("FAIL") for x in out)
    assert {x.split(":")[0] for x in out[:-1]} == {"ok archive", "ok manifest", "ok signature",
                                                  "ok checkpoint", "ok proofs"}


# ---- zip ----

def test_zip_export_c26_names_and_stock_tools(case, tmp_path, shared):
    data, n = fetch(case, format="zip")
    path = tmp_path / "a.zip"
    path.write_bytes(data)
    # C26: the reference checker, bit 11 in local and central headers, NFC
    p = subprocess.run(["python3", os.path.join(shared, "cases/tools/check_export.py"), str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stdout
    # the checker itself tells the two reference files apart
    ref = os.path.join(shared, "cases/inputs")
    assert subprocess.run(["python3", os.path.join(shared, "cases/tools/check_export.py"),
                           os.path.join(ref, "C26b-reference-export-utf8-flag-missing.zip")],
                          capture_output=True).returncode == 1
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        files = {i.filename: zf.read(i) for i in infos if not i.is_dir()}
        assert set(files) == case.names
        for i in infos:
            if not i.filename.isascii():
                assert i.flag_bits & 0x800, i.filename
                assert unicodedata.normalize("NFC", i.filename) == i.filename
            if i.is_dir():
                continue
            img = i.filename.startswith(("documents/", "originals/"))
            assert i.compress_type == (zipfile.ZIP_STORED if img else zipfile.ZIP_DEFLATED), \
                i.filename
            assert (i.external_attr >> 16) & 0o777 == 0o644
        assert len({i.date_time for i in infos}) == 1
    check_contents(case, files, n)
    p = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert p.returncode == 0 and "No errors detected" in p.stdout, p.stdout
    p = subprocess.run(["unzip", "-Z1", str(path)], capture_output=True)
    assert {x.decode() for x in p.stdout.splitlines()} == case.names | set(DIRS)
    out = tmp_path / "x"
    subprocess.run(["unzip", "-q", str(path), "-d", str(out)], check=True)
    assert subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=out,
                          capture_output=True).returncode == 0
    # verify-export from the file, and from a pipe (zip read through local headers)
    assert verify(case, str(path)).returncode == 0
    p = verify(case, "-", stdin=data)
    assert p.returncode == 0 and p.stdout.decode().splitlines()[-1] == "OK", p.stdout
    # an auditor's own re-zip, streamed (sizes unknown in the local headers), still verifies
    rezip = subprocess.run(["zip", "-q", "-r", "-fd", "-", "MANIFEST.sha256",
                            "MANIFEST.sha256.minisig", "audit", "case.json", "documents",
                            "originals"], cwd=out, capture_output=True, check=True).stdout
    p = verify(case, "-", stdin=rezip)
    assert p.returncode == 0, p.stdout.decode()


# ---- determinism, TZ and locale ----

def test_same_n_gives_identical_bytes_whatever_tz_and_locale(case, tmp_path):
    t1, n = fetch(case, format="tar")
    z1, n2 = fetch(case, format="zip", as_of=n)
    assert n2 == n
    time.sleep(1.1)  # a later second: nothing may depend on the clock
    t2, _ = fetch(case, format="tar", as_of=n)
    assert t1 == t2
    # the CLI with no locale variables at all and other time zones, zip and tar
    outs = []
    for i, extra in enumerate([{"TZ": "America/New_York"}, {"TZ": "Asia/Kolkata", "LANG": "C"},
                               {"TZ": "Pacific/Chatham", "LC_ALL": "POSIX"}]):
        for fmt in ("tar", "zip"):
            o = tmp_path / f"c{i}.{fmt}"
            p = subprocess.run([BIN, "export", "--data", case.s.data, "--case", case.id,
                                "--format", fmt, "--as-of", str(n), "--out", str(o)],
                               env=clean_env(**extra), capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            outs.append((fmt, o.read_bytes()))
    for fmt, b in outs:
        assert b == (t1 if fmt == "tar" else z1), fmt
    # more activity after N (a new document, a submission) changes nothing as of N
    add_doc(case.s, case.id, case.jpg, case.jpg, "later.jpg")
    r = case.s.request("POST", f"/v1/cases/{case.id}/submit", case.token)
    assert r.status_code == 200, r.text
    t3, _ = fetch(case, format="tar", as_of=n)
    z3, _ = fetch(case, format="zip", as_of=n)
    assert t3 == t1 and z3 == z1
    t4, n4 = fetch(case, format="tar")
    assert n4 > n and t4 != t1
    with tarfile.open(fileobj=io.BytesIO(t4)) as tf:
        assert any(m.name.endswith("-later.jpg") for m in tf.getmembers())


# ---- age ----

def test_age_recipient_stream_decrypts_to_the_archive(case, tmp_path):
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = [ln.split(": ")[1] for ln in key.read_text().splitlines()
                 if ln.startswith("# public key: ")][0]
    plain, n = fetch(case, format="zip")
    r = get_archive(case, format="zip", recipient=recipient, as_of=n)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    assert r.content.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert 'zip.age"' in r.headers["Content-Disposition"]
    enc = tmp_path / "a.zip.age"
    enc.write_bytes(r.content)
    p = subprocess.run(["age", "-d", "-i", str(key), str(enc)], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == plain
    # the CLI to stdout, tar, piped into age -d, then into verify-export
    cli = subprocess.run([BIN, "export", "--data", case.s.data, "--case", case.id, "--format",
                          "tar", "--as-of", str(n), "--recipient", recipient, "--out", "-"],
                         capture_output=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    dec = subprocess.run(["age", "-d", "-i", str(key)], input=cli.stdout, capture_output=True)
    assert dec.returncode == 0 and dec.stdout == fetch(case, format="tar", as_of=n)[0]
    assert verify(case, "-", stdin=dec.stdout).returncode == 0
    # a truncated age stream is refused by age itself
    bad = subprocess.run(["age", "-d", "-i", str(key)], input=r.content[:-100],
                         capture_output=True)
    assert bad.returncode != 0


def test_bad_parameters(case):
    good = "age1" + "q" * 58
    for rec in ("age1abc", "AGE1" + "Q" * 58, good, "", "x" * 200,
                "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj".upper()):
        b = assert_problem(get_archive(case, format="tar", recipient=rec), 400, "invalid_field")
        assert b["field"] == "recipient"
    for fmt in ("rar", "TAR", "", "zip;"):
        assert assert_problem(get_archive(case, format=fmt), 400, "invalid_field")["field"] == \
            "format"
    for a in ("0", "-1", "abc", "1e3", "99999999999999999999"):
        assert assert_problem(get_archive(case, as_of=a), 400, "invalid_field")["field"] == \
            "as_of"
    b = assert_problem(get_archive(case, as_of="9999999"), 400, "out_of_range")
    assert b["field"] == "as_of" and b["tree_size"] > 0
    # before the case's first entry: the case did not exist yet
    assert_problem(get_archive(case, as_of="1"), 400, "out_of_range")
    assert_problem(case.s.get("/v1/cases/01J00000000000000000000000/archive",
                              case.env.auditor), 404, "not_found")
    assert_problem(case.s.get("/v1/cases/not-a-case/archive", case.env.auditor), 404, "not_found")
    # CLI usage errors name the option
    for args, word in ((["--format", "rar"], "--format"), (["--as-of", "x"], "--as-of"),
                       (["--recipient", "age1abc"], "--recipient")):
        p = run_cli("export", "--data", case.s.data, "--case", case.id, "--out", "-", *args)
        assert p.returncode == 2 and word in p.stderr, p.stderr
    p = run_cli("export", "--data", case.s.data, "--case", case.id, "--out", "-", "--as-of",
                "99999999")
    assert p.returncode == 1 and "as-of" in p.stderr
    p = run_cli("export", "--data", case.s.data, "--case", "01J00000000000000000000000",
                "--out", "-")
    assert p.returncode == 1 and "no such case" in p.stderr
    assert run_cli("export", "--data", case.s.data, "--out", "-").returncode == 2
    assert run_cli("verify-export").returncode == 2
    assert run_cli("verify-export", "x.tar").returncode == 2  # no keys given


def test_archive_route_is_auditor_only(case):
    s, e = case.s, case.env
    for who, tok in (("admin", e.admin), ("reviewer", e.reviewer), ("backup", e.backup)):
        assert_problem(get_archive(case, token=tok, format="tar"), 403, "forbidden")
    # the case's own applicant token: the route does not exist for it
    assert_problem(get_archive(case, token=case.token, format="tar"), 404, "not_found")
    assert s.get(f"/v1/cases/{case.id}/archive").status_code == 401
    assert s.get(f"/v1/cases/{case.id}/archive", "not-a-token").status_code == 401
    assert get_archive(case, format="tar").status_code == 200


# ---- verify-export: tampering ----

def rebuild_tar(data, change=None, drop=None, add=None):
    """A new pax tar with member `name` changed by change[name](bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            if drop and m.name == drop:
                continue
            body = src.extractfile(m).read() if m.isfile() else None
            if body is not None and change and m.name in change:
                body = change[m.name](body)
                m.size = len(body)
            dst.addfile(m, io.BytesIO(body) if body is not None else None)
        if add:
            ti = tarfile.TarInfo(add)
            ti.size = 3
            dst.addfile(ti, io.BytesIO(b"new"))
    return out.getvalue()


def flip(b, at=None):
    i = len(b) // 2 if at is None else at
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]


def run_verify(case, tmp_path, data):
    path = tmp_path / "t.tar"
    path.write_bytes(data)
    p = verify(case, str(path))
    return p.returncode, p.stdout.decode()


def test_verify_export_names_every_tampered_part(case, tmp_path, server_factory):
    data, n = fetch(case, format="tar")
    assert run_verify(case, tmp_path, rebuild_tar(data))[0] == 0  # the rebuild itself is neutral
    # every member listed in the manifest
    for name in sorted(case.names - {"MANIFEST.sha256", "MANIFEST.sha256.minisig"}):
        rc, out = run_verify(case, tmp_path, rebuild_tar(data, {name: flip}))
        assert rc == 1, name
        assert f"FAIL manifest: {name}: SHA-256 differs from MANIFEST.sha256" in out, out
        assert out.splitlines()[-1] == "FAILED"
    # the manifest itself: the signature no longer verifies
    rc, out = run_verify(case, tmp_path,
                         rebuild_tar(data, {"MANIFEST.sha256": lambda b: flip(b, 3)}))
    assert rc == 1 and "FAIL signature: MANIFEST.sha256.minisig does not verify" in out, out
    assert "FAIL manifest" in out
    # the signature line of the .minisig
    def bad_sig(b):
        lines = b.split(b"\n")
        lines[1] = flip(lines[1], 20)
        return b"\n".join(lines)
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, {"MANIFEST.sha256.minisig": bad_sig}))
    assert rc == 1 and "FAIL signature:" in out and "FAIL manifest" not in out, out
    # the trusted comment (global signature)
    rc, out = run_verify(case, tmp_path, rebuild_tar(
        data, {"MANIFEST.sha256.minisig": lambda b: b.replace(b"as_of=", b"as_of=1")}))
    assert rc == 1 and "FAIL signature:" in out, out
    # a proof: manifest AND the proof check name it, with the entry index
    def bad_proof(b):
        j = json.loads(b)
        pr = j["proofs"][2]
        h = bytearray(base64.b64decode(pr["hashes"][0]))
        h[0] ^= 1
        pr["hashes"][0] = base64.b64encode(bytes(h)).decode()
        return json.dumps(j).encode()
    seq = json.loads(dict(case_files(data))["audit/proofs.json"])["proofs"][2]["index"]
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, {"audit/proofs.json": bad_proof}))
    assert rc == 1 and "FAIL manifest: audit/proofs.json" in out
    assert f"FAIL proofs: entry {seq}: inclusion proof does not lead to the checkpoint's root" \
        in out, out
    # an entry rewritten
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, {
        "audit/entries.jsonl": lambda b: b.replace(b'"outcome":"ok"', b'"outcome":"no"', 1)}))
    assert rc == 1 and "FAIL proofs: proof of entry" in out, out
    # the checkpoint's signature
    size_line = str(n).encode() + b"\n"
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, {
        "audit/checkpoint": lambda b: b.replace(size_line, str(n + 1).encode() + b"\n", 1)}))
    assert rc == 1 and "FAIL checkpoint: audit/checkpoint: signed note does not verify" in out, out
    # a file not in the manifest; a file missing
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, add="documents/extra.jpg"))
    assert rc == 1 and "FAIL manifest: documents/extra.jpg: present but not in MANIFEST" in out
    gone = f"originals/{case.docs[2]}-{C26_NAMES[2]}"
    rc, out = run_verify(case, tmp_path, rebuild_tar(data, drop=gone))
    assert rc == 1 and f"FAIL manifest: {gone}: listed in MANIFEST.sha256 but missing" in out
    # a stream cut in the middle of a document
    rc, out = run_verify(case, tmp_path, data[: len(data) // 2])
    assert rc == 1 and "FAIL archive:" in out, out
    # another instance's keys: both signatures refused
    other = server_factory()
    pub = os.path.join(other.data, "keys", "casevault.pub")
    vk = os.path.join(other.data, "keys", "checkpoint.vkey")
    path = tmp_path / "ok.tar"
    path.write_bytes(data)
    p = subprocess.run([BIN, "verify-export", "--pubkey", pub, "--vkey", vk, str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "FAIL signature:" in p.stdout and "FAIL checkpoint:" in p.stdout
    assert "ok manifest" in p.stdout
    # not an archive at all
    rc, out = run_verify(case, tmp_path, b"hello" * 100)
    assert rc == 1 and "FAIL archive: not a tar or zip archive" in out


def case_files(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]


def blob_file(data_dir, doc_id, column):
    db = sqlite3.connect(f"file:{data_dir}/casevault.db?mode=ro", uri=True)
    blob = db.execute(f"SELECT {column} FROM documents WHERE id=?", (doc_id,)).fetchone()[0]
    db.close()
    found = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(data_dir, "blobs"))
             for f in fs if f == blob]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("big", [False, True])
def test_a_tampered_blob_cuts_the_stream(case, tmp_path, big):
    """A blob file altered at rest (a small one read inline, a large one
    decrypted by the helper thread): the export stream stops, verify-export
    says so."""
    doc = case.docs[1]
    if big:
        f = tmp_path / "big.bin"
        f.write_bytes(os.urandom(3 << 20))
        doc = add_doc(case.s, case.id, f, f, "big.jpg")
    path = blob_file(case.s.data, doc, "normalized_blob_id")
    b = bytearray(open(path, "rb").read())
    b[len(b) // 2 if big else -5] ^= 1
    os.chmod(path, 0o600)
    open(path, "wb").write(bytes(b))
    p = subprocess.run([BIN, "export", "--data", case.s.data, "--case", case.id, "--format",
                        "tar", "--out", "-"], capture_output=True, timeout=120)
    assert p.returncode == 1 and b"the export stream was cut" in p.stderr
    rc, out = run_verify(case, tmp_path, p.stdout)
    line = [x for x in out.splitlines() if x.startswith("FAIL archive:")]
    assert rc == 1 and len(line) == 1, out
    assert f"documents/{doc}-id_in_hand.jpg" in line[0] and "cut short" in line[0], out
    # over HTTP the stream is cut too: the body is not a complete archive
    r = get_archive(case, format="tar")
    assert r.status_code == 200
    rc, out = run_verify(case, tmp_path, r.content)
    assert rc == 1 and "FAIL archive:" in out, out


def test_a_client_that_leaves_mid_blob_stops_the_export(case, tmp_path):
    """A client that reads 1 KiB of an archive and hangs up while a 6 MiB
    document is still being decrypted (more than the 1 MiB response pipe and
    the 1 MiB decrypt ring hold): the producer's write fails, the decrypt
    helper is stopped and joined, and the server goes on serving the same
    archive (the sanitizers check the unwinding when the server stops)."""
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(6 << 20))
    add_doc(case.s, case.id, f, f, "big.jpg")
    full, n = fetch(case, format="tar")
    assert len(full) > 12 << 20
    for _ in range(3):
        r = case.s.request("GET", f"/v1/cases/{case.id}/archive?format=tar&as_of={n}",
                           case.env.auditor, stream=True)
        assert r.status_code == 200
        assert len(next(r.iter_content(1024))) > 0
        r.close()
    assert fetch(case, format="tar", as_of=n)[0] == full
    assert case.s.get("/healthz").status_code == 200


def audit_size(case):
    db = sqlite3.connect(f"file:{os.path.join(case.s.data, 'casevault.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM audit_entries").fetchone()[0]
    finally:
        db.close()


def test_cli_reader_that_leaves_is_a_reported_error(case, tmp_path):
    """`export --out -`: a reader that leaves after 1 KiB while a 6 MiB
    document is being decrypted is an error the command reports (exit 1,
    not a silent SIGPIPE death)."""
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(6 << 20))
    add_doc(case.s, case.id, f, f, "big.jpg")
    p = subprocess.Popen([BIN, "export", "--data", case.s.data, "--case", case.id, "--format",
                          "tar", "--out", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(1024)) == 1024
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    assert b"the export stream was cut" in err, err


def test_cli_refuses_a_terminal_before_auditing(case):
    """`export --out -` and `backup --out -` with a terminal as stdout: exit 2
    before anything is read or audited."""
    import pty
    try:
        master, slave = pty.openpty()
    except OSError as e:  # a bare chroot has no /dev/pts
        pytest.skip(f"no pseudo-terminal here: {e}")
    before = audit_size(case)
    try:
        for cmd in (["export", "--case", case.id, "--format", "tar"], ["backup"]):
            p = subprocess.run([BIN, cmd[0], "--data", case.s.data, *cmd[1:], "--out", "-"],
                               stdout=slave, stderr=subprocess.PIPE, timeout=60)
            assert p.returncode == 2, p.stderr
            assert b"would write a binary stream to a terminal" in p.stderr
    finally:
        os.close(slave)
        os.close(master)
    assert audit_size(case) == before


# ---- memory ----

def peak_rss_kb(args):
    # ASan keeps freed blocks in a quarantine (256 MB by default): every blob
    # reader's chunk buffers would show up as growth. Measure without it.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":")
    p = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, *args], capture_output=True, text=True,
                       timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.strip().splitlines()[-1])


def test_fifty_documents_flat_rss(server, tmp_path):
    needs_test_hooks()
    e = Env(server)
    e.seed()
    small = e.open(personal_case())["id"]
    big_file = tmp_path / "big.bin"
    big_file.write_bytes(os.urandom(2 << 20))
    add_doc(server, small, big_file, big_file, "one.jpg")
    # a second case on another account, 50 documents of 2 MiB (original and normalized)
    e.put_account(personal_record("p7"))
    big = e.open(personal_case("p7"))["id"]
    for i in range(50):
        add_doc(server, big, big_file, big_file, f"doc{i}.jpg")
    args = ["export", "--data", server.data, "--format", "zip", "--out", str(tmp_path / "o.zip")]
    r1 = peak_rss_kb(args[:3] + ["--case", small] + args[3:])
    size1 = os.path.getsize(tmp_path / "o.zip")
    r50 = peak_rss_kb(args[:3] + ["--case", big] + args[3:])
    size50 = os.path.getsize(tmp_path / "o.zip")
    assert size50 > 200 << 20 and size1 < 5 << 20
    # 50x the data (200 MiB), the same peak RSS within 8 MiB
    assert r50 - r1 < 8 * 1024, (r1, r50)
    assert verify_with_data(server.data, tmp_path / "o.zip") == 0


def verify_with_data(data, path):
    return subprocess.run([BIN, "verify-export", "--data", data, str(path)],
                          capture_output=True).returncode


def test_unsafe_and_long_client_names_are_made_safe(server, shared, tmp_path):
    """C14/C16/C18-style client names: path separators, quotes, controls,
    invalid UTF-8, NFD, 300-byte CJK names. Each becomes one safe NFC member
    name that every tool round-trips and sha256sum -c accepts."""
    needs_test_hooks()
    e = Env(server)
    e.seed()
    cid = e.open(personal_case())["id"]
    jpg = os.path.join(shared, "cases", "inputs", "REF-quadrant-320x240.jpg")
    sent = [b"../../etc/passwd", b'a"b\\c:d.jpg', b"tab\there\nnl.jpg",
            "本".encode() * 100 + b".jpg", "本".encode() * 100, b"F\xfchrer.jpg",
            "Fu\u0308hrer.jpg".encode(), b"..", "x\u202egpj.exe".encode()]
    want = ["_.._etc_passwd", 'a"b_c_d.jpg', "tab_here_nl.jpg", "本" * 65 + ".jpg", "本" * 66,
            "F\ufffdhrer.jpg", "Führer.jpg", "file", "x_gpj.exe"]
    docs = []
    for name in sent:
        p = subprocess.run([BIN, "_test-document-add", "--data", server.data, "--case", cid,
                            "--kind", "id_in_hand", "--original", jpg, "--normalized", jpg,
                            "--file-name", name], capture_output=True)
        assert p.returncode == 0, p.stderr
        docs.append(p.stdout.decode().strip())
    names = {f"originals/{d}-{w}" for d, w in zip(docs, want)}
    listing = tmp_path / "names.txt"
    listing.write_text("\n".join(sorted(names)) + "\n", encoding="utf-8")
    for fmt in ("tar", "zip"):
        r = server.get(f"/v1/cases/{cid}/archive?format={fmt}", e.auditor)
        assert r.status_code == 200
        path = tmp_path / f"n.{fmt}"
        path.write_bytes(r.content)
        if fmt == "zip":
            got = set(zipfile.ZipFile(path).namelist())
        else:
            got = set(tarfile.open(path).getnames())
        assert names <= got, sorted(names - got)
        p = subprocess.run(["python3", os.path.join(shared, "cases/tools/check_export.py"),
                            str(path), "--expect-names", str(listing)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout
        out = tmp_path / f"x-{fmt}"
        out.mkdir()
        if fmt == "tar":
            subprocess.run(["tar", "-xf", str(path), "-C", str(out)], check=True)
        else:
            subprocess.run(["unzip", "-q", str(path), "-d", str(out)], check=True)
        assert sorted(os.listdir(out)) == ["MANIFEST.sha256", "MANIFEST.sha256.minisig", "audit",
                                           "case.json", "documents", "originals"]
        assert subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=out,
                              capture_output=True).returncode == 0
        assert verify_with_data(server.data, path) == 0


def test_concurrent_exports_and_a_client_that_leaves(case):
    """Four exports at once give the same bytes; a client that reads 1 KiB
    and hangs up leaves the server healthy (its producer unwinds on EPIPE)."""
    import concurrent.futures
    _, n = fetch(case, format="zip")
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: fetch(case, format="zip", as_of=n)[0], range(4)))
    assert len(set(outs)) == 1
    for _ in range(3):
        r = case.s.request("GET", f"/v1/cases/{case.id}/archive?format=tar", case.env.auditor,
                           stream=True)
        assert r.status_code == 200
        next(r.iter_content(1024))
        r.close()
    assert fetch(case, format="zip", as_of=n)[0] == outs[0]
    assert case.s.get("/healthz").status_code == 200


def test_server_without_locale_in_another_tz_matches_the_cli(server_factory, shared, tmp_path):
    """The server itself started with no LANG/LC_* and TZ=Asia/Tokyo: its zip
    (UTF-8 flags, DOS times) equals the CLI's under TZ=America/Los_Angeles."""
    needs_test_hooks()
    s = server_factory(env=clean_env(TZ="Asia/Tokyo"))
    e = Env(s)
    e.seed()
    cid = e.open(personal_case())["id"]
    jpg = os.path.join(shared, "cases", "inputs", "REF-quadrant-320x240.jpg")
    for name in C26_NAMES:
        add_doc(s, cid, jpg, jpg, name)
    r = s.get(f"/v1/cases/{cid}/archive?format=zip", e.auditor)
    assert r.status_code == 200
    n = r.headers["X-Casevault-As-Of"]
    p = subprocess.run([BIN, "export", "--data", s.data, "--case", cid, "--format", "zip",
                        "--as-of", n, "--out", "-"], capture_output=True, timeout=120,
                       env=clean_env(TZ="America/Los_Angeles"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == r.content
    path = tmp_path / "t.zip"
    path.write_bytes(r.content)
    chk = subprocess.run(["python3", os.path.join(shared, "cases/tools/check_export.py"),
                          str(path)], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout
    # the DOS time is the case's last change in UTC, not in the server's zone
    with zipfile.ZipFile(path) as zf:
        last = max(json.loads(x)["time"] for x in zf.read("audit/entries.jsonl").splitlines())
        assert zf.infolist()[0].date_time[:5] == tuple(
            int(v) for v in (last[0:4], last[5:7], last[8:10], last[11:13], last[14:16]))
