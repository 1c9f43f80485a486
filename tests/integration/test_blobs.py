"""The encrypted blob store through the real binary: `blob put|get`, `fsck`,
`keys rotate [--retire]`, kill -9 at every step of a put followed by a
restart and fsck, rotation while a server runs and readers read, and a
plaintext byte run that must be found nowhere under the data dir.

The HTTP layer has no blob routes yet, so these tests drive the maintenance
subcommands (`casevault blob put/get`), which call the same storage API the
upload handlers will call."""
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BIN, Server, run_cli

CHUNK = 65536


def put(data_dir, path, env=None, check=True):
    p = run_cli("blob", "put", "--data", str(data_dir), str(path), env=env)
    if check:
        assert p.returncode == 0, p.stderr
        assert p.stdout.count("\n") == 1
    return p


def get(data_dir, blob_id):
    p = subprocess.run([BIN, "blob", "get", "--data", str(data_dir), blob_id],
                       capture_output=True, timeout=120)
    return p


def blob_files(d):
    out = []
    for root, _, files in os.walk(os.path.join(d, "blobs")):
        out += [os.path.join(root, f) for f in files]
    return out


def tmp_files(d):
    return os.listdir(os.path.join(d, "tmp"))


def rows(d, sql, args=()):
    c = sqlite3.connect(os.path.join(d, "casevault.db"), timeout=10)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def restart(d):
    """Start a server on d (it sweeps staging and orphans), check it, stop it."""
    s = Server(d).start()
    try:
        assert s.get("/readyz").status_code == 200
    finally:
        assert s.stop() == 0, "".join(s.raw_stderr[-20:])
    return s


def fsck(d):
    return run_cli("fsck", "--data", str(d), timeout=300)


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    run_cli("init", "--data", str(d), check=True)
    return d


def test_round_trips_at_chunk_edges(data, tmp_path):
    ids = {}
    for size in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17):
        src = tmp_path / f"in{size}"
        src.write_bytes(os.urandom(size))
        p = put(data, src)
        bid = p.stdout.strip()
        assert len(bid) == 26
        assert hashlib.sha256(src.read_bytes()).hexdigest() in p.stderr
        ids[bid] = src.read_bytes()
        n = 1 if size == 0 else -(-size // CHUNK)
        f = [x for x in blob_files(data) if x.endswith(bid)]
        assert len(f) == 1 and os.path.getsize(f[0]) == 62 + size + 17 * n
        assert oct(os.stat(f[0]).st_mode & 0o777) == "0o600"
    for bid, want in ids.items():
        g = get(data, bid)
        assert g.returncode == 0, g.stderr
        assert g.stdout == want
    # stdin, and --out FILE
    p = subprocess.run([BIN, "blob", "put", "--data", str(data), "-"], input=b"from stdin",
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out.bin"
    g = run_cli("blob", "get", "--data", str(data), "--out", str(out), p.stdout.decode().strip())
    assert g.returncode == 0 and out.read_bytes() == b"from stdin"
    r = rows(data, "SELECT count(*), sum(size) FROM blobs")[0]
    assert r == (7, sum(len(v) for v in ids.values()) + 10)
    acts = [a for (a,) in rows(data, "SELECT action FROM audit_entries ORDER BY seq")]
    assert acts.count("blob.put") == 7 and acts.count("blob.get") == 7
    f = fsck(data)
    assert f.returncode == 0, f.stderr
    assert "7 blobs, 7 ok" in f.stderr and "fsck: clean" in f.stderr
    assert tmp_files(data) == []


def test_usage_and_failure_messages(data, tmp_path):
    cases = [
        (["blob"], 2, "expected a subcommand"),
        (["blob", "frob"], 2, "unknown subcommand 'frob'"),
        (["blob", "put", "--data", str(data)], 2, "expected FILE"),
        (["blob", "put", str(tmp_path)], 2, "--data DIR is required"),
        (["blob", "get", "--data", str(data), "nope"], 2, "must be a 26-character ULID"),
        (["blob", "get", "--data", str(data)], 2, "expected a blob ID"),
        (["blob", "put", "--data", str(data), str(tmp_path / "missing")], 1, "cannot open"),
        (["blob", "get", "--data", str(data), "01M8MDEKZP74HKJV8N58KW8WKE"], 1, "no blob"),
        (["keys"], 2, "expected a subcommand"),
        (["keys", "spin"], 2, "unknown subcommand 'spin'"),
        (["keys", "rotate", "--data", str(data), "--batch", "0"], 2, "--batch must be"),
        (["keys", "rotate", "--data", str(data), "--batch", "x"], 2, "--batch must be"),
        (["keys", "rotate", "--data", str(data), "--retire", "XYZ"], 2, "--retire must be a key id"),
        (["keys", "rotate", "--data", str(data), "--retire", "0123456789abcdef"], 1, "no key file"),
        (["keys", "rotate"], 2, "--data DIR is required"),
        (["fsck"], 2, "--data DIR is required"),
        (["fsck", "--data", str(tmp_path / "none")], 1, "not an initialized data directory"),
        (["keys", "rotate", "--data", str(tmp_path / "none")], 1, "not an initialized"),
    ]
    for args, code, msg in cases:
        p = run_cli(*args)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    h = run_cli("help").stdout
    for cmd in ("casevault keys rotate --data DIR [--batch N]",
                "casevault keys rotate --data DIR --retire KEYID", "casevault fsck --data DIR",
                "casevault blob put --data DIR FILE|-", "casevault blob get --data DIR"):
        assert cmd in h, cmd
    active = rows(data, "SELECT value FROM meta WHERE key='active_kek'")[0][0]
    p = run_cli("keys", "rotate", "--data", str(data), "--retire", active)
    assert p.returncode == 1 and "is the active key" in p.stderr


def test_fsck_reports_each_problem(data, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(os.urandom(200000))
    a = put(data, src).stdout.strip()
    b = put(data, src).stdout.strip()
    c = put(data, src).stdout.strip()
    fa = [x for x in blob_files(data) if x.endswith(a)][0]
    fb = [x for x in blob_files(data) if x.endswith(b)][0]
    fc = [x for x in blob_files(data) if x.endswith(c)][0]
    assert fsck(data).returncode == 0
    with open(fa, "r+b") as fh:  # one flipped bit in the second chunk
        fh.seek(62 + CHUNK + 17 + 500)
        x = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([x[0] ^ 4]))
    os.unlink(fb)
    with open(fc, "ab") as fh:
        fh.write(b"\0")
    # An orphan: killed between the rename into place and the row's commit.
    p = put(data, src, env={**os.environ, "CASEVAULT_TEST_CRASH_AT": "commit"}, check=False)
    assert p.returncode == -signal.SIGKILL
    f = fsck(data)
    assert f.returncode == 1
    lines = sorted(f.stdout.splitlines())
    assert f"{a} damaged: blob failed authentication (tampered or wrong key)" in lines
    assert f"{b} missing: the row has no blob file" in lines
    assert f"{c} damaged: blob has trailing data" in lines
    assert sum(1 for l in lines if l.endswith("orphan: blob file without a row")) == 1
    assert len(lines) == 4
    assert "3 blobs, 0 ok" in f.stderr and "1 orphan files" in f.stderr
    g = get(data, a)
    assert g.returncode == 1 and b"failed authentication" in g.stderr
    g = get(data, c)
    assert g.returncode == 1 and b"trailing data" in g.stderr


STEPS = ["begin", "write", "finish", "commit", "record"]


@pytest.mark.parametrize("step", STEPS)
def test_kill9_at_each_step_then_restart_and_fsck(server_factory, data, tmp_path, step):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(5 * CHUNK + 123))
    kept = put(data, src).stdout.strip()
    p = put(data, src, env={**os.environ, "CASEVAULT_TEST_CRASH_AT": step}, check=False)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert f"crashing after {step}" in p.stderr
    assert rows(data, "SELECT count(*) FROM blobs")[0][0] == 1
    before = fsck(data)
    if step in ("commit", "record"):
        # renamed into place, row never committed: visible to fsck as an orphan
        assert before.returncode == 1 and "orphan" in before.stdout
        assert tmp_files(data) == []
    else:
        # only a staging file: no visible blob, nothing for fsck to report
        assert before.returncode == 0, before.stdout
        assert len(tmp_files(data)) == 1
    restart(data)
    assert tmp_files(data) == []
    assert len(blob_files(data)) == 1
    after = fsck(data)
    assert after.returncode == 0, after.stdout + after.stderr
    assert get(data, kept).stdout == src.read_bytes()
    # the store still works after the crash
    again = put(data, src).stdout.strip()
    assert get(data, again).stdout == src.read_bytes()
    assert "blob.put" in [a for (a,) in rows(data, "SELECT action FROM audit_entries")]


def test_kill9_at_random_points_of_streaming_puts(server_factory, data):
    rnd = random.Random(1234)
    payload = os.urandom(3 * 1024 * 1024)
    good = []
    for i in range(8):
        proc = subprocess.Popen([BIN, "blob", "put", "--data", str(data), "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        cut = rnd.randrange(0, len(payload))
        sent = 0
        try:
            while sent < cut:
                n = min(rnd.choice([1000, 50000, 200000]), cut - sent)
                proc.stdin.write(payload[sent:sent + n])
                proc.stdin.flush()
                sent += n
            if i % 3 == 2:
                # let it finish: close stdin, then kill after a random delay
                proc.stdin.write(payload[sent:])
                proc.stdin.close()
                time.sleep(rnd.random() * 0.3)
            proc.kill()
        finally:
            if not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            out = proc.stdout.read()
            proc.stderr.read()
            proc.wait(60)
        if proc.returncode == 0:
            good.append(out.decode().strip())
    restart(data)
    f = fsck(data)
    assert f.returncode == 0, f.stdout + f.stderr
    assert tmp_files(data) == []
    n = rows(data, "SELECT count(*) FROM blobs")[0][0]
    assert n == len(blob_files(data)) == len(good)
    for bid in good:
        assert get(data, bid).stdout == payload


def test_server_start_leaves_a_live_cli_put_alone(server_factory, data):
    proc = subprocess.Popen([BIN, "blob", "put", "--data", str(data), "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"A" * 300000)
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while not tmp_files(data) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tmp_files(data)) == 1
        server_factory(data=data)  # sweeps tmp/ and orphans at start-up
        assert len(tmp_files(data)) == 1, "the live staging file must survive the sweep"
        out, err = proc.communicate(b"B" * 1000, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert get(data, out.decode().strip()).stdout == b"A" * 300000 + b"B" * 1000
    assert fsck(data).returncode == 0


def test_rotation_while_server_runs_and_readers_read(data, tmp_path):
    files = {}
    for i in range(24):
        src = tmp_path / f"f{i}"
        src.write_bytes(os.urandom(random.Random(i).randrange(0, 300000)))
        files[put(data, src).stdout.strip()] = src.read_bytes()
    old = rows(data, "SELECT value FROM meta WHERE key='active_kek'")[0][0]
    s = Server(data).start()
    try:
        _rotate_live(s, data, tmp_path, files, old)
    finally:
        rc = s.stop()
    assert rc == 0, "".join(s.raw_stderr[-20:])
    f = fsck(data)
    assert f.returncode == 0 and "25 blobs, 25 ok" in f.stderr
    acts = [a for (a,) in rows(data, "SELECT action FROM audit_entries ORDER BY seq")]
    assert acts.count("keys.rotate") == 1 and acts.count("keys.rewrap") == 1
    assert acts.count("keys.retire") == 1
    assert acts.index("keys.rotate") < acts.index("keys.rewrap") < acts.index("keys.retire")
    # the server restarts on the rotated keys
    restart(data)


def _rotate_live(s, data, tmp_path, files, old):
    stop = threading.Event()
    errors, reads = [], [0]

    def reader():
        ids = list(files)
        for _ in range(10000):
            if stop.is_set():
                return
            bid = random.choice(ids)
            g = get(data, bid)
            if g.returncode != 0 or g.stdout != files[bid]:
                errors.append((bid, g.returncode, g.stderr[-300:]))
            reads[0] += 1

    def prober():
        for _ in range(10000):
            if stop.is_set():
                return
            r = s.get("/readyz")
            if r.status_code != 200:
                errors.append(("readyz", r.status_code, r.text[:200]))
            time.sleep(0.05)

    threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=prober)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        rot = run_cli("keys", "rotate", "--data", str(data), "--batch", "2", timeout=300)
        # a put while readers read, after the rotation
        src = tmp_path / "late"
        src.write_bytes(os.urandom(100000))
        late = put(data, src).stdout.strip()
        files_late = src.read_bytes()
        # the old key goes only once nothing references it, still while
        # readers open the data dir (and list key files) concurrently
        ret = run_cli("keys", "rotate", "--data", str(data), "--retire", old)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert rot.returncode == 0, rot.stderr
    new = rot.stdout.strip()
    assert len(new) == 16 and new != old
    assert "re-wrapped 24/24 data keys" in rot.stderr
    assert f"active key {new} (was {old}); re-wrapped 1 root keys and 24 data keys in 12 transactions" in rot.stderr
    assert errors == [] and reads[0] >= 2
    assert rows(data, "SELECT DISTINCT kek_id FROM blobs") == [(new,)]
    assert rows(data, "SELECT kek_id FROM root_keys") == [(new,)]
    assert get(data, late).stdout == files_late
    assert ret.returncode == 0, ret.stderr
    assert not os.path.exists(os.path.join(data, "keys", old + ".kek"))
    for bid, want in files.items():
        assert get(data, bid).stdout == want
    assert s.get("/readyz").status_code == 200


def test_no_plaintext_byte_run_under_the_data_dir(server_factory, data, tmp_path):
    run = b"CASEVAULT-CANARY-" + bytes(random.Random(7).choice(b"abcdefghijklmnop")
                                       for _ in range(40))
    body = bytearray(os.urandom(5 * CHUNK))
    for off in (0, 1000, CHUNK - 20, 2 * CHUNK - 1, 5 * CHUNK - len(run)):
        body[off:off + len(run)] = run
    src = tmp_path / "secret.bin"
    src.write_bytes(bytes(body))
    ids = [put(data, src).stdout.strip() for _ in range(2)]
    small = tmp_path / "small"
    small.write_bytes(run)
    ids.append(put(data, small).stdout.strip())
    restart(data)
    seen = 0
    for root, _, names in os.walk(data):
        for n in names:
            with open(os.path.join(root, n), "rb") as fh:
                raw = fh.read()
            seen += 1
            assert run not in raw, os.path.join(root, n)
            assert run[:24] not in raw, os.path.join(root, n)
    assert seen >= 7
    assert get(data, ids[2]).stdout == run
