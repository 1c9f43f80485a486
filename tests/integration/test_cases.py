"""Cases and real-name records over HTTP and the CLI (issue 5): record
upserts and `accounts import`, every refusal of case creation, the rate
limit and its reset, the personal and enterprise lifecycles (four-eyes), the
role x route matrix, and no PII in the database file, the logs or the audit
entries. Identities are invented; each passes its check character.

Documents are uploaded for real through PUT /v1/cases/{id}/documents/{kind}
(a generated 640x480 JPEG)."""
import glob
import json
import os
import sqlite3
import subprocess
import time

import pytest

from conftest import assert_problem, run_cli

ULID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

P = {"name": "测试 甲", "id_number": "110105199003071239", "mobile": "13800138000"}
E = {"name": "测试 乙", "id_number": "310115198511204566", "mobile": "13900139000",
     "enterprise_name": "测试科技有限公司", "uscc": "91350100M000100Y43"}
CONTACT = "13700137000"
# every PII value of the test identities, in the forms they are sent and stored
PII = [P["name"], P["id_number"], P["mobile"], E["name"], E["id_number"], E["mobile"],
       E["enterprise_name"], E["uscc"], CONTACT, "138 0013 8000", "测试"]


def personal_record(account_id="p1", **kw):
    r = {"account_id": account_id, "type": "personal", "real_name_verified": True,
         "name": P["name"], "id_type": "cn_resident_id", "id_number": P["id_number"],
         "mobile": "+86 138 0013 8000", "mfa_bound": True}
    r.update(kw)
    return r


def enterprise_record(account_id="e1", **kw):
    r = {"account_id": account_id, "type": "enterprise", "real_name_verified": True,
         "name": E["name"], "id_type": "cn_resident_id", "id_number": E["id_number"],
         "mobile": E["mobile"], "enterprise_name": E["enterprise_name"], "uscc": E["uscc"],
         "mfa_bound": True}
    r.update(kw)
    return r


def personal_case(account_id="p1", **kw):
    c = {"account_id": account_id, "applicant_type": "personal", "name": P["name"],
         "id_type": "cn_resident_id", "id_number": P["id_number"], "mobile": P["mobile"],
         "contact_mobile": CONTACT}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def enterprise_case(account_id="e1", **kw):
    c = {"account_id": account_id, "applicant_type": "enterprise", "name": E["name"],
         "id_type": "cn_resident_id", "id_number": E["id_number"], "mobile": E["mobile"],
         "contact_mobile": CONTACT, "enterprise_name": E["enterprise_name"]}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


class Env:
    def __init__(self, server):
        self.s = server
        self.tokens = {}
        self.admin = server.token("admin")
        self.reviewer = server.token("reviewer", "rev-one")
        self.reviewer2 = server.token("reviewer", "rev-two")
        self.auditor = server.token("auditor")
        self.backup = server.token("backup")

    def put_account(self, rec, expect=(200, 201), account_id=None):
        path = "/v1/accounts/" + (account_id or rec["account_id"])
        r = self.s.request("PUT", path, self.admin, json=rec)
        assert r.status_code in expect, r.text
        return r

    def seed(self):
        self.put_account(personal_record())
        self.put_account(enterprise_record())
        self.put_account({"account_id": "s1", "type": "sub", "primary_account_id": "p1",
                          "real_name_verified": True, "mfa_bound": True})
        self.put_account({"account_id": "u1", "type": "personal", "real_name_verified": False,
                          "mfa_bound": True})
        self.put_account(personal_record("p2", mfa_bound=False))

    def create(self, body):
        return self.s.request("POST", "/v1/cases", json=body)

    def open(self, body):
        r = self.create(body)
        assert r.status_code == 201, r.text
        self.tokens[r.json()["id"]] = r.json()["token"]
        return r.json()

    def add_doc(self, case_id, kind):
        """Upload a real (generated, 640x480) JPEG through PUT with the case's token."""
        r = self.s.request("PUT", f"/v1/cases/{case_id}/documents/{kind}", self.tokens[case_id],
                           data=doc_jpeg())
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def decide(self, case_id, token, **body):
        return self.s.request("POST", f"/v1/cases/{case_id}/decision", token, json=body)


_DOC_JPEG = []


def doc_jpeg():
    """A 640x480 JPEG made by ImageMagick (above the default minimum side)."""
    if not _DOC_JPEG:
        _DOC_JPEG.append(subprocess.run(
            ["convert", "-size", "640x480", "gradient:#203040-#c0d0e0", "jpg:-"],
            capture_output=True, check=True, timeout=60).stdout)
    return _DOC_JPEG[0]


@pytest.fixture
def env(server):
    e = Env(server)
    e.seed()
    return e


# ---- real-name records ----

def test_account_put_create_update_unchanged(server):
    e = Env(server)
    r = e.put_account(personal_record(), expect=(201,))
    assert r.json() == {"account_id": "p1", "type": "personal", "real_name_verified": True,
                        "mfa_bound": True, "result": "created"}
    r = e.put_account(personal_record(), expect=(200,))
    assert r.json()["result"] == "unchanged"
    # same identity written another way: still unchanged
    r = e.put_account(personal_record(mobile="13800138000", name="  测试   甲 "), expect=(200,))
    assert r.json()["result"] == "unchanged"
    r = e.put_account(personal_record(mfa_bound=False), expect=(200,))
    assert r.json()["result"] == "updated"
    rec = personal_record()
    del rec["account_id"]  # optional in the body of PUT
    assert e.put_account(rec, expect=(200,), account_id="p1").json()["result"] == "updated"
    for text in (r.text,):
        for v in PII:
            assert v not in text


@pytest.mark.parametrize("change,field", [
    ({"account_id": "other"}, "account_id"),
    ({"type": "robot"}, "type"),
    ({"real_name_verified": "yes"}, "real_name_verified"),
    ({"real_name_verified": None}, "real_name_verified"),
    ({"mfa_bound": 1}, "mfa_bound"),
    ({"name": None}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "a" * 65}, "name"),
    ({"name": "x\u0007y"}, "name"),
    ({"id_type": "ssn"}, "id_type"),
    ({"id_number": "110105199003071238"}, "id_number"),   # check character
    ({"id_number": "110105199002301232"}, "id_number"),   # 30 February
    ({"id_number": "110105203001011231"}, "id_number"),   # born in 2030
    ({"id_number": 110105199003071239}, "id_number"),
    ({"mobile": "12800138000"}, "mobile"),
    ({"mobile": "+1 13800138000"}, "mobile"),
    ({"enterprise_name": "A"}, "enterprise_name"),
    ({"uscc": E["uscc"]}, "uscc"),
    ({"primary_account_id": "p0"}, "primary_account_id"),
    ({"nickname": "x"}, "record"),
])
def test_account_put_invalid_fields(server, change, field):
    e = Env(server)
    rec = personal_record()
    rec.update(change)
    r = server.request("PUT", "/v1/accounts/p1", e.admin, json=rec)
    body = assert_problem(r, 400, "invalid_field")
    assert body["field"] == field
    assert field in body["detail"]
    for v in PII:
        assert v not in r.text


def test_account_put_enterprise_and_sub_rules(server):
    e = Env(server)
    rec = enterprise_record(uscc="91350100M000100Y44")
    assert assert_problem(server.request("PUT", "/v1/accounts/e1", e.admin, json=rec), 400,
                          "invalid_field")["field"] == "uscc"
    rec = enterprise_record()
    del rec["enterprise_name"]
    assert assert_problem(server.request("PUT", "/v1/accounts/e1", e.admin, json=rec), 400,
                          "invalid_field")["field"] == "enterprise_name"
    rec = {"account_id": "s1", "type": "sub", "real_name_verified": True}
    assert assert_problem(server.request("PUT", "/v1/accounts/s1", e.admin, json=rec), 400,
                          "invalid_field")["field"] == "primary_account_id"
    assert_problem(server.request("PUT", "/v1/accounts/e1", e.admin, data="{"), 400,
                   "malformed_json")
    e.put_account(enterprise_record(), expect=(201,))


def test_accounts_import(server, tmp_path):
    lines = [
        json.dumps(personal_record("imp-p"), ensure_ascii=False),
        "",
        json.dumps(enterprise_record("imp-e"), ensure_ascii=False),
        json.dumps(personal_record("imp-bad", id_number="110105199003071238"), ensure_ascii=False),
        "{not json",
        json.dumps({"account_id": "imp-s", "type": "sub", "primary_account_id": "imp-p",
                    "real_name_verified": True}),
        json.dumps(enterprise_record("imp-e2", uscc="91350100I000100Y43"), ensure_ascii=False),
        json.dumps([1, 2]),
    ]
    f = tmp_path / "records.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = run_cli("accounts", "import", "--data", server.data, str(f))
    assert p.returncode == 1
    assert p.stdout.strip() == "created 3, updated 0, unchanged 0, failed 4"
    err = p.stderr.splitlines()
    assert "line 4: id_number check character does not match (ISO 7064 MOD 11-2)" in err
    assert any(x.startswith("line 5: not valid JSON") for x in err)
    assert "line 7: uscc may use only 0-9 and A-Y without I, O, S, V, Z" in err
    assert "line 8: record must be a JSON object" in err
    for v in PII:
        assert v not in p.stderr and v not in p.stdout
    # idempotent
    p = run_cli("accounts", "import", "--data", server.data, str(f))
    assert p.stdout.strip() == "created 0, updated 0, unchanged 3, failed 4"
    good = tmp_path / "good.jsonl"
    good.write_text(lines[0] + "\n" + json.dumps(personal_record("imp-p", mfa_bound=False)) + "\n")
    p = run_cli("accounts", "import", "--data", server.data, str(good))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "created 0, updated 1, unchanged 1, failed 0"
    # the imported record is usable at once by the running server
    r = server.request("POST", "/v1/cases", json=enterprise_case("imp-e"))
    assert r.status_code == 201, r.text
    # usage errors
    assert run_cli("accounts", "import", "--data", server.data).returncode == 2
    assert run_cli("accounts", "import", str(f)).returncode == 2
    assert run_cli("accounts", "export", "--data", server.data).returncode == 2
    assert run_cli("accounts", "import", "--data", server.data,
                   str(tmp_path / "missing.jsonl")).returncode == 1


# ---- case creation ----

def test_create_success_shape(env):
    r = env.create(personal_case(mobile="+86 138-0013-8000"))
    assert r.status_code == 201, r.text
    b = r.json()
    assert set(b) == {"id", "status", "token", "required_documents", "token_expires_at"}
    assert b["status"] == "draft" and b["required_documents"] == ["id_in_hand"]
    assert len(b["id"]) == 26 and set(b["id"]) <= ULID_CHARS
    assert len(b["token"]) == 43
    r = env.s.get(f"/v1/cases/{b['id']}", b["token"])
    assert r.status_code == 200 and r.json()["id"] == b["id"]
    e = env.open(enterprise_case())
    assert e["required_documents"] == ["business_license", "id_in_hand"]
    # the token is stored only hashed
    con = sqlite3.connect(os.path.join(env.s.data, "casevault.db"))
    rows = [r[0] for r in con.execute("SELECT hash FROM tokens")]
    con.close()
    assert all(b["token"].encode() not in bytes(h) for h in rows)


def test_create_refusals(env):
    b = assert_problem(env.create(personal_case("nobody")), 404, "account_not_found")
    b = assert_problem(env.create(personal_case("u1")), 409, "real_name_unverified")
    assert "cannot be performed until" in b["detail"]
    assert "real-name verification is complete" in b["detail"]
    b = assert_problem(env.create(personal_case("s1")), 422, "sub_account")
    assert "primary account" in b["detail"] and "disassociate" in b["detail"]
    assert "associate it again" in b["detail"]
    b = assert_problem(env.create(personal_case(name="测试 丙")), 422, "identity_mismatch")
    text = json.dumps(b)
    for word in ("name", "id_number", "mobile", "field"):
        assert word not in text.replace("real-name", "")
    b2 = assert_problem(env.create(personal_case(id_number=E["id_number"])), 422,
                        "identity_mismatch")
    b3 = assert_problem(env.create(personal_case(mobile=E["mobile"])), 422, "identity_mismatch")
    assert b["detail"] == b2["detail"] == b3["detail"]
    # enterprise fields on a personal record and the reverse
    assert_problem(env.create(enterprise_case("p1", name=P["name"], id_number=P["id_number"],
                                              mobile=P["mobile"])), 422, "identity_mismatch")
    assert_problem(env.create(personal_case("e1", name=E["name"], id_number=E["id_number"],
                                            mobile=E["mobile"])), 422, "identity_mismatch")
    b = assert_problem(env.create(personal_case(enterprise_name="测试科技有限公司")), 422,
                       "identity_mismatch")
    assert b["field"] == "enterprise_name"
    assert_problem(env.create(personal_case(uscc=E["uscc"])), 422, "identity_mismatch")
    assert_problem(env.create(personal_case("p2")), 409, "mfa_not_bound")
    env.open(enterprise_case(uscc=E["uscc"]))
    assert_problem(env.create(enterprise_case()), 409, "case_open")
    assert_problem(env.create(enterprise_case(enterprise_name="测试贸易有限公司")), 422,
                   "identity_mismatch")


@pytest.mark.parametrize("change,field", [
    ({"account_id": None}, "account_id"),
    ({"account_id": "a/b"}, "account_id"),
    ({"applicant_type": "robot"}, "applicant_type"),
    ({"name": ""}, "name"),
    ({"id_type": None}, "id_type"),
    ({"id_number": "110105199003071238"}, "id_number"),
    ({"id_number": "11010519900307123"}, "id_number"),
    ({"mobile": "1380013800"}, "mobile"),
    ({"contact_mobile": None}, "contact_mobile"),
    ({"contact_mobile": "+44 7700 900123"}, "contact_mobile"),
    ({"extra": 1}, "body"),
])
def test_create_invalid_fields(env, change, field):
    r = env.create(personal_case(**change))
    b = assert_problem(r, 400, "invalid_field")
    assert b["field"] == field
    for v in PII:
        assert v not in r.text


def test_create_invalid_enterprise_fields(env):
    assert assert_problem(env.create(enterprise_case(enterprise_name=None)), 400,
                          "invalid_field")["field"] == "enterprise_name"
    assert assert_problem(env.create(enterprise_case(uscc="91350100M000100Y44")), 400,
                          "invalid_field")["field"] == "uscc"
    assert_problem(env.s.request("POST", "/v1/cases", data="[1]"), 400, "malformed_json")


def test_rate_limit_and_reset(server_factory):
    s = server_factory(args=["--set", "cases.failed_attempts_window=3"])
    env = Env(s)
    env.seed()
    for _ in range(5):
        assert_problem(env.create(personal_case(name="测试 丙")), 422, "identity_mismatch")
    # the 6th attempt is refused before any check, even with the right identity
    r = env.create(personal_case())
    b = assert_problem(r, 429, "too_many_attempts")
    ra = int(r.headers["Retry-After"])
    assert 1 <= ra <= 3 and b["retry_after"] == ra
    # other accounts are not affected
    env.open(enterprise_case())
    # the limit resets once the failures leave the window
    deadline = time.monotonic() + 10
    while True:
        r = env.create(personal_case())
        if r.status_code == 201 or time.monotonic() > deadline:
            break
        assert r.status_code == 429
        time.sleep(min(int(r.headers["Retry-After"]), 3))
    assert r.status_code == 201, r.text
    # the audit log records each failed check without PII
    con = sqlite3.connect(os.path.join(s.data, "casevault.db"))
    entries = [json.loads(x[0]) for x in con.execute(
        "SELECT entry FROM audit_entries WHERE action='case.identity_check' ORDER BY seq")]
    con.close()
    assert len(entries) == 5
    assert [e["details"]["failures"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(e["outcome"] == "refused" and e["details"]["account_id"] == "p1" for e in entries)


def test_case_token_expires(server_factory):
    s = server_factory(args=["--set", "cases.token_ttl=1"])
    env = Env(s)
    env.seed()
    c = env.open(personal_case())
    assert s.get(f"/v1/cases/{c['id']}", c["token"]).status_code == 200
    time.sleep(1.2)
    assert_problem(s.get(f"/v1/cases/{c['id']}", c["token"]), 401, "unauthorized")
    # the untouched draft no longer blocks the account
    c2 = env.open(personal_case())
    assert c2["id"] != c["id"]
    r = s.get(f"/v1/cases/{c['id']}", env.reviewer)
    assert r.json()["status"] == "closed"


def test_resubmission_extends_the_case_token(server_factory):
    s = server_factory(args=["--set", "cases.token_ttl=2"])
    env = Env(s)
    env.seed()
    c = env.open(personal_case())
    env.add_doc(c["id"], "id_in_hand")
    assert s.request("POST", f"/v1/cases/{c['id']}/submit", c["token"]).status_code == 200
    time.sleep(2.2)
    assert_problem(s.get(f"/v1/cases/{c['id']}", c["token"]), 401, "unauthorized")
    r = env.decide(c["id"], env.reviewer, decision="resubmit", reason="blurred",
                   kinds=["id_in_hand"])
    assert r.status_code == 200, r.text
    # the applicant can upload again with the token shown once at creation
    assert s.get(f"/v1/cases/{c['id']}", c["token"]).json()["status"] == "needs_resubmission"
    # and a reviewer may close a case the applicant abandoned
    assert s.request("POST", f"/v1/cases/{c['id']}/close", env.reviewer).status_code == 200


# ---- lifecycles ----

def test_personal_lifecycle(env):
    s = env.s
    c = env.open(personal_case())
    cid, tok = c["id"], c["token"]
    r = s.get(f"/v1/cases/{cid}", tok)
    assert r.status_code == 200
    b = r.json()
    assert b["status"] == "draft" and b["uploads_open"] is True
    assert b["documents"] == [{"kind": "id_in_hand", "required": True, "present": False}]
    assert "identity" not in b and "account_id" not in b
    b = assert_problem(s.request("POST", f"/v1/cases/{cid}/submit", tok), 409, "missing_documents")
    assert b["missing"] == ["id_in_hand"] and "id_in_hand" in b["detail"]
    assert_problem(env.decide(cid, env.reviewer, decision="approve"), 409, "invalid_transition")
    first = env.add_doc(cid, "id_in_hand")
    second = env.add_doc(cid, "id_in_hand")
    docs = s.get(f"/v1/cases/{cid}", tok).json()["documents"]
    assert docs[0]["present"] is True and "document_id" not in docs[0]
    r = s.request("POST", f"/v1/cases/{cid}/submit", tok)
    assert r.status_code == 200 and r.json() == {"id": cid, "status": "submitted"}
    assert_problem(s.request("POST", f"/v1/cases/{cid}/submit", tok), 409, "invalid_transition")
    # the reviewer's view: identity decrypted, latest document, audited
    r = s.get(f"/v1/cases/{cid}", env.reviewer)
    b = r.json()
    assert b["identity"] == {"name": P["name"], "id_type": "cn_resident_id",
                             "id_number": P["id_number"], "mobile": P["mobile"],
                             "contact_mobile": CONTACT}
    assert b["account_id"] == "p1" and b["documents"][0]["document_id"] == second != first
    # decisions: reason required; kinds must belong to the case
    assert assert_problem(env.decide(cid, env.reviewer, decision="reject"), 400,
                          "invalid_field")["field"] == "reason"
    assert assert_problem(env.decide(cid, env.reviewer, decision="resubmit", reason=" ",
                                     kinds=["id_in_hand"]), 400, "invalid_field")["field"] == "reason"
    assert assert_problem(env.decide(cid, env.reviewer, decision="resubmit", reason="blurred"),
                          400, "invalid_field")["field"] == "kinds"
    assert assert_problem(env.decide(cid, env.reviewer, decision="resubmit", reason="blurred",
                                     kinds=["business_license"]), 400,
                          "invalid_field")["field"] == "kinds"
    assert assert_problem(env.decide(cid, env.reviewer, decision="maybe"), 400,
                          "invalid_field")["field"] == "decision"
    assert assert_problem(env.decide(cid, env.reviewer, decision="approve", kinds=["id_in_hand"]),
                          400, "invalid_field")["field"] == "kinds"
    r = env.decide(cid, env.reviewer, decision="resubmit", reason="photo is blurred",
                   kinds=["id_in_hand"])
    assert r.status_code == 200 and r.json()["status"] == "needs_resubmission", r.text
    b = s.get(f"/v1/cases/{cid}", tok).json()
    assert b["status"] == "needs_resubmission" and b["resubmit_kinds"] == ["id_in_hand"]
    assert b["uploads_open"] is True and b["documents"][0]["resubmission_requested"] is True
    assert assert_problem(s.request("POST", f"/v1/cases/{cid}/submit", tok), 409,
                          "missing_documents")["missing"] == ["id_in_hand"]
    env.add_doc(cid, "id_in_hand")
    assert s.request("POST", f"/v1/cases/{cid}/submit", tok).status_code == 200
    assert_problem(s.request("POST", f"/v1/cases/{cid}/close", env.reviewer), 409,
                   "invalid_transition")
    r = env.decide(cid, env.reviewer, decision="approve")
    assert r.json() == {"id": cid, "status": "approved", "decision": "approve"}
    # approval unbound the MFA device: a new case is refused
    assert_problem(env.create(personal_case()), 409, "mfa_not_bound")
    assert_problem(env.decide(cid, env.reviewer, decision="reject", reason="x"), 409,
                   "invalid_transition")
    r = s.request("POST", f"/v1/cases/{cid}/close", env.reviewer)
    assert r.json() == {"id": cid, "status": "closed"}
    assert_problem(s.request("POST", f"/v1/cases/{cid}/close", env.reviewer), 409,
                   "invalid_transition")
    assert s.get(f"/v1/cases/{cid}", tok).json()["status"] == "closed"
    con = sqlite3.connect(os.path.join(s.data, "casevault.db"))
    actions = [a for (a,) in con.execute(
        "SELECT action FROM audit_entries WHERE case_id=? ORDER BY seq", (cid,))]
    con.close()
    assert actions == ["case.create", "document.upload", "document.upload", "case.submit",
                       "case.view", "case.decide", "document.upload", "case.submit",
                       "case.decide", "mfa.unbind", "case.close"]


def test_enterprise_lifecycle_four_eyes(server_factory):
    s = server_factory(args=["--set", "decision.four_eyes=true"])
    env = Env(s)
    env.seed()
    c = env.open(enterprise_case(uscc="9135 0100 M000 100Y43"))
    cid, tok = c["id"], c["token"]
    env.add_doc(cid, "id_in_hand")
    assert assert_problem(s.request("POST", f"/v1/cases/{cid}/submit", tok), 409,
                          "missing_documents")["missing"] == ["business_license"]
    env.add_doc(cid, "business_license")
    assert s.request("POST", f"/v1/cases/{cid}/submit", tok).status_code == 200
    r = env.decide(cid, env.reviewer, decision="approve")
    assert r.json()["status"] == "approval_pending"
    b = s.get(f"/v1/cases/{cid}", env.auditor).json()
    assert b["status"] == "approval_pending" and b["first_approver"]
    assert b["identity"]["uscc"] == E["uscc"] and b["identity"]["enterprise_name"] == E["enterprise_name"]
    assert_problem(env.decide(cid, env.reviewer, decision="approve"), 409, "invalid_transition")
    r = env.decide(cid, env.reviewer2, decision="approve")
    assert r.json()["status"] == "approved"
    assert_problem(env.create(enterprise_case()), 409, "mfa_not_bound")
    assert s.request("POST", f"/v1/cases/{cid}/close", env.reviewer2).status_code == 200


def test_list_paging(env):
    ids = [env.open(personal_case())["id"], env.open(enterprise_case())["id"]]
    env.put_account(personal_record("p3", name="测试 丁", id_number="440306200002297892",
                                    mobile="13600136000"))
    ids.append(env.open(personal_case("p3", name="测试 丁", id_number="440306200002297892",
                                      mobile="13600136000"))["id"])
    s = env.s
    r = s.get("/v1/cases?limit=2", env.reviewer)
    b = r.json()
    assert [c["id"] for c in b["cases"]] == ids[::-1][:2]
    assert b["next_cursor"] == ids[1]
    assert set(b["cases"][0]) == {"id", "status", "applicant_type", "account_id", "created_at",
                                  "updated_at"}
    b = s.get(f"/v1/cases?limit=2&cursor={b['next_cursor']}", env.auditor).json()
    assert [c["id"] for c in b["cases"]] == [ids[0]] and b["next_cursor"] is None
    b = s.get("/v1/cases?status=draft", env.reviewer).json()
    assert len(b["cases"]) == 3
    assert s.get("/v1/cases?status=approved", env.reviewer).json()["cases"] == []
    for q, field in (("status=open", "status"), ("limit=0", "limit"), ("limit=201", "limit"),
                     ("limit=x", "limit"), ("cursor=abc", "cursor")):
        assert assert_problem(s.get("/v1/cases?" + q, env.reviewer), 400,
                              "invalid_field")["field"] == field
    for v in PII:
        assert v not in r.text


# ---- who may do what ----

def test_role_route_matrix(env):
    s = env.s
    c = env.open(personal_case())
    other = env.open(enterprise_case())
    cid = c["id"]
    principals = {"applicant": c["token"], "admin": env.admin, "reviewer": env.reviewer,
                  "auditor": env.auditor, "backup": env.backup, "none": None}
    routes = [
        ("PUT", "/v1/accounts/p9", personal_record("p9"), {"admin"}),
        ("POST", "/v1/cases", {}, None),  # unauthenticated: everyone gets the same 400
        ("GET", "/v1/cases", None, {"reviewer", "auditor"}),
        ("GET", f"/v1/cases/{cid}", None, {"applicant", "reviewer", "auditor"}),
        ("POST", f"/v1/cases/{cid}/submit", None, {"applicant"}),
        ("POST", f"/v1/cases/{cid}/decision", {"decision": "approve"}, {"reviewer"}),
        ("POST", f"/v1/cases/{cid}/close", None, {"reviewer"}),
    ]
    for method, path, body, allowed in routes:
        for who, tok in principals.items():
            r = s.request(method, path, tok, json=body) if body is not None else \
                s.request(method, path, tok)
            where = f"{who} {method} {path}: {r.status_code} {r.text[:200]}"
            if allowed is None:
                assert r.status_code == 400, where
            elif who in allowed:
                assert r.status_code in (200, 201, 409), where
            elif who == "none":
                assert r.status_code == 401, where
            elif who == "applicant":
                assert r.status_code == 404, where
            else:
                assert r.status_code == 403, where
    # an applicant token on any other case id: 404, never 403
    for method, path in (("GET", f"/v1/cases/{other['id']}"),
                         ("POST", f"/v1/cases/{other['id']}/submit"),
                         ("GET", "/v1/cases/01J00000000000000000000000"),
                         ("POST", f"/v1/cases/{other['id']}/decision")):
        assert_problem(s.request(method, path, c["token"]), 404, "not_found")
    assert_problem(s.get("/v1/cases/not-a-ulid", env.reviewer), 404, "not_found")
    assert_problem(s.get("/v1/cases/01J00000000000000000000000", env.reviewer), 404, "not_found")


# ---- no PII at rest, in logs, in audit entries ----

def test_no_pii_in_database_logs_or_audit(server_factory, tmp_path):
    s = server_factory()
    env = Env(s)
    env.seed()
    c = env.open(enterprise_case(uscc=E["uscc"]))
    env.create(enterprise_case(name="测试 丙"))
    env.add_doc(c["id"], "id_in_hand")
    env.add_doc(c["id"], "business_license")
    s.request("POST", f"/v1/cases/{c['id']}/submit", c["token"])
    assert s.get(f"/v1/cases/{c['id']}", env.reviewer).json()["identity"]["name"] == E["name"]
    env.decide(c["id"], env.reviewer, decision="reject",
               reason=f"applicant {E['name']} {E['id_number']} did not match the photo")
    p = env.open(personal_case())
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(personal_record("imp"), ensure_ascii=False) + "\n" +
                 json.dumps(personal_record("bad", mobile="1"), ensure_ascii=False) + "\n")
    imp = run_cli("accounts", "import", "--data", s.data, str(f))
    assert p["id"]
    con = sqlite3.connect(os.path.join(s.data, "casevault.db"))
    entries = "\n".join(e for (e,) in con.execute("SELECT entry FROM audit_entries"))
    con.close()
    time.sleep(0.3)  # let the log reader thread catch up
    blobs = b""
    for path in glob.glob(os.path.join(s.data, "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                blobs += fh.read()
    logs = "".join(s.raw_stderr) + imp.stdout + imp.stderr
    for v in PII:
        assert v.encode() not in blobs, v
        assert v not in logs, v
        assert v not in entries, v
    assert "case.view" in entries and "case.identity_check" in entries


# ---- the JSON Schemas in schemas/ describe what the server accepts ----

SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "..", "schemas")


def load_schema(name):
    with open(os.path.join(SCHEMAS, name), encoding="utf-8") as fh:
        return json.load(fh)


def test_schemas_match_the_server(env):
    rec = load_schema("real-name-record.schema.json")
    assert rec["additionalProperties"] is False
    assert set(rec["properties"]) == set(personal_record()) | set(enterprise_record()) | {
        "primary_account_id"}
    for prop in rec["properties"]:  # every schema member is known to the server
        body = personal_record("schema-p")
        body.setdefault(prop, None)
        r = env.s.request("PUT", "/v1/accounts/schema-p", env.admin, json=body)
        assert r.status_code in (200, 201), (prop, r.text)
    for req in rec["required"]:
        body = personal_record("schema-q")
        del body[req]
        r = env.s.request("PUT", "/v1/accounts/schema-q", env.admin, json=body)
        if req == "account_id":  # PUT takes it from the path
            assert r.status_code == 201
        else:
            assert assert_problem(r, 400, "invalid_field")["field"] == req
    cc = load_schema("case-create.schema.json")
    assert set(cc["properties"]) == set(enterprise_case()) | {"uscc"}
    for req in cc["required"]:
        body = personal_case(**{req: None})
        assert assert_problem(env.create(body), 400, "invalid_field")["field"] == req
    dec = load_schema("case-decision.schema.json")
    assert set(dec["properties"]) == {"decision", "reason", "kinds"}
