/* Unit tests: storage/account and storage/case — record validation and
 * idempotent upserts, every refusal of case creation, the rate limit and its
 * reset, the personal and enterprise lifecycles through the transition
 * table (with four-eyes), documents (superseding, resubmission rounds), the
 * audit entries of each transition, and no PII in the database file. All
 * identities are invented and pass their check characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "casevault/account.h"
#include "casevault/case.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "fixture.h"

#define P_NAME   "测试 甲"
#define P_ID     "110105199003071239"
#define P_MOBILE "13800138000"
#define E_NAME   "测试 乙"
#define E_ID     "310115198511204566"
#define E_MOBILE "13900139000"
#define E_ENT    "测试科技有限公司"
#define E_USCC   "91350100M000100Y43"
#define CONTACT  "13700137000"

static const struct cv_case_actor console = {"console", "applicant", "req-1", "127.0.0.1"};
static const struct cv_case_actor rev_a = {"01J00000000000000000000AAA", "reviewer", NULL, NULL};
static const struct cv_case_actor rev_b = {"01J00000000000000000000BBB", "reviewer", NULL, NULL};

static cv_status put_record(struct fx *f, const char *json, enum cv_upsert_result *res,
                            const char **field)
{
    json_error_t e;
    json_t *j = json_loads(json, 0, &e);
    assert_non_null(j);
    struct cv_account_record *r = cv_account_record_new();
    const char *fld = NULL, *why = NULL;
    enum cv_upsert_result dummy;
    cv_status st = cv_account_record_from_json(j, NULL, r, &fld, &why);
    json_decref(j);
    if (field)
        *field = fld;
    if (st == CV_OK) {
        assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
        st = cv_account_upsert(f->dd->db, f->dd->kr, r, res ? res : &dummy);
        assert_int_equal(st, CV_OK);
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    }
    cv_account_record_free(r);
    return st;
}

static void seed(struct fx *f, int mfa_bound)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"account_id\":\"p1\",\"type\":\"personal\",\"real_name_verified\":true,"
             "\"name\":\"" P_NAME "\",\"id_type\":\"cn_resident_id\",\"id_number\":\"" P_ID
             "\",\"mobile\":\"+86 138 0013 8000\",\"mfa_bound\":%s}",
             mfa_bound ? "true" : "false");
    assert_int_equal(put_record(f, buf, NULL, NULL), CV_OK);
    assert_int_equal(put_record(f,
                                "{\"account_id\":\"e1\",\"type\":\"enterprise\","
                                "\"real_name_verified\":true,\"name\":\"" E_NAME
                                "\",\"id_type\":\"cn_resident_id\",\"id_number\":\"" E_ID
                                "\",\"mobile\":\"" E_MOBILE "\",\"enterprise_name\":\"" E_ENT
                                "\",\"uscc\":\"" E_USCC "\",\"mfa_bound\":true}",
                                NULL, NULL),
                     CV_OK);
    assert_int_equal(put_record(f,
                                "{\"account_id\":\"s1\",\"type\":\"sub\","
                                "\"primary_account_id\":\"p1\",\"real_name_verified\":true,"
                                "\"mfa_bound\":true}",
                                NULL, NULL),
                     CV_OK);
    assert_int_equal(put_record(f,
                                "{\"account_id\":\"u1\",\"type\":\"personal\","
                                "\"real_name_verified\":false,\"mfa_bound\":true}",
                                NULL, NULL),
                     CV_OK);
}

static struct cv_case_application *app_personal(const char *account)
{
    struct cv_case_application *a = cv_case_application_new();
    snprintf(a->account_id, sizeof a->account_id, "%s", account);
    strcpy(a->applicant_type, "personal");
    strcpy(a->name, P_NAME);
    strcpy(a->id_type, "cn_resident_id");
    strcpy(a->id_number, P_ID);
    strcpy(a->mobile, P_MOBILE);
    strcpy(a->contact_mobile, CONTACT);
    return a;
}

static struct cv_case_application *app_enterprise(void)
{
    struct cv_case_application *a = cv_case_application_new();
    strcpy(a->account_id, "e1");
    strcpy(a->applicant_type, "enterprise");
    strcpy(a->name, E_NAME);
    strcpy(a->id_type, "cn_resident_id");
    strcpy(a->id_number, E_ID);
    strcpy(a->mobile, E_MOBILE);
    strcpy(a->contact_mobile, CONTACT);
    strcpy(a->enterprise_name, E_ENT);
    return a;
}

static struct cv_case_policy policy(int64_t now)
{
    struct cv_case_policy p = {now, 7LL * 86400 * 1000, 5, 3600LL * 1000};
    return p;
}

/* Run cv_case_open in a transaction, committing exactly as the server does. */
static cv_status open_case(struct fx *f, const struct cv_case_application *a,
                           const struct cv_case_policy *p, char id[CV_ULID_LEN + 1], int64_t *retry)
{
    char token[CV_TOKEN_TEXT_LEN + 1];
    int64_t r = 0;
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    cv_status st = cv_case_open(f->dd->db, f->dd->kr, a, p, &console, id, token, &r);
    if (st == CV_OK || st == CV_E_IDENTITY_MISMATCH || st == CV_E_ACCOUNT_TYPE_MISMATCH)
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    else
        cv_db_rollback(f->dd->db);
    if (st == CV_OK) {
        struct cv_principal who;
        assert_int_equal(cv_token_authenticate(f->dd->db, f->dd->kr, token, &who), CV_OK);
        assert_int_equal(who.role, CV_ROLE_APPLICANT);
        assert_string_equal(who.case_id, id);
    }
    if (retry)
        *retry = r;
    return st;
}

static cv_status add_doc(struct fx *f, const char *case_id, const char *kind, char *sup_out)
{
    char doc_id[CV_ULID_LEN + 1], sup[CV_ULID_LEN + 1];
    struct cv_document_new d = {kind,
                                "blob-orig",
                                "blob-norm",
                                "jpeg",
                                1000,
                                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                                "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
                                800,
                                600,
                                6,
                                "IMG_" P_ID ".jpg"};
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    cv_status st = cv_case_document_add(f->dd->db, f->dd->kr, case_id, &d, doc_id, sup);
    if (st == CV_OK) {
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
        if (sup_out)
            strcpy(sup_out, sup);
    } else {
        cv_db_rollback(f->dd->db);
    }
    return st;
}

static cv_status submit(struct fx *f, const char *id, char missing[CV_KIND_LIST_MAX])
{
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    cv_status st = cv_case_submit(f->dd->db, id, &console, missing);
    if (st == CV_OK)
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    else
        cv_db_rollback(f->dd->db);
    return st;
}

static cv_status decide(struct fx *f, const char *id, enum cv_decision d, const char *reason,
                        const char *kinds, int four_eyes, const struct cv_case_actor *who,
                        enum cv_case_status *to)
{
    enum cv_case_status t = 0;
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    cv_status st =
        cv_case_decide(f->dd->db, f->dd->kr, id, d, reason, kinds, four_eyes, 0, who, &t);
    if (st == CV_OK)
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    else
        cv_db_rollback(f->dd->db);
    if (to)
        *to = t;
    return st;
}

static cv_status close_case(struct fx *f, const char *id)
{
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    cv_status st = cv_case_close(f->dd->db, id, &rev_a);
    if (st == CV_OK)
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    else
        cv_db_rollback(f->dd->db);
    return st;
}

static enum cv_case_status status_of(struct fx *f, const char *id)
{
    struct cv_case_info c;
    assert_int_equal(cv_case_get(f->dd->db, 0, id, &c), CV_OK);
    return c.status;
}

/* Actions of the audit entries of a case, comma-joined, oldest first. */
static void audit_actions(struct fx *f, const char *case_id, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    assert_int_equal(sqlite3_open_v2(f->dd->db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT action FROM audit_entries WHERE case_id=? "
                                        "ORDER BY seq",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? "," : "", sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int account_mfa_bound(struct fx *f, const char *account)
{
    struct cv_account_info a;
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_account_get(f->dd->db, account, &a), CV_OK);
    cv_db_rollback(f->dd->db);
    return a.mfa_bound;
}

static void test_record_validation(void **state)
{
    struct fx *f = *state;
    const char *field = NULL;
    enum cv_upsert_result res;
    struct {
        const char *json;
        const char *field;
    } bad[] = {
        {"{\"type\":\"personal\",\"real_name_verified\":false}", "account_id"},
        {"{\"account_id\":\"a b\",\"type\":\"personal\",\"real_name_verified\":false}",
         "account_id"},
        {"{\"account_id\":\"x\",\"type\":\"robot\",\"real_name_verified\":false}", "type"},
        {"{\"account_id\":\"x\",\"type\":\"personal\"}", "real_name_verified"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":\"yes\"}",
         "real_name_verified"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":true}", "name"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"enterprise_name\":\"A\"}",
         "enterprise_name"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"uscc\":\"" E_USCC "\"}",
         "uscc"},
        {"{\"account_id\":\"x\",\"type\":\"sub\",\"real_name_verified\":false}",
         "primary_account_id"},
        {"{\"account_id\":\"x\",\"type\":\"sub\",\"primary_account_id\":\"x\","
         "\"real_name_verified\":false}",
         "primary_account_id"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"primary_account_id\":\"p\","
         "\"real_name_verified\":false}",
         "primary_account_id"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"id_type\":\"cn_resident_id\",\"id_number\":\"110105199003071238\"}",
         "id_number"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"id_number\":\"" P_ID "\"}",
         "id_type"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"mobile\":\"12345\"}",
         "mobile"},
        {"{\"account_id\":\"x\",\"type\":\"enterprise\",\"real_name_verified\":false,"
         "\"uscc\":\"91350100M000100Y44\"}",
         "uscc"},
        {"{\"account_id\":\"x\",\"type\":\"enterprise\",\"real_name_verified\":true,"
         "\"name\":\"A\",\"id_type\":\"passport\",\"id_number\":\"E12345678\","
         "\"mobile\":\"" E_MOBILE "\",\"enterprise_name\":\"B\"}",
         "uscc"},
        {"{\"account_id\":\"x\",\"type\":\"personal\",\"real_name_verified\":false,"
         "\"nickname\":\"A\"}",
         "record"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        field = NULL;
        if (put_record(f, bad[i].json, &res, &field) != CV_E_INVALID_FIELD)
            fail_msg("bad record %zu accepted", i);
        if (field == NULL || strcmp(field, bad[i].field) != 0)
            fail_msg("bad record %zu: field %s, expected %s", i, field ? field : "(null)",
                     bad[i].field);
    }
    const char *rec = "{\"account_id\":\"p9\",\"type\":\"personal\",\"real_name_verified\":true,"
                      "\"name\":\" " P_NAME " \",\"id_type\":\"cn_resident_id\",\"id_number\":"
                      "\"" P_ID "\",\"mobile\":\"0086 138 0013 8000\",\"mfa_bound\":true}";
    assert_int_equal(put_record(f, rec, &res, NULL), CV_OK);
    assert_int_equal(res, CV_UPSERT_CREATED);
    assert_int_equal(put_record(f, rec, &res, NULL), CV_OK);
    assert_int_equal(res, CV_UPSERT_UNCHANGED);
    /* the same identity written differently is still the same record */
    assert_int_equal(put_record(f,
                                "{\"account_id\":\"p9\",\"type\":\"personal\","
                                "\"real_name_verified\":true,\"name\":\"" P_NAME
                                "\",\"id_type\":\"cn_resident_id\",\"id_number\":\"" P_ID
                                "\",\"mobile\":\"" P_MOBILE "\",\"mfa_bound\":true}",
                                &res, NULL),
                     CV_OK);
    assert_int_equal(res, CV_UPSERT_UNCHANGED);
    assert_int_equal(put_record(f,
                                "{\"account_id\":\"p9\",\"type\":\"personal\","
                                "\"real_name_verified\":true,\"name\":\"" P_NAME
                                "\",\"id_type\":\"cn_resident_id\",\"id_number\":\"" P_ID
                                "\",\"mobile\":\"" P_MOBILE "\",\"mfa_bound\":false}",
                                &res, NULL),
                     CV_OK);
    assert_int_equal(res, CV_UPSERT_UPDATED);
    assert_int_equal(account_mfa_bound(f, "p9"), 0);
}

static void test_open_refusals(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1];
    int64_t now = cv_now_ms();
    struct cv_case_policy p = policy(now);
    p.max_failed = 0; /* 0 disables the rate limit: every refusal below is reached */
    seed(f, 1);
    struct cv_case_application *a = app_personal("nobody");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_ACCOUNT_NOT_FOUND);
    strcpy(a->account_id, "s1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_SUB_ACCOUNT);
    strcpy(a->account_id, "u1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_REAL_NAME_UNVERIFIED);
    /* enterprise applicant on a personal record */
    strcpy(a->account_id, "p1");
    strcpy(a->applicant_type, "enterprise");
    strcpy(a->enterprise_name, E_ENT);
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_ACCOUNT_TYPE_MISMATCH);
    cv_case_application_free(a);
    /* personal applicant on an enterprise record */
    a = app_personal("e1");
    strcpy(a->name, E_NAME);
    strcpy(a->id_number, E_ID);
    strcpy(a->mobile, E_MOBILE);
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_ACCOUNT_TYPE_MISMATCH);
    cv_case_application_free(a);
    /* each identity field alone differing is a mismatch */
    for (int i = 0; i < 4; i++) {
        a = app_personal("p1");
        if (i == 0)
            strcpy(a->name, "测试 丙");
        if (i == 1)
            strcpy(a->id_number, "310115198511204566");
        if (i == 2)
            strcpy(a->mobile, "13900139000");
        if (i == 3)
            strcpy(a->id_type, "passport");
        assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
        cv_case_application_free(a);
    }
    /* the contact mobile is not compared */
    a = app_personal("p1");
    strcpy(a->contact_mobile, "13600136000");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    char second[CV_ULID_LEN + 1];
    assert_int_equal(open_case(f, a, &p, second, NULL), CV_E_CASE_OPEN);
    cv_case_application_free(a);
    /* enterprise: wrong enterprise name or USCC */
    a = app_enterprise();
    strcpy(a->enterprise_name, "测试贸易有限公司");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
    strcpy(a->enterprise_name, E_ENT);
    strcpy(a->uscc, "91110000MA01ABCD1M");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
    cv_case_application_free(a);
}

static void test_mfa_not_bound(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1];
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 0);
    struct cv_case_application *a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_MFA_NOT_BOUND);
    cv_case_application_free(a);
}

static void test_rate_limit_and_reset(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1];
    int64_t retry = 0;
    int64_t t0 = cv_now_ms();
    seed(f, 1);
    struct cv_case_application *bad = app_personal("p1");
    strcpy(bad->name, "测试 丙");
    struct cv_case_application *good = app_personal("p1");
    for (int i = 0; i < 5; i++) {
        struct cv_case_policy p = policy(t0 + i * 1000);
        assert_int_equal(open_case(f, bad, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
    }
    /* the sixth attempt is refused before any check, even with the right identity */
    struct cv_case_policy p = policy(t0 + 10 * 1000);
    assert_int_equal(open_case(f, good, &p, id, &retry), CV_E_TOO_MANY_ATTEMPTS);
    assert_int_equal(retry, 3600 - 10);
    /* another account is not affected */
    struct cv_case_application *ent = app_enterprise();
    assert_int_equal(open_case(f, ent, &p, id, NULL), CV_OK);
    /* just after the first failure leaves the window, one attempt is allowed */
    p = policy(t0 + 3600 * 1000 + 1);
    assert_int_equal(open_case(f, bad, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
    assert_int_equal(open_case(f, good, &p, id, &retry), CV_E_TOO_MANY_ATTEMPTS);
    assert_int_equal(retry, 1);
    /* a full window later, and a success clears the count */
    p = policy(t0 + 2 * 3600 * 1000);
    assert_int_equal(open_case(f, bad, &p, id, NULL), CV_E_IDENTITY_MISMATCH);
    assert_int_equal(open_case(f, good, &p, id, NULL), CV_OK);
    struct cv_case_info c;
    assert_int_equal(cv_case_get(f->dd->db, 0, id, &c), CV_OK);
    assert_int_equal(c.status, CV_CASE_DRAFT);
    cv_case_application_free(bad);
    cv_case_application_free(good);
    cv_case_application_free(ent);
}

static void test_personal_lifecycle(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1], missing[CV_KIND_LIST_MAX] = "", sup[CV_ULID_LEN + 1] = "x";
    char actions[512];
    enum cv_case_status to;
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 1);
    struct cv_case_application *a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    cv_case_application_free(a);
    assert_int_equal(status_of(f, id), CV_CASE_DRAFT);
    /* submit without documents */
    assert_int_equal(submit(f, id, missing), CV_E_MISSING_DOCUMENTS);
    assert_string_equal(missing, "id_in_hand");
    /* a kind the case does not need; and a decision on a draft */
    assert_int_equal(add_doc(f, id, CV_KIND_BUSINESS_LICENSE, NULL), CV_E_INVALID_FIELD);
    assert_int_equal(add_doc(f, id, "selfie", NULL), CV_E_INVALID_FIELD);
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 0, &rev_a, NULL),
                     CV_E_INVALID_TRANSITION);
    assert_int_equal(close_case(f, id), CV_E_INVALID_TRANSITION);
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, sup), CV_OK);
    assert_string_equal(sup, "");
    struct cv_document_info d1, d2;
    assert_int_equal(cv_case_document_latest(f->dd->db, 0, id, CV_KIND_ID_IN_HAND, &d1), CV_OK);
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, sup), CV_OK);
    assert_string_equal(sup, d1.id); /* re-upload keeps and supersedes the earlier one */
    assert_int_equal(cv_case_document_latest(f->dd->db, 0, id, CV_KIND_ID_IN_HAND, &d2), CV_OK);
    assert_string_not_equal(d1.id, d2.id);
    assert_int_equal(d2.width, 800);
    assert_int_equal(d2.orientation_applied, 6);
    assert_int_equal(submit(f, id, missing), CV_OK);
    assert_int_equal(status_of(f, id), CV_CASE_SUBMITTED);
    /* no uploads and no second submit once submitted */
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, NULL), CV_E_INVALID_TRANSITION);
    assert_int_equal(submit(f, id, missing), CV_E_INVALID_TRANSITION);
    /* reject and resubmit need a reason; resubmit needs kinds of this case */
    assert_int_equal(decide(f, id, CV_DECISION_REJECT, "", NULL, 0, &rev_a, NULL),
                     CV_E_INVALID_FIELD);
    assert_int_equal(decide(f, id, CV_DECISION_RESUBMIT, NULL, "id_in_hand", 0, &rev_a, NULL),
                     CV_E_INVALID_FIELD);
    assert_int_equal(
        decide(f, id, CV_DECISION_RESUBMIT, "blurred", "business_license", 0, &rev_a, NULL),
        CV_E_INVALID_FIELD);
    assert_int_equal(decide(f, id, CV_DECISION_RESUBMIT, "blurred", "", 0, &rev_a, NULL),
                     CV_E_INVALID_FIELD);
    assert_int_equal(
        decide(f, id, CV_DECISION_RESUBMIT, "blurred photo", "id_in_hand", 0, &rev_a, &to), CV_OK);
    assert_int_equal(to, CV_CASE_NEEDS_RESUBMISSION);
    struct cv_case_info c;
    assert_int_equal(cv_case_get(f->dd->db, 0, id, &c), CV_OK);
    assert_string_equal(c.resubmit_kinds, "id_in_hand");
    assert_int_equal(c.round, 1);
    /* the earlier upload does not count for the new round */
    assert_int_equal(submit(f, id, missing), CV_E_MISSING_DOCUMENTS);
    assert_string_equal(missing, "id_in_hand");
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, sup), CV_OK);
    assert_string_equal(sup, d2.id);
    assert_int_equal(submit(f, id, missing), CV_OK);
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 0, &rev_a, &to), CV_OK);
    assert_int_equal(to, CV_CASE_APPROVED);
    assert_int_equal(account_mfa_bound(f, "p1"), 0);
    assert_int_equal(decide(f, id, CV_DECISION_REJECT, "late", NULL, 0, &rev_a, NULL),
                     CV_E_INVALID_TRANSITION);
    assert_int_equal(close_case(f, id), CV_OK);
    assert_int_equal(status_of(f, id), CV_CASE_CLOSED);
    assert_int_equal(close_case(f, id), CV_E_INVALID_TRANSITION);
    audit_actions(f, id, actions, sizeof actions);
    assert_string_equal(actions, "case.create,case.submit,case.decide,case.submit,case.decide,"
                                 "mfa.unbind,case.close");
    /* after approval the account has no MFA bound: no new case */
    a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_E_MFA_NOT_BOUND);
    cv_case_application_free(a);
}

static void test_enterprise_four_eyes(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1], missing[CV_KIND_LIST_MAX] = "";
    char actions[512];
    enum cv_case_status to;
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 1);
    struct cv_case_application *a = app_enterprise();
    strcpy(a->uscc, E_USCC);
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    cv_case_application_free(a);
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, NULL), CV_OK);
    assert_int_equal(submit(f, id, missing), CV_E_MISSING_DOCUMENTS);
    assert_string_equal(missing, "business_license");
    assert_int_equal(add_doc(f, id, CV_KIND_BUSINESS_LICENSE, NULL), CV_OK);
    assert_int_equal(submit(f, id, missing), CV_OK);
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 1, &rev_a, &to), CV_OK);
    assert_int_equal(to, CV_CASE_APPROVAL_PENDING);
    assert_int_equal(account_mfa_bound(f, "e1"), 1);
    /* the same reviewer cannot complete it */
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 1, &rev_a, NULL),
                     CV_E_INVALID_TRANSITION);
    assert_int_equal(status_of(f, id), CV_CASE_APPROVAL_PENDING);
    assert_int_equal(close_case(f, id), CV_E_INVALID_TRANSITION);
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 1, &rev_b, &to), CV_OK);
    assert_int_equal(to, CV_CASE_APPROVED);
    assert_int_equal(account_mfa_bound(f, "e1"), 0);
    audit_actions(f, id, actions, sizeof actions);
    assert_string_equal(actions, "case.create,case.submit,case.decide,case.decide,mfa.unbind");
}

static void test_four_eyes_reject_and_resubmit(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1], missing[CV_KIND_LIST_MAX] = "";
    enum cv_case_status to;
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 1);
    struct cv_case_application *a = app_enterprise();
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, NULL), CV_OK);
    assert_int_equal(add_doc(f, id, CV_KIND_BUSINESS_LICENSE, NULL), CV_OK);
    assert_int_equal(submit(f, id, missing), CV_OK);
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 1, &rev_a, &to), CV_OK);
    /* the second reviewer asks for the license again: back to the applicant */
    assert_int_equal(decide(f, id, CV_DECISION_RESUBMIT, "licence expired",
                            "business_license,business_license", 1, &rev_b, &to),
                     CV_OK);
    assert_int_equal(to, CV_CASE_NEEDS_RESUBMISSION);
    /* only the kinds asked for may be uploaded again */
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, NULL), CV_E_INVALID_TRANSITION);
    assert_int_equal(add_doc(f, id, CV_KIND_BUSINESS_LICENSE, NULL), CV_OK);
    assert_int_equal(submit(f, id, missing), CV_OK);
    /* four-eyes starts over: rev_a's earlier approval no longer counts */
    assert_int_equal(decide(f, id, CV_DECISION_APPROVE, NULL, NULL, 1, &rev_b, &to), CV_OK);
    assert_int_equal(to, CV_CASE_APPROVAL_PENDING);
    assert_int_equal(decide(f, id, CV_DECISION_REJECT, "forged", NULL, 1, &rev_a, &to), CV_OK);
    assert_int_equal(to, CV_CASE_REJECTED);
    assert_int_equal(account_mfa_bound(f, "e1"), 1);
    assert_int_equal(close_case(f, id), CV_OK);
    /* closed: the account may open a new case; one abandoned in
     * needs_resubmission can be closed by a reviewer */
    char id2[CV_ULID_LEN + 1];
    assert_int_equal(open_case(f, a, &p, id2, NULL), CV_OK);
    cv_case_application_free(a);
    assert_int_equal(add_doc(f, id2, CV_KIND_ID_IN_HAND, NULL), CV_OK);
    assert_int_equal(add_doc(f, id2, CV_KIND_BUSINESS_LICENSE, NULL), CV_OK);
    assert_int_equal(submit(f, id2, missing), CV_OK);
    assert_int_equal(decide(f, id2, CV_DECISION_RESUBMIT, "why", "id_in_hand", 1, &rev_a, &to),
                     CV_OK);
    assert_int_equal(close_case(f, id2), CV_OK);
    assert_int_equal(status_of(f, id2), CV_CASE_CLOSED);
}

static void test_expired_draft_is_closed(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1], id2[CV_ULID_LEN + 1];
    char actions[256];
    int64_t t0 = cv_now_ms();
    struct cv_case_policy p = policy(t0);
    seed(f, 1);
    struct cv_case_application *a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    p.now_ms = t0 + p.token_ttl_ms - 1;
    assert_int_equal(open_case(f, a, &p, id2, NULL), CV_E_CASE_OPEN);
    p.now_ms = t0 + p.token_ttl_ms;
    assert_int_equal(open_case(f, a, &p, id2, NULL), CV_OK);
    assert_int_equal(status_of(f, id), CV_CASE_CLOSED);
    assert_int_equal(status_of(f, id2), CV_CASE_DRAFT);
    audit_actions(f, id, actions, sizeof actions);
    assert_string_equal(actions, "case.create,case.expire");
    cv_case_application_free(a);
}

static int count_cb(const struct cv_case_info *c, void *arg)
{
    (void)c;
    (*(int *)arg)++;
    return 0;
}

static void test_list_and_identity(void **state)
{
    struct fx *f = *state;
    char id1[CV_ULID_LEN + 1], id2[CV_ULID_LEN + 1], next[CV_ULID_LEN + 1];
    char actions[256];
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 1);
    struct cv_case_application *a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id1, NULL), CV_OK);
    cv_case_application_free(a);
    a = app_enterprise();
    assert_int_equal(open_case(f, a, &p, id2, NULL), CV_OK);
    cv_case_application_free(a);
    int n = 0;
    assert_int_equal(cv_case_list(f->dd->db, NULL, NULL, 1, count_cb, &n, next), CV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(next, id2); /* newest first */
    n = 0;
    assert_int_equal(cv_case_list(f->dd->db, NULL, next, 1, count_cb, &n, next), CV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(next, "");
    enum cv_case_status s = CV_CASE_SUBMITTED;
    n = 0;
    assert_int_equal(cv_case_list(f->dd->db, &s, NULL, 10, count_cb, &n, next), CV_OK);
    assert_int_equal(n, 0);
    assert_int_equal(cv_case_list(f->dd->db, NULL, NULL, 0, count_cb, &n, next), CV_E_ARG);
    assert_int_equal(cv_case_list(f->dd->db, NULL, NULL, 201, count_cb, &n, next), CV_E_ARG);

    struct cv_case_identity idn;
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_case_identity_read(f->dd->db, f->dd->kr, id2, &rev_a, &idn), CV_OK);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    assert_string_equal(idn.name, E_NAME);
    assert_string_equal(idn.id_number, E_ID);
    assert_string_equal(idn.mobile, E_MOBILE);
    assert_string_equal(idn.contact_mobile, CONTACT);
    assert_string_equal(idn.enterprise_name, E_ENT);
    assert_string_equal(idn.uscc, "");
    sodium_memzero(&idn, sizeof idn);
    audit_actions(f, id2, actions, sizeof actions);
    assert_string_equal(actions, "case.create,case.view");
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(
        cv_case_identity_read(f->dd->db, f->dd->kr, "01J00000000000000000000000", &rev_a, &idn),
        CV_E_NOT_FOUND);
    cv_db_rollback(f->dd->db);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    int found = memmem(buf, got, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static void test_no_pii_in_database_file(void **state)
{
    struct fx *f = *state;
    char id[CV_ULID_LEN + 1], missing[CV_KIND_LIST_MAX];
    struct cv_case_policy p = policy(cv_now_ms());
    seed(f, 1);
    struct cv_case_application *a = app_enterprise();
    strcpy(a->uscc, E_USCC);
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    cv_case_application_free(a);
    a = app_personal("p1");
    assert_int_equal(open_case(f, a, &p, id, NULL), CV_OK);
    assert_int_equal(add_doc(f, id, CV_KIND_ID_IN_HAND, NULL), CV_OK);
    assert_int_equal(submit(f, id, missing), CV_OK);
    assert_int_equal(
        decide(f, id, CV_DECISION_REJECT, "name " P_NAME " does not match", NULL, 0, &rev_a, NULL),
        CV_OK);
    cv_case_application_free(a);
    static const char *pii[] = {P_NAME,   P_ID,  P_MOBILE, E_NAME,  E_ID,
                                E_MOBILE, E_ENT, E_USCC,   CONTACT, "测试"};
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", f->dd->db_path);
    for (size_t i = 0; i < sizeof pii / sizeof pii[0]; i++) {
        if (file_contains(f->dd->db_path, pii[i]) || file_contains(wal, pii[i]))
            fail_msg("PII value #%zu found in the database files", i);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mfa_not_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_personal_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enterprise_four_eyes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_eyes_reject_and_resubmit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_draft_is_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_pii_in_database_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
