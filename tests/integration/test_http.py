"""HTTP behaviour of the foundation: health, metrics, errors as RFC 9457
problem+json, limits, auth, TLS, deadlines and graceful shutdown."""
import json
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import Server, assert_problem, run_cli


def raw(server, data, read_timeout=10):
    """Send raw bytes, return the whole response text (until close or timeout)."""
    host, port = server.hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=read_timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Content-Length:" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                n = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    except socket.timeout:
        pass
    s.close()
    return out.decode("latin-1")


def test_health_ready_and_request_ids(server):
    r = server.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    rid = r.headers["X-Request-Id"]
    assert len(rid) == 26
    r2 = server.get("/healthz")
    assert r2.headers["X-Request-Id"] != rid
    r = server.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "data_dir": "ok", "keys": "ok"}
    r = server.get("/healthz", headers={"X-Request-Id": "trace-abc.123"})
    assert r.headers["X-Request-Id"] == "trace-abc.123"
    r = server.get("/healthz", headers={"X-Request-Id": "bad id\twith junk"})
    assert len(r.headers["X-Request-Id"]) == 26


def test_metrics_prometheus_text(server):
    server.get("/healthz")
    server.get("/nowhere")
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    t = r.text
    assert 'casevault_build_info{version="0.1.0"} 1' in t
    assert 'casevault_http_requests_total{route="/healthz",method="GET",status="200"} 1' in t
    assert 'casevault_http_requests_total{route="unmatched",method="GET",status="404"} 1' in t
    assert 'casevault_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"} 1' in t
    # This very request, and perhaps the previous one whose completion
    # callback runs just after its client got the answer.
    inflight = int(t.split("\ncasevault_http_requests_in_flight ")[1].split()[0])
    assert 1 <= inflight <= 2
    assert "/nowhere" not in t  # raw paths never become labels


def test_unknown_route_and_method(server):
    assert_problem(server.get("/v1/nothing/here"), 404, "not_found")
    r = server.request("DELETE", "/healthz")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET"
    r = server.request("PUT", "/v1/tokens")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET, POST"


def test_auth_401_403(server):
    admin = server.token("admin")
    reviewer = server.token("reviewer")
    r = server.get("/v1/tokens")
    assert_problem(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(server.get("/v1/tokens", token="A" * 43), 401, "unauthorized")
    assert_problem(server.get("/v1/tokens", token="short"), 401, "unauthorized")
    assert_problem(server.get("/v1/tokens", headers={"Authorization": "Basic YTpi"}), 401,
                   "unauthorized")
    body = assert_problem(server.get("/v1/tokens", token=reviewer), 403, "forbidden")
    assert reviewer not in json.dumps(body)
    r = server.get("/v1/tokens", token=admin)
    assert r.status_code == 200
    names = [t["role"] for t in r.json()["tokens"]]
    assert names.count("admin") == 1 and names.count("reviewer") == 1
    assert server.get("/v1/whoami", token=reviewer).json()["role"] == "reviewer"


def test_token_lifecycle_over_http(server):
    admin = server.token("admin")
    r = server.request("POST", "/v1/tokens", token=admin, json={"role": "auditor", "name": "aud-1"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert len(new["token"]) == 43
    assert server.get("/v1/whoami", token=new["token"]).json()["role"] == "auditor"
    assert_problem(server.request("POST", "/v1/tokens", token=admin,
                                  json={"role": "superuser", "name": "x"}), 400, "invalid_field")
    assert_problem(server.request("POST", "/v1/tokens", token=admin,
                                  json={"role": "backup", "name": "has space"}), 400,
                   "invalid_field")
    r = server.request("DELETE", "/v1/tokens/" + new["id"], token=admin)
    assert r.status_code == 200
    assert_problem(server.get("/v1/whoami", token=new["token"]), 401, "unauthorized")
    assert_problem(server.request("DELETE", "/v1/tokens/" + new["id"], token=admin), 404,
                   "not_found")
    # Tokens never reach the log.
    time.sleep(0.2)
    logs = "".join(server.raw_stderr)
    assert new["token"] not in logs and admin not in logs


def test_malformed_and_oversized_json(server):
    admin = server.token("admin")
    h = {"Content-Type": "application/json"}
    for body in (b"{", b"[1,2]", b"", b'{"a":1,"a":2}', b"\xff\xfe", b'"str"'):
        assert_problem(server.request("POST", "/v1/tokens", token=admin, data=body, headers=h),
                       400, "malformed_json")
    big = b'{"name":"' + b"x" * 70000 + b'"}'
    r = server.request("POST", "/v1/tokens", token=admin, data=big, headers=h)
    assert_problem(r, 413, "payload_too_large")

    def gen():  # chunked: no Content-Length, capped while streaming
        for _ in range(20):
            yield b"x" * 8192

    r = server.request("POST", "/v1/tokens", token=admin, data=gen(), headers=h)
    assert_problem(r, 413, "payload_too_large")
    assert server.get("/healthz").status_code == 200


def test_413_before_the_body_is_read(server):
    admin = server.token("admin")
    req = (f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
           "Content-Type: application/json\r\nContent-Length: 999999999\r\n"
           "Expect: 100-continue\r\n\r\n").encode()
    out = raw(server, req)
    assert out.startswith("HTTP/1.1 413"), out[:200]
    assert "100 Continue" not in out
    assert '"code":"payload_too_large"' in out


def test_431_oversized_headers(server):
    r = server.get("/healthz", headers={"X-Big": "a" * 20000})
    assert_problem(r, 431, "headers_too_large")
    r = server.get("/healthz", headers={"X-Huge": "a" * 200000})
    assert r.status_code == 431  # past the connection pool: libmicrohttpd's own answer
    assert server.get("/healthz").status_code == 200


def test_content_length_with_chunked_is_refused(server):
    out = raw(server, b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert out.startswith("HTTP/1.1 400"), out[:200]
    assert "Connection: close" in out


def test_tls_with_self_signed_certificate(server_factory, tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    s = server_factory(args=["--tls-cert", str(crt), "--tls-key", str(key)])
    assert s.url.startswith("https://")
    r = requests.get(s.url + "/healthz", verify=str(crt), timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(s.url + "/healthz", timeout=10)  # not trusted by default
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    p = run_cli("serve", "--data", str(tmp_path / "d2"), "--listen", "127.0.0.1:0",
                "--tls-cert", str(crt), "--tls-key", str(bad), timeout=30)
    assert p.returncode == 1


def test_slow_client_hits_deadline_while_fast_client_is_served(server_factory):
    s = server_factory(args=["--set", "server.request_timeout=2"])
    host, port = s.hostport.rsplit(":", 1)
    slow = socket.create_connection((host, int(port)), timeout=10)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    t0 = time.monotonic()
    fast = [s.get("/healthz").status_code for _ in range(5)]
    assert fast == [200] * 5
    assert time.monotonic() - t0 < 1.5
    slow.settimeout(6)
    try:
        while True:
            if not slow.recv(1024):
                break
    except (ConnectionResetError, socket.timeout):
        pass
    waited = time.monotonic() - t0
    assert 1.5 < waited < 5.0, waited
    slow.close()
    assert s.get("/healthz").status_code == 200
    m = s.get("/metrics").text
    assert "casevault_http_deadline_kills_total 1" in m


def test_graceful_shutdown_finishes_in_flight_request(tmp_path):
    s = Server(tmp_path / "d").start()
    admin = s.token("admin")
    body = json.dumps({"role": "reviewer", "name": "late"}).encode()
    host, port = s.hostport.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=15)
    c.sendall((f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
              + body[:5])
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # No new connections once draining...
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(s.url + "/healthz", timeout=2)
    assert s.proc.poll() is None  # ...but the in-flight request keeps the server up
    c.sendall(body[5:])
    out = b""
    while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
        chunk = c.recv(65536)
        if not chunk:
            break
        out += chunk
    assert out.startswith(b"HTTP/1.1 201"), out[:300]
    c.close()
    assert s.stop(timeout=15) == 0
    assert any(l.get("msg") == "stopped" for l in s.logs)


def test_request_log_lines(server):
    server.get("/healthz")
    server.get("/v1/whoami")
    time.sleep(0.2)
    reqs = [l for l in server.logs if l.get("msg") == "request"]
    assert len(reqs) >= 2
    for l in reqs:
        for k in ("time", "level", "request_id", "method", "route", "status", "duration_ms",
                  "bytes_in", "bytes_out"):
            assert k in l, (k, l)
    who = [l for l in reqs if l["route"] == "/v1/whoami"][0]
    assert who["status"] == 401 and who["code"] == "unauthorized"


def test_per_ip_connection_limit(server_factory):
    s = server_factory(args=["--set", "server.max_connections_per_ip=2"])
    host, port = s.hostport.rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    time.sleep(0.3)
    # A third connection from the same address is closed without an answer.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(s.url + "/healthz", timeout=5)
    for c in held:
        c.close()
    time.sleep(0.3)
    assert s.get("/healthz").status_code == 200
