"""The casevault command line: every subcommand's success and error paths."""
import os
import stat

from conftest import BIN, Server, run_cli


def test_version_and_help_list_every_config_key():
    p = run_cli("version")
    assert p.returncode == 0 and p.stdout.startswith("casevault 0.")
    h = run_cli("help")
    assert h.returncode == 0
    for key in ("listen", "max_body_bytes", "max_megapixels", "max_side", "decode_timeout",
                "decode_memory_mb", "max_connections", "max_connections_per_ip",
                "request_timeout", "idle_timeout", "token_ttl", "four_eyes", "origin"):
        assert key in h.stdout, key
    for cmd in ("init", "serve", "token create", "token list", "token revoke"):
        assert "casevault " + cmd in h.stdout


def test_usage_errors_exit_2_naming_the_problem(tmp_path):
    cases = [
        (["frobnicate"], "unknown command 'frobnicate'"),
        ([], ""),
        (["init"], "--data DIR is required"),
        (["init", "--data", str(tmp_path / "d"), "--bogus"], "unknown option '--bogus'"),
        (["init", "--data"], "option '--data' needs a value"),
        (["token"], "expected a subcommand"),
        (["token", "mint"], "unknown subcommand 'mint'"),
        (["token", "create", "--data", str(tmp_path), "--role", "root", "--name", "x"],
         "--role must be"),
        (["token", "create", "--data", str(tmp_path), "--role", "admin"], "--name NAME is required"),
        (["token", "revoke", "--data", str(tmp_path)], "--id TOKEN_ID is required"),
        (["token", "revoke", "--data", str(tmp_path), "--id", "nope"], "--id must be a token id"),
        (["serve", "--data", str(tmp_path / "s"), "--set", "server.nope=1"],
         "unknown configuration key server.nope"),
        (["serve", "--data", str(tmp_path / "s"), "--set", "server.max_connections=lots"],
         "invalid value for server.max_connections"),
        (["serve", "--data", str(tmp_path / "s"), "--wat"], "unknown option '--wat'"),
        (["version", "extra"], "takes no arguments"),
        (["init", "--data", str(tmp_path / "d"), "positional"], "unexpected argument 'positional'"),
    ]
    for args, msg in cases:
        p = run_cli(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert msg in p.stderr + p.stdout, (args, p.stderr)


def test_unknown_config_file_key_exit_2(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[server]\nlisten = 127.0.0.1:0\n[intake]\nmax_pixels = 5\n")
    p = run_cli("serve", "--data", str(tmp_path / "d"), "--config", str(cfg))
    assert p.returncode == 2
    assert "intake.max_pixels" in p.stderr and "line 4" in p.stderr
    p = run_cli("serve", "--data", str(tmp_path / "d"), "--config", str(tmp_path / "missing.ini"))
    assert p.returncode == 2 and "cannot open config file" in p.stderr
    assert not (tmp_path / "d").exists(), "a refused start must not create the data dir"


def test_init_layout_and_modes(tmp_path):
    d = tmp_path / "data"
    p = run_cli("init", "--data", str(d))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for sub in ("blobs", "tmp", "keys"):
        assert stat.S_IMODE(os.stat(d / sub).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "casevault.db").st_mode) == 0o600
    keks = [f for f in os.listdir(d / "keys") if f.endswith(".kek")]
    assert len(keks) == 1 and len(keks[0]) == 20
    assert os.path.getsize(d / "keys" / keks[0]) == 32
    assert stat.S_IMODE(os.stat(d / "keys" / keks[0]).st_mode) == 0o600
    pub = (d / "keys" / "casevault.pub").read_text().splitlines()
    assert pub[0].startswith("untrusted comment: minisign public key ")
    assert len(pub[1]) == 56  # base64 of "Ed" + 8-byte key id + 32-byte key
    again = run_cli("init", "--data", str(d))
    assert again.returncode == 1 and "already an initialized data directory" in again.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    p = run_cli("init", "--data", str(foreign))
    assert p.returncode == 1 and "not empty" in p.stderr
    assert sorted(os.listdir(foreign)) == ["notes.txt"]


def test_token_create_list_revoke(tmp_path):
    d = str(tmp_path / "data")
    p = run_cli("token", "create", "--data", d, "--role", "admin", "--name", "ops")
    assert p.returncode == 1 and "not an initialized data directory" in p.stderr
    run_cli("init", "--data", d, check=True)
    p = run_cli("token", "create", "--data", d, "--role", "reviewer", "--name", "alice.r")
    assert p.returncode == 0, p.stderr
    tok = p.stdout.strip()
    assert len(tok) == 43 and "\n" not in tok and p.stdout.count("\n") == 1
    assert tok not in p.stderr
    p = run_cli("token", "create", "--data", d, "--role", "backup", "--name", "bad name!")
    assert p.returncode == 2 and "--name must be" in p.stderr
    lst = run_cli("token", "list", "--data", d, check=True).stdout
    assert "alice.r" in lst and "reviewer" in lst and "active" in lst
    assert tok not in lst
    tid = [l.split()[0] for l in lst.splitlines() if "alice.r" in l][0]
    assert run_cli("token", "revoke", "--data", d, "--id", tid).returncode == 0
    again = run_cli("token", "revoke", "--data", d, "--id", tid)
    assert again.returncode == 1 and "no active token" in again.stderr
    lst = run_cli("token", "list", "--data", d, check=True).stdout
    assert "active" not in [l.split()[-1] for l in lst.splitlines()[1:]]


def test_serve_initializes_missing_dir_and_refuses_second_server(tmp_path):
    d = tmp_path / "fresh" / "data"
    s = Server(d).start()
    try:
        assert (d / "casevault.db").exists() and (d / "keys").is_dir()
        assert any(l.get("msg") == "listening" for l in s.logs)
        p = run_cli("serve", "--data", str(d), "--listen", "127.0.0.1:0", timeout=30)
        assert p.returncode == 1 and "another server is running" in p.stderr
    finally:
        assert s.stop() == 0


def test_bad_listen_address_fails(tmp_path):
    p = run_cli("serve", "--data", str(tmp_path / "d"), "--listen", "nonsense", timeout=30)
    assert p.returncode == 1
    assert "invalid listen address" in p.stderr


def test_readme_lists_every_config_key():
    readme = open(os.path.join(os.path.dirname(__file__), "../../README.md"), encoding="utf-8").read()
    h = run_cli("help").stdout
    section = None
    keys = []
    for line in h.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif section and "default" in s and line.startswith("    "):
            keys.append(f"{section}.{s.split()[0]}")
    assert len(keys) >= 20
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert not missing, missing
