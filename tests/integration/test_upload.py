"""Document uploads over HTTP (issue 6): PUT raw body and multipart POST,
the staff content view, and the http/image cases of /work/shared/cases
replayed byte for byte. Real files are read from /work/shared (never
copied). Every refusal is checked to leave no staging file, no blob file,
no blobs row and no documents row behind.
"""
import concurrent.futures
import glob
import hashlib
import json
import os
import socket
import sqlite3
import sys
import time
import unicodedata

import pytest
import requests

from conftest import assert_problem
from test_cases import Env, enterprise_case, personal_case
from test_intake import BLUE, GREEN, RED, WHITE, check_clean_jpeg, near, quadrants, sample

# Small inputs (320x240) need the minimum side off; the ASan build decodes a
# 12 MP photo in ~20 s, so the decode deadline is raised as in test_intake.
MIN0 = ["--set", "intake.min_short_side=0"]
SLOW = ["--set", "intake.decode_timeout=120"]


def inp(shared, name):
    return os.path.join(shared, "cases", "inputs", name)


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Up:
    """A server with tokens, seeded accounts and one open personal case."""

    def __init__(self, server_factory, args=()):
        self.s = server_factory(args=[*MIN0, *SLOW, *args])
        self.e = Env(self.s)
        self.e.seed()
        c = self.e.open(personal_case())
        self.case, self.token = c["id"], c["token"]

    def put(self, data, kind="id_in_hand", case=None, token=None, headers=None):
        return self.s.request("PUT", f"/v1/cases/{case or self.case}/documents/{kind}",
                              token or self.token, data=data, headers=headers or {})

    def post(self, data, kind="id_in_hand", filename="photo.jpg", case=None, token=None):
        return self.s.request("POST", f"/v1/cases/{case or self.case}/documents",
                              token or self.token, files={"file": (filename, data)},
                              data={"kind": kind} if kind is not None else None)

    def content(self, doc, token=None, variant=None, case=None):
        q = f"?variant={variant}" if variant else ""
        return self.s.get(f"/v1/cases/{case or self.case}/documents/{doc}/content{q}",
                          token or self.e.reviewer)

    def db(self, sql, *args):
        con = sqlite3.connect(f"file:{self.s.data}/casevault.db?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def counts(self):
        blob_files = [p for p in glob.glob(f"{self.s.data}/blobs/**/*", recursive=True)
                      if os.path.isfile(p)]
        tmp_files = os.listdir(f"{self.s.data}/tmp")
        return {"docs": self.db("SELECT count(*) FROM documents")[0][0],
                "blob_rows": self.db("SELECT count(*) FROM blobs")[0][0],
                "blob_files": len(blob_files), "tmp": len(tmp_files)}

    def audit(self, action=None):
        out, start = [], 0
        for _ in range(100):
            r = self.s.get(f"/v1/audit/entries?start={start}", self.e.auditor)
            assert r.status_code == 200, r.text
            j = r.json()
            out += [json.loads(x["entry"]) for x in j["entries"]]
            if j["next"] is None:
                break
            start = j["next"]
        return [x for x in out if action is None or x.get("action") == action]

    def raw(self, path, new_target=None, extra=(), timeout=30, split=0):
        """Replay a .http file: new request target, real Host, our token."""
        data = open(path, "rb").read()
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        m, target, v = lines[0].split(b" ", 2)
        target = target.replace(b"CASE_ID", self.case.encode())
        lines[0] = b" ".join([m, new_target.encode() if new_target else target, v])
        lines = [b"Host: " + self.s.hostport.encode() if l.lower().startswith(b"host:") else l
                 for l in lines]
        lines += [b"Authorization: Bearer " + self.token.encode(), *extra]
        return send_raw(self.s.hostport, b"\r\n".join(lines) + sep + body, timeout, split)

    def healthy(self):
        assert self.s.get("/healthz").status_code == 200
        assert self.s.proc.poll() is None


def send_raw(hostport, req, timeout=30, split=0):
    """Send bytes (the first 1200 in pieces of `split` bytes, each its own
    TCP segment, when split > 0), read the whole answer; returns (status,
    headers dict, body bytes)."""
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        try:
            pos = 0
            while split and pos < min(1200, len(req)):
                s.sendall(req[pos:pos + split])
                pos += split
                time.sleep(0.002)
            s.sendall(req[pos:])
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        resp = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except OSError:
                break
            if not b:
                break
            resp += b
    finally:
        s.close()
    return parse_response(resp)


def parse_response(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out += rest[:n]
            body = rest[n + 2:]
        body = out
    return status, headers, body


def problem(status_body, status, code):
    st, hd, body = status_body
    assert st == status, (st, body[:300])
    assert hd["content-type"].startswith("application/problem+json")
    j = json.loads(body)
    assert j["code"] == code, j
    return j


# ---- the full flow with real photos ----

def test_full_flow_real_photos(server_factory, shared):
    u = Up(server_factory, args=["--set", "intake.min_short_side=480"])
    photo = os.path.join(shared, "corpus", "large", "IMG_20180725_163423.jpg")
    heic = os.path.join(shared, "corpus", "camera", "iphone_13_pro_max.HEIC")
    data = open(photo, "rb").read()
    assert 3_000_000 <= len(data) <= 5_000_000
    r = u.put(data, headers={"Content-Disposition": 'attachment; filename="IMG_20180725_163423.jpg"'})
    assert r.status_code == 201, r.text
    d1 = r.json()
    assert d1["sha256"] == sha(data) and d1["size"] == len(data)
    assert (d1["width"], d1["height"]) == (2048, 1536)
    assert d1["media_type"] == "image/jpeg" and d1["source_format"] == "jpeg"
    assert d1["file_name"] == "IMG_20180725_163423.jpg" and d1["superseded_id"] is None
    assert r.headers["Location"].endswith(f"/documents/{d1['id']}/content")
    # the iPhone HEIC re-uploads the kind through multipart; the first is kept, superseded
    hdata = open(heic, "rb").read()
    r = u.post(hdata, filename="IMG_0001.HEIC")
    assert r.status_code == 201, r.text
    d2 = r.json()
    assert d2["sha256"] == sha(hdata) and d2["source_format"] == "heif"
    assert max(d2["width"], d2["height"]) == 2048 and d2["superseded_id"] == d1["id"]
    assert u.db("SELECT count(*) FROM documents WHERE case_id=?", u.case)[0][0] == 2
    # applicant view: present; submit
    c = u.s.get(f"/v1/cases/{u.case}", u.token).json()
    assert c["documents"][0]["present"] is True
    r = u.s.request("POST", f"/v1/cases/{u.case}/submit", u.token)
    assert r.status_code == 200, r.text
    # uploads are closed after submit
    assert_problem(u.put(data), 409, "invalid_transition")
    # reviewer lists and views the normalized image
    lst = u.s.get("/v1/cases?status=submitted", u.e.reviewer).json()
    assert [x["id"] for x in lst["cases"]] == [u.case]
    staff = u.s.get(f"/v1/cases/{u.case}", u.e.reviewer).json()
    assert staff["documents"][0]["document_id"] == d2["id"]
    r = u.content(d2["id"])
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert sha(r.content) == d2["normalized_sha256"]
    check_clean_jpeg(r.content, d2["width"], d2["height"])
    # superseded documents stay readable for staff; original for auditors only
    assert sha(u.content(d1["id"]).content) == d1["normalized_sha256"]
    assert_problem(u.content(d1["id"], variant="original"), 403, "forbidden")
    r = u.content(d1["id"], token=u.e.auditor, variant="original")
    assert r.status_code == 200 and r.content == data
    views = u.audit("document.view")
    assert [(v["object_id"], v["details"]["variant"], v["actor"]["role"]) for v in views] == [
        (d2["id"], "normalized", "reviewer"), (d1["id"], "normalized", "reviewer"),
        (d1["id"], "original", "auditor")]
    ups = u.audit("document.upload")
    assert [x["details"]["sha256"] for x in ups] == [sha(data), sha(hdata)]
    assert ups[1]["details"]["superseded_id"] == d1["id"]
    assert ups[1]["details"]["normalized_sha256"] == d2["normalized_sha256"]
    r = u.e.decide(u.case, u.e.reviewer, decision="approve")
    assert r.status_code == 200, r.text
    cnt = u.counts()
    assert cnt == {"docs": 2, "blob_rows": 4, "blob_files": 4, "tmp": 0}
    # no plaintext run of either upload anywhere under the data dir
    runs = [data[i:i + 32] for i in range(1000, len(data), len(data) // 16)]
    runs += [hdata[i:i + 32] for i in range(1000, len(hdata), len(hdata) // 16)]
    for p in glob.glob(f"{u.s.data}/**/*", recursive=True):
        if os.path.isfile(p):
            b = open(p, "rb").read()
            assert not any(x in b for x in runs), p


# ---- routes, roles, refusals before the body ----

def test_roles_kinds_and_states(server_factory, shared):
    u = Up(server_factory)
    ref = open(inp(shared, "REF-quadrant-320x240.jpg"), "rb").read()
    # another case's applicant: 404; staff may not upload
    other = u.e.open(enterprise_case())
    assert_problem(u.put(ref, token=other["token"]), 404, "not_found")
    assert_problem(u.put(ref, token=u.e.reviewer), 403, "forbidden")
    assert_problem(u.put(ref, token="cvk_nope"), 401, "unauthorized")
    # unknown kind and a kind the personal case does not require
    assert_problem(u.put(ref, kind="passport"), 400, "invalid_field")
    assert_problem(u.put(ref, kind="business_license"), 400, "invalid_field")
    assert_problem(u.post(ref, kind="selfie"), 400, "invalid_field")
    assert_problem(u.post(ref, kind="business_license"), 400, "invalid_field")
    # multipart without kind or file, and not multipart at all
    assert_problem(u.post(ref, kind=None), 400, "malformed_multipart")
    r = u.s.request("POST", f"/v1/cases/{u.case}/documents", u.token, data={"kind": "id_in_hand"})
    assert r.status_code in (400, 415)
    r = u.s.request("POST", f"/v1/cases/{u.case}/documents", u.token, data=ref,
                    headers={"Content-Type": "image/jpeg"})
    assert_problem(r, 415, "unsupported_media_type")
    # the enterprise case takes a business licence
    r = u.put(ref, kind="business_license", case=other["id"], token=other["token"])
    assert r.status_code == 201, r.text
    # content view: applicant may not, unknown ids 404, bad variant 400
    doc = r.json()["id"]
    # an applicant token never sees staff routes (the router answers 404)
    assert_problem(u.content(doc, token=other["token"], case=other["id"]), 404, "not_found")
    assert_problem(u.content(doc), 404, "not_found")  # right doc, wrong case
    assert_problem(u.content("0" * 26, case=other["id"]), 404, "not_found")
    assert_problem(u.content(doc, case=other["id"], variant="thumb"), 400, "invalid_field")
    assert u.counts() == {"docs": 1, "blob_rows": 2, "blob_files": 2, "tmp": 0}
    assert u.audit("document.refused") == []
    u.healthy()


def test_413_before_the_body(server_factory, shared):
    u = Up(server_factory, args=["--set", "server.max_body_bytes=1048576"])
    head = (f"PUT /v1/cases/{u.case}/documents/id_in_hand HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {u.token}\r\nContent-Length: 104857600\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", int(u.s.hostport.rsplit(":", 1)[1])), timeout=5)
    t0 = time.monotonic()
    s.sendall(head)
    resp = b""
    while b"\r\n\r\n" not in resp or len(resp) < 100:
        b = s.recv(65536)
        if not b:
            break
        resp += b
    s.close()
    assert time.monotonic() - t0 < 1.0
    assert resp.startswith(b"HTTP/1.1 413"), resp[:100]
    assert b"100 Continue" not in resp and b"payload_too_large" in resp
    assert u.counts()["tmp"] == 0


# ---- cases README, image area (through the upload routes) ----

@pytest.mark.parametrize("name,w,h,quads", [
    ("C01-samsung-invalid-sos.jpg", 320, 240, [RED, GREEN, BLUE, WHITE]),
    ("C06a-exif6-plus-xmp6.jpg", 240, 320, [BLUE, RED, WHITE, GREEN]),
    ("C06b-xmp6-only.jpg", 320, 240, [RED, GREEN, BLUE, WHITE]),
    ("C13-iphone-style.heic", 320, 240, [RED, GREEN, BLUE, WHITE]),
])
def test_image_cases_accepted(server_factory, shared, tmp_path, name, w, h, quads):
    u = Up(server_factory)
    data = open(inp(shared, name), "rb").read()
    for send in (u.put, u.post):
        r = send(data)
        assert r.status_code == 201, r.text
        d = r.json()
        assert (d["width"], d["height"]) == (w, h) and d["sha256"] == sha(data)
        img = u.content(d["id"]).content
        check_clean_jpeg(img, w, h)
        p = tmp_path / "out.jpg"
        p.write_bytes(img)
        got = quadrants(p)
        assert all(near(a, b) for a, b in zip(got, quads)), got


@pytest.mark.parametrize("name", ["C04a-adobe-ycck-red.jpg", "C04b-adobe-cmyk-transform0-red.jpg"])
def test_c04_cmyk_red(server_factory, shared, tmp_path, name):
    u = Up(server_factory)
    r = u.put(open(inp(shared, name), "rb").read())
    assert r.status_code == 201, r.text
    p = tmp_path / "o.jpg"
    p.write_bytes(u.content(r.json()["id"]).content)
    for c in quadrants(p):
        assert c[0] >= 200 and c[1] <= 40 and c[2] <= 40, c


def test_c09_c10_transparency_on_white(server_factory, shared, tmp_path):
    u = Up(server_factory)
    r = u.post(open(inp(shared, "C09-palette-trns-top-transparent.png"), "rb").read(),
               filename="x.png")
    assert r.status_code == 201, r.text
    p = tmp_path / "o.jpg"
    p.write_bytes(u.content(r.json()["id"]).content)
    tl, tr, bl, br = quadrants(p)
    assert min(tl) >= 0xF0 and min(tr) >= 0xF0 and max(bl) <= 0x10 and max(br) <= 0x10
    r = u.put(open(inp(shared, "C10-rgba16-transparent-black-bg.png"), "rb").read())
    assert r.status_code == 201, r.text
    p.write_bytes(u.content(r.json()["id"]).content)
    for x, y in ((4, 4), (59, 4), (4, 59), (59, 59), (8, 32)):
        assert min(sample(p, x, y)) >= 0xF0, (x, y)
    assert max(sample(p, 32, 32)) <= 0x10


@pytest.mark.parametrize("name,code", [
    ("C02a-truncated-60pct-baseline.jpg", "image_truncated"),
    ("C02b-truncated-60pct-progressive.jpg", "image_truncated"),
    ("C12a-png-header-46000x46000.png", "image_too_large"),
    ("C12b-png-20000x20000-zeros.png", "image_too_large"),
    ("C12c-jpeg-sof-46000x46000.jpg", "image_too_large"),
])
def test_image_cases_refused_leave_nothing(server_factory, shared, name, code):
    u = Up(server_factory)
    data = open(inp(shared, name), "rb").read()
    for send in (u.put, u.post):
        t0 = time.monotonic()
        r = send(data)
        assert_problem(r, 422, code)
        if name.startswith("C12"):
            assert time.monotonic() - t0 < 2.0
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}
    refused = u.audit("document.refused")
    assert [(x["details"]["sha256"], x["details"]["code"], x["outcome"]) for x in refused] == [
        (sha(data), code, "refused")] * 2
    assert u.audit("document.upload") == []
    u.healthy()


def test_hostile_bytes_leave_nothing(server_factory, shared):
    u = Up(server_factory)
    for data, code in [(b"<?php system($_GET['c']); ?>" * 10, "unsupported_media_type"),
                       (b"%PDF-1.4\n" + b"\0" * 4000, "unsupported_media_type"),
                       (b"\xff\xd8\xff\xe0" + os.urandom(5000), "image_undecodable"),
                       (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image_undecodable")]:
        r = u.put(data)
        assert r.status_code in (415, 422), r.text
        assert r.json()["code"] in (code, "image_undecodable", "unsupported_media_type")
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}
    u.healthy()


# ---- cases README, http area (raw bytes replayed) ----

def test_c13_labels_do_not_matter(server_factory, shared):
    u = Up(server_factory)
    heic = open(inp(shared, "C13-iphone-style.heic"), "rb").read()
    shas = []
    for f in ("C13a-labelled-heic.http", "C13b-labelled-jpeg.http"):
        st, hd, body = u.raw(inp(shared, f))
        assert st == 201, body
        j = json.loads(body)
        assert j["source_format"] == "heif" and j["sha256"] == sha(heic)
        shas.append(j["normalized_sha256"])
    assert shas[0] == shas[1]


C14_JPEG = "0945ebc2"


@pytest.mark.parametrize("f,name", [("C14a-raw-filename-quote.http", 'id"card.jpg'),
                                    ("C14b-percent22-filename-quote.http", "id%22card.jpg"),
                                    ("C14c-backslash-filename-quote.http", 'id"card.jpg')])
def test_c14_quote_in_filename(server_factory, shared, f, name):
    u = Up(server_factory)
    st, hd, body = u.raw(inp(shared, f))
    assert st == 201, body
    j = json.loads(body)
    assert j["sha256"].startswith(C14_JPEG) and j["file_name"] == name
    assert u.counts()["docs"] == 1


def test_multipart_filename_star(server_factory, shared):
    """RFC 8187 filename* in a form part wins over filename; split writes."""
    u = Up(server_factory)
    ref = open(inp(shared, "REF-quadrant-320x240.jpg"), "rb").read()
    bnd = "xYz"
    mp = (f"--{bnd}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"; "
          f"filename*=UTF-8''%E8%BA%AB%E4%BB%BD%E8%AF%81.jpg\r\nContent-Type: image/jpeg\r\n\r\n"
          ).encode() + ref + (f"\r\n--{bnd}\r\nContent-Disposition: form-data; name=\"kind\"\r\n"
                              f"\r\nid_in_hand\r\n--{bnd}--\r\n").encode()
    req = (f"POST /v1/cases/{u.case}/documents HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {u.token}\r\nContent-Length: {len(mp)}\r\n"
           f"Content-Type: multipart/form-data; boundary=\"{bnd}\"\r\n\r\n").encode() + mp
    st, hd, body = send_raw(u.s.hostport, req)
    assert st == 201, body
    j = json.loads(body)
    assert j["file_name"] == "身份证.jpg" and j["sha256"] == sha(ref)


def test_c16_non_ascii_names(server_factory, shared):
    u = Up(server_factory)
    names = []
    for f in ("C16a-utf8-nfc-filename-nonascii.http", "C16b-utf8-nfd-filename-nonascii.http",
              "C16c-latin1-invalid-utf8-filename-nonascii.http"):
        st, hd, body = u.raw(inp(shared, f))
        assert st == 201, body
        names.append(json.loads(body)["file_name"])
    assert names[0] == "Führerschein_überprüft_身份证.jpg"
    assert names[1] == "Führerschein.jpg" == unicodedata.normalize("NFC", names[1])
    assert names[2] == "F\ufffdhrerschein.jpg"
    # PUT with Content-Disposition filename* (RFC 8187)
    ref = open(inp(shared, "REF-quadrant-320x240.jpg"), "rb").read()
    r = u.put(ref, headers={"Content-Disposition":
                            "attachment; filename=\"x.jpg\"; filename*=UTF-8''%E8%BA%AB%E4%BB%BD.jpg"})
    assert r.json()["file_name"] == "身份.jpg"
    r = u.put(ref, headers={"Content-Disposition": 'attachment; filename="id\\"card.jpg"'})
    assert r.json()["file_name"] == 'id"card.jpg'
    # control characters become U+FFFD; a path is only a name (never used on disk)
    r = u.put(ref, headers={"Content-Disposition":
                            "attachment; filename*=UTF-8''..%2F..%2Fevil%01%7F.jpg"})
    assert r.json()["file_name"] == "../../evil\ufffd\ufffd.jpg"
    assert not glob.glob(f"{u.s.data}/**/evil*", recursive=True)
    # ISO-8859-1 filename* is converted to UTF-8
    r = u.put(ref, headers={"Content-Disposition": "attachment; filename*=iso-8859-1'de'F%FChrer.jpg"})
    assert r.json()["file_name"] == "Führer.jpg"


def test_c18_long_names(server_factory, shared):
    u = Up(server_factory)
    for f in ("C18a-filename-227-ascii.http", "C18b-filename-100-cjk-300-bytes.http"):
        st, hd, body = u.raw(inp(shared, f))
        assert st == 201, body
        n = json.loads(body)["file_name"]
        assert len(n.encode()) <= 255 and n.endswith(".jpg")
    ref = open(inp(shared, "REF-quadrant-320x240.jpg"), "rb").read()
    long = "证" * 200 + ".jpeg"
    r = u.put(ref, headers={"Content-Disposition":
                            "attachment; filename*=UTF-8''" + requests.utils.quote(long)})
    n = r.json()["file_name"]
    assert len(n.encode()) <= 255 and n.endswith(".jpeg") and long.startswith(n[:-5])


def test_c19_chunked(server_factory, shared):
    u = Up(server_factory)
    for f in ("C19a-multipart-chunked.http", "C19b-put-chunked.http"):
        st, hd, body = u.raw(inp(shared, f))
        assert st == 201, body
        j = json.loads(body)
        doc = j["id"]
    r = u.content(doc, token=u.e.auditor, variant="original")
    assert sha(r.content) == j["sha256"]
    st, hd, body = u.raw(inp(shared, "C19c-both-content-length-and-chunked.http"))
    assert st == 400 and hd.get("connection") == "close"
    assert u.counts()["docs"] == 2


def test_c19_chunked_over_limit(server_factory, shared):
    u = Up(server_factory, args=["--set", "server.max_body_bytes=100000"])
    chunk = b"\xff\xd8" + b"\0" * 65534
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    req = (f"PUT /v1/cases/{u.case}/documents/id_in_hand HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {u.token}\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + body
    problem(send_raw(u.s.hostport, req), 413, "payload_too_large")
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}


def test_c22_bare_lf_refused(server_factory, shared):
    u = Up(server_factory)
    problem(u.raw(inp(shared, "C22-multipart-bare-lf.http")), 400, "malformed_multipart")
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}


def test_c23_exactly_at_the_limit(server_factory, shared):
    u = Up(server_factory, args=["--set", "server.max_body_bytes=1048576"])
    a = open(inp(shared, "C23a-exactly-1048576-bytes.jpg"), "rb").read()
    b = open(inp(shared, "C23b-1048577-bytes.jpg"), "rb").read()
    assert len(a) == 1048576 and sha(a).startswith("5a6a0eea")
    for send in (u.put, u.post):
        r = send(a)
        assert r.status_code == 201, r.text
        assert r.json()["sha256"] == sha(a)
        assert_problem(send(b), 413, "payload_too_large")
    # a raw PUT labelled multipart gets no framing slack
    assert_problem(u.put(b, headers={"Content-Type": "multipart/form-data; boundary=x"}), 413,
                   "payload_too_large")
    # multipart over the limit, chunked (no Content-Length): capped while streaming
    bnd = "----b0undary"
    mp = (f"--{bnd}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nid_in_hand\r\n"
          f"--{bnd}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jpg\"\r\n"
          f"Content-Type: image/jpeg\r\n\r\n").encode() + b + f"\r\n--{bnd}--\r\n".encode()
    chunks = b"".join(b"%x\r\n" % len(mp[i:i + 50000]) + mp[i:i + 50000] + b"\r\n"
                      for i in range(0, len(mp), 50000)) + b"0\r\n\r\n"
    req = (f"POST /v1/cases/{u.case}/documents HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {u.token}\r\nTransfer-Encoding: chunked\r\n"
           f"Content-Type: multipart/form-data; boundary={bnd}\r\n\r\n").encode() + chunks
    problem(send_raw(u.s.hostport, req), 413, "payload_too_large")
    assert u.counts() == {"docs": 2, "blob_rows": 4, "blob_files": 4, "tmp": 0}


def test_c24_empty_file(server_factory, shared):
    u = Up(server_factory)
    for f in ("C24a-multipart-empty-file.http", "C24b-put-content-length-0.http"):
        problem(u.raw(inp(shared, f)), 422, "empty_file")
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}
    refused = u.audit("document.refused")
    assert [x["details"]["sha256"] for x in refused] == [sha(b"")] * 2


# ---- load and abort ----

def test_32_concurrent_uploads(server_factory, shared):
    u = Up(server_factory)
    ref = open(inp(shared, "REF-quadrant-320x240.jpg"), "rb").read()
    cases = [u.case]
    tokens = [u.token]
    for i in range(3):
        acct = f"p{i + 10}"
        from test_cases import personal_record
        u.e.put_account(personal_record(acct))
        c = u.e.open(personal_case(acct))
        cases.append(c["id"])
        tokens.append(c["token"])

    def one(i):
        r = u.put(ref, case=cases[i % 4], token=tokens[i % 4]) if i % 2 else \
            u.post(ref, case=cases[i % 4], token=tokens[i % 4])
        return r.status_code, (r.json().get("sha256") if r.status_code == 201 else r.text)

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        res = list(ex.map(one, range(32), timeout=300))
    assert all(st == 201 and h == sha(ref) for st, h in res), res
    assert u.counts() == {"docs": 32, "blob_rows": 64, "blob_files": 64, "tmp": 0}
    assert u.db("SELECT count(*) FROM documents WHERE superseded=0")[0][0] == 4
    u.healthy()


def test_client_gone_mid_upload_leaves_nothing(server_factory, shared):
    u = Up(server_factory)
    head = (f"PUT /v1/cases/{u.case}/documents/id_in_hand HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {u.token}\r\nContent-Length: 500000\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", int(u.s.hostport.rsplit(":", 1)[1])), timeout=5)
    s.sendall(head + b"\xff\xd8" + b"\0" * 200000)
    time.sleep(0.3)
    s.close()
    for _ in range(50):
        if u.counts()["tmp"] == 0:
            break
        time.sleep(0.1)
    assert u.counts() == {"docs": 0, "blob_rows": 0, "blob_files": 0, "tmp": 0}
    u.healthy()


def test_busy_queue_full_answers_503(server_factory, shared):
    """One worker, nobody may wait: concurrent uploads beyond it get 503 busy
    with Retry-After, and leave nothing behind."""
    u = Up(server_factory, args=["--set", "intake.workers=1", "--set", "intake.queue=0"])
    data = open(os.path.join(shared, "corpus", "large", "IMG_20180725_163423.jpg"), "rb").read()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda i: u.put(data), range(4), timeout=600))
    codes = sorted(r.status_code for r in res)
    assert set(codes) <= {201, 503} and 201 in codes and 503 in codes, codes
    for r in res:
        if r.status_code == 503:
            assert_problem(r, 503, "busy")
            assert int(r.headers["Retry-After"]) > 0
    ok = codes.count(201)
    assert u.counts() == {"docs": ok, "blob_rows": 2 * ok, "blob_files": 2 * ok, "tmp": 0}
    u.healthy()


@pytest.mark.parametrize("split", [1, 7, 13])
def test_split_writes_same_answer(server_factory, shared, split):
    """Reads ending anywhere (inside a boundary, between CR and LF, inside a
    part header) give the same answers (the C20 replay)."""
    u = Up(server_factory)
    st, hd, body = u.raw(inp(shared, "C14c-backslash-filename-quote.http"), split=split)
    assert st == 201 and json.loads(body)["file_name"] == 'id"card.jpg', body
    st, hd, body = u.raw(inp(shared, "C16a-utf8-nfc-filename-nonascii.http"), split=split)
    assert st == 201 and json.loads(body)["file_name"] == "Führerschein_überprüft_身份证.jpg"
    problem(u.raw(inp(shared, "C22-multipart-bare-lf.http"), split=split), 400,
            "malformed_multipart")
    st, hd, body = u.raw(inp(shared, "C19a-multipart-chunked.http"), split=split)
    assert st == 201, body
    assert u.counts() == {"docs": 3, "blob_rows": 6, "blob_files": 6, "tmp": 0}
