/*
 * storage/case: cases, their one transition table, their documents and the
 * per-account rate limit of failed identity checks.
 *
 * DESIGN NOTES
 * 1. Case states and the function for each transition (the table
 *    `transitions` below is the only place that says what may follow what):
 *
 *        (none) --cv_case_open--> draft --cv_case_submit--> submitted
 *        draft --cv_case_open (expired draft of the same account)--> closed
 *        submitted --cv_case_decide(approve)--> approved
 *        submitted --cv_case_decide(approve, four_eyes)--> approval_pending
 *        approval_pending --cv_case_decide(approve, other reviewer)--> approved
 *        submitted | approval_pending --cv_case_decide(reject)--> rejected
 *        submitted | approval_pending --cv_case_decide(resubmit)--> needs_resubmission
 *        needs_resubmission --cv_case_submit--> submitted
 *        approved | rejected | needs_resubmission --cv_case_close--> closed
 *
 * 2. Every transition is an UPDATE guarded by the expected old status and
 *    appends its audit entry in the caller's transaction; a refused
 *    transition writes nothing.
 * 3. One open case per account (draft, submitted, needs_resubmission,
 *    approval_pending) is enforced by a partial unique index, not only here.
 * 4. Failed identity checks are rows of identity_failures, counted inside the
 *    write transaction, so several processes share one limit.
 * 5. Identity fields are compared with the real-name record through blind
 *    indexes; the answer never says which field differed.
 * 6. Documents are never deleted or overwritten: a re-upload marks the
 *    earlier row superseded; "latest" is the one row per kind that is not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/case.h"
#include "casevault/field.h"
#include "casevault/validate.h"
#include "db_internal.h"

/* ---- names ---- */

static const char *const status_names[] = {
    [CV_CASE_DRAFT] = "draft",
    [CV_CASE_SUBMITTED] = "submitted",
    [CV_CASE_NEEDS_RESUBMISSION] = "needs_resubmission",
    [CV_CASE_APPROVAL_PENDING] = "approval_pending",
    [CV_CASE_APPROVED] = "approved",
    [CV_CASE_REJECTED] = "rejected",
    [CV_CASE_CLOSED] = "closed",
};

const char *cv_case_status_str(enum cv_case_status s)
{
    if ((int)s >= CV_CASE_DRAFT && (int)s <= CV_CASE_CLOSED)
        return status_names[s];
    return "?";
}

cv_status cv_case_status_parse(const char *name, enum cv_case_status *out)
{
    for (int s = CV_CASE_DRAFT; name && s <= CV_CASE_CLOSED; s++)
        if (strcmp(status_names[s], name) == 0) {
            *out = (enum cv_case_status)s;
            return CV_OK;
        }
    return CV_E_ARG;
}

static const char *const kinds_personal[] = {CV_KIND_ID_IN_HAND};
static const char *const kinds_enterprise[] = {CV_KIND_BUSINESS_LICENSE, CV_KIND_ID_IN_HAND};

const char *const *cv_case_required_kinds(const char *applicant_type, unsigned *n)
{
    if (applicant_type && strcmp(applicant_type, "personal") == 0) {
        *n = 1;
        return kinds_personal;
    }
    if (applicant_type && strcmp(applicant_type, "enterprise") == 0) {
        *n = 2;
        return kinds_enterprise;
    }
    *n = 0;
    return NULL;
}

int cv_case_uploads_allowed(enum cv_case_status s)
{
    return s == CV_CASE_DRAFT || s == CV_CASE_NEEDS_RESUBMISSION;
}

/* ---- the transition table ---- */

enum case_event {
    EV_SUBMIT,
    EV_APPROVE,       /* final approval */
    EV_APPROVE_FIRST, /* first of two approvals (four-eyes) */
    EV_REJECT,
    EV_RESUBMIT,
    EV_CLOSE,
    EV_EXPIRE, /* an untouched draft whose token expired */
};

static const struct {
    enum cv_case_status from;
    enum case_event ev;
    enum cv_case_status to;
} transitions[] = {
    {CV_CASE_DRAFT, EV_SUBMIT, CV_CASE_SUBMITTED},
    {CV_CASE_NEEDS_RESUBMISSION, EV_SUBMIT, CV_CASE_SUBMITTED},
    {CV_CASE_SUBMITTED, EV_APPROVE, CV_CASE_APPROVED},
    {CV_CASE_SUBMITTED, EV_APPROVE_FIRST, CV_CASE_APPROVAL_PENDING},
    {CV_CASE_APPROVAL_PENDING, EV_APPROVE, CV_CASE_APPROVED},
    {CV_CASE_SUBMITTED, EV_REJECT, CV_CASE_REJECTED},
    {CV_CASE_APPROVAL_PENDING, EV_REJECT, CV_CASE_REJECTED},
    {CV_CASE_SUBMITTED, EV_RESUBMIT, CV_CASE_NEEDS_RESUBMISSION},
    {CV_CASE_APPROVAL_PENDING, EV_RESUBMIT, CV_CASE_NEEDS_RESUBMISSION},
    {CV_CASE_APPROVED, EV_CLOSE, CV_CASE_CLOSED},
    {CV_CASE_REJECTED, EV_CLOSE, CV_CASE_CLOSED},
    {CV_CASE_NEEDS_RESUBMISSION, EV_CLOSE, CV_CASE_CLOSED},
    {CV_CASE_DRAFT, EV_EXPIRE, CV_CASE_CLOSED},
};

static cv_status next_status(enum cv_case_status from, enum case_event ev, enum cv_case_status *to)
{
    for (size_t i = 0; i < sizeof transitions / sizeof transitions[0]; i++)
        if (transitions[i].from == from && transitions[i].ev == ev) {
            *to = transitions[i].to;
            return CV_OK;
        }
    return CV_E_INVALID_TRANSITION;
}

/* ---- helpers ---- */

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? t : "");
}

static cv_status audit(struct cv_db *db, const char *action, const struct cv_case_actor *a,
                       const char *case_id, const char *object_id, const char *outcome,
                       json_t *details)
{
    struct cv_audit_event ev = {.action = action,
                                .actor_id = a->id,
                                .actor_role = a->role,
                                .case_id = case_id,
                                .object_id = object_id,
                                .request_id = a->request_id,
                                .client = a->client,
                                .outcome = outcome,
                                .details = details};
    cv_status rc = cv_audit_append(db, &ev, NULL);
    json_decref(details);
    return rc;
}

/* Bind a sealed value of cases.<column> for row case_id to parameter idx. The
 * ciphertext is appended to *keep (freed by the caller). */
static cv_status bind_sealed(struct cv_keyring *kr, sqlite3_stmt *st, int idx, const char *table,
                             const char *column, const char *row, const char *value, uint8_t **keep)
{
    size_t n = 0;
    if (value == NULL || !value[0]) {
        sqlite3_bind_null(st, idx);
        return CV_OK;
    }
    cv_status rc = cv_field_seal(kr, table, column, row, value, strlen(value), keep, &n);
    if (rc != CV_OK)
        return rc;
    sqlite3_bind_blob(st, idx, *keep, (int)n, SQLITE_STATIC);
    return CV_OK;
}

/* ---- applications ---- */

struct cv_case_application *cv_case_application_new(void)
{
    struct cv_case_application *a = sodium_malloc(sizeof *a);
    if (a != NULL)
        memset(a, 0, sizeof *a);
    return a;
}

void cv_case_application_free(struct cv_case_application *a)
{
    if (a != NULL)
        sodium_free(a);
}

static const char *const app_members[] = {
    "account_id",     "applicant_type",  "name", "id_type", "id_number", "mobile",
    "contact_mobile", "enterprise_name", "uscc",
};

#define BAD(f, w)                                                                                  \
    do {                                                                                           \
        *field = (f);                                                                              \
        *why = (w);                                                                                \
        rc = CV_E_INVALID_FIELD;                                                                   \
        goto out;                                                                                  \
    } while (0)

cv_status cv_case_application_from_json(json_t *j, struct cv_case_application *out,
                                        const char **field, const char **why)
{
    cv_status rc = CV_E_INVALID_FIELD;
    struct cv_case_application *a = cv_case_application_new();
    const char *s = NULL, *w = NULL, *key;
    json_t *v;

    if (a == NULL)
        return CV_E_NOMEM;
    if (!json_is_object(j))
        BAD("body", "must be a JSON object");
    json_object_foreach(j, key, v)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof app_members / sizeof app_members[0]; i++)
            if (strcmp(key, app_members[i]) == 0)
                known = 1;
        if (!known)
            BAD("body", "has an unknown member");
    }
    if (cv_validate_json_string(j, "account_id", &s) != CV_OK || s == NULL)
        BAD("account_id", "is required");
    if (cv_validate_account_id(s, &w) != CV_OK)
        BAD("account_id", w);
    snprintf(a->account_id, sizeof a->account_id, "%s", s);
    if (cv_validate_json_string(j, "applicant_type", &s) != CV_OK || s == NULL ||
        (strcmp(s, "personal") != 0 && strcmp(s, "enterprise") != 0))
        BAD("applicant_type", "must be personal or enterprise");
    snprintf(a->applicant_type, sizeof a->applicant_type, "%s", s);
    int enterprise = strcmp(s, "enterprise") == 0;
    if (cv_validate_json_string(j, "name", &s) != CV_OK || s == NULL)
        BAD("name", "is required");
    if (cv_validate_name(s, CV_NAME_MAX_CHARS, a->name, sizeof a->name, &w) != CV_OK)
        BAD("name", w);
    const char *id_type = NULL;
    if (cv_validate_json_string(j, "id_type", &id_type) != CV_OK || id_type == NULL ||
        (strcmp(id_type, "cn_resident_id") != 0 && strcmp(id_type, "passport") != 0))
        BAD("id_type", "must be cn_resident_id or passport");
    snprintf(a->id_type, sizeof a->id_type, "%s", id_type);
    if (cv_validate_json_string(j, "id_number", &s) != CV_OK || s == NULL)
        BAD("id_number", "is required");
    if (cv_validate_id_number(id_type, s, a->id_number, sizeof a->id_number, &w) != CV_OK)
        BAD("id_number", w);
    if (cv_validate_json_string(j, "mobile", &s) != CV_OK || s == NULL)
        BAD("mobile", "is required");
    if (cv_validate_mobile(s, a->mobile, &w) != CV_OK)
        BAD("mobile", w);
    if (cv_validate_json_string(j, "contact_mobile", &s) != CV_OK || s == NULL)
        BAD("contact_mobile", "is required");
    if (cv_validate_mobile(s, a->contact_mobile, &w) != CV_OK)
        BAD("contact_mobile", w);
    if (cv_validate_json_string(j, "enterprise_name", &s) != CV_OK)
        BAD("enterprise_name", "must be a string");
    if (s != NULL && !enterprise) {
        *field = "enterprise_name";
        *why = "is only for enterprise applicants";
        rc = CV_E_ACCOUNT_TYPE_MISMATCH;
        goto out;
    }
    if (enterprise && s == NULL)
        BAD("enterprise_name", "is required for an enterprise applicant");
    if (s != NULL && cv_validate_name(s, CV_ENTERPRISE_NAME_MAX_CHARS, a->enterprise_name,
                                      sizeof a->enterprise_name, &w) != CV_OK)
        BAD("enterprise_name", w);
    if (cv_validate_json_string(j, "uscc", &s) != CV_OK)
        BAD("uscc", "must be a string");
    if (s != NULL && !enterprise) {
        *field = "uscc";
        *why = "is only for enterprise applicants";
        rc = CV_E_ACCOUNT_TYPE_MISMATCH;
        goto out;
    }
    if (s != NULL && cv_validate_uscc(s, a->uscc, &w) != CV_OK)
        BAD("uscc", w);
    memcpy(out, a, sizeof *a);
    rc = CV_OK;
out:
    cv_case_application_free(a);
    return rc;
}

#undef BAD

/* ---- opening a case ---- */

static cv_status failures_count(struct cv_db *db, const char *account_id, int64_t since_ms,
                                int64_t *count)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT COUNT(*) FROM identity_failures WHERE account_id=? AND at_ms>?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since_ms);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    *count = sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

/* When will the count drop below max? The (count - max + 1)-th oldest
 * failure in the window must leave it. */
static cv_status retry_after(struct cv_db *db, const char *account_id,
                             const struct cv_case_policy *pol, int64_t count, int64_t *secs)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT at_ms FROM identity_failures WHERE account_id=? AND at_ms>? "
                           "ORDER BY at_ms LIMIT 1 OFFSET ?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, pol->now_ms - pol->failure_window_ms);
    sqlite3_bind_int64(st, 3, count - (int64_t)pol->max_failed);
    int src = sqlite3_step(st);
    int64_t at = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : pol->now_ms;
    int64_t ms = at + pol->failure_window_ms - pol->now_ms;
    *secs = ms <= 0 ? 1 : (ms + 999) / 1000;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

static cv_status exec_account(struct cv_db *db, const char *sql, const char *account_id,
                              int64_t num)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db), sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, num);
    rc = cv_db_step_done(st);
out:
    sqlite3_finalize(st);
    return rc;
}

static int bi_eq(const struct cv_account_info *a, int has, const uint8_t *rec_bi,
                 struct cv_keyring *kr, const char *column, const char *value, cv_status *err)
{
    uint8_t bi[CV_BLIND_BYTES];
    if (!has)
        return 0;
    (void)a;
    cv_status st = cv_account_blind(kr, column, value, bi);
    if (st != CV_OK) {
        *err = st;
        return 0;
    }
    int eq = sodium_memcmp(bi, rec_bi, CV_BLIND_BYTES) == 0;
    sodium_memzero(bi, sizeof bi);
    return eq;
}

/* Does the application match the record? Every field is compared (no early
 * exit), and only a yes/no leaves this function. */
static cv_status identity_matches(struct cv_keyring *kr, const struct cv_account_info *rec,
                                  const struct cv_case_application *app, int *match)
{
    cv_status err = CV_OK;
    int ok = strcmp(rec->id_type, app->id_type) == 0;
    ok &= bi_eq(rec, rec->has_name, rec->name_bi, kr, "name", app->name, &err);
    ok &= bi_eq(rec, rec->has_id_number, rec->id_number_bi, kr, "id_number", app->id_number, &err);
    ok &= bi_eq(rec, rec->has_mobile, rec->mobile_bi, kr, "mobile", app->mobile, &err);
    if (rec->type == CV_ACCOUNT_ENTERPRISE) {
        ok &= bi_eq(rec, rec->has_enterprise_name, rec->enterprise_name_bi, kr, "enterprise_name",
                    app->enterprise_name, &err);
        if (app->uscc[0])
            ok &= bi_eq(rec, rec->has_uscc, rec->uscc_bi, kr, "uscc", app->uscc, &err);
    }
    if (err != CV_OK)
        return err;
    *match = ok;
    return CV_OK;
}

/* Close the account's open draft if its token has expired; CV_E_CASE_OPEN if
 * another open case remains. */
static cv_status check_open_case(struct cv_db *db, const char *account_id,
                                 const struct cv_case_policy *pol)
{
    static const struct cv_case_actor sys = {"system", "system", NULL, NULL};
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    char id[CV_ULID_LEN + 1];
    char now[CV_TIME_LEN + 1];
    enum cv_case_status s, to;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT id, status, created_ms FROM cases WHERE account_id=? AND "
                           "status IN ('draft','submitted','needs_resubmission',"
                           "'approval_pending')",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK) {
        if (rc == CV_E_NOT_FOUND)
            rc = CV_OK; /* no open case */
        goto out;
    }
    copy_col(st, 0, id, sizeof id);
    if (cv_case_status_parse((const char *)sqlite3_column_text(st, 1), &s) != CV_OK) {
        rc = CV_E_DB;
        goto out;
    }
    int64_t created = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    st = NULL;
    if (next_status(s, EV_EXPIRE, &to) != CV_OK || created + pol->token_ttl_ms > pol->now_ms) {
        rc = CV_E_CASE_OPEN;
        goto out;
    }
    cv_time_format(pol->now_ms, now);
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "UPDATE cases SET status=?, updated_at=? WHERE id=? AND status=?", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, cv_case_status_str(to), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cv_case_status_str(s), -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    rc = audit(db, "case.expire", &sys, id, NULL, NULL,
               json_pack("{s:s,s:s}", "from", cv_case_status_str(s), "to", cv_case_status_str(to)));
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_case_open(struct cv_db *db, struct cv_keyring *kr,
                       const struct cv_case_application *app, const struct cv_case_policy *pol,
                       const struct cv_case_actor *actor, char case_id[CV_ULID_LEN + 1],
                       char token[CV_TOKEN_TEXT_LEN + 1], int64_t *retry_after_s)
{
    cv_status rc;
    struct cv_account_info rec;
    sqlite3_stmt *st = NULL;
    uint8_t *enc[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    char id[CV_ULID_LEN + 1];
    char tok[CV_TOKEN_TEXT_LEN + 1];
    char tok_id[CV_ULID_LEN + 1];
    char tok_name[40];
    char now[CV_TIME_LEN + 1];
    int64_t failures = 0;
    int match = 0;

    memset(tok, 0, sizeof tok);
    if ((rc = cv_account_get(db, app->account_id, &rec)) != CV_OK)
        goto out;
    if (rec.type == CV_ACCOUNT_SUB) {
        rc = CV_E_SUB_ACCOUNT;
        goto out;
    }
    if (!rec.real_name_verified) {
        rc = CV_E_REAL_NAME_UNVERIFIED;
        goto out;
    }
    int64_t since = pol->now_ms - pol->failure_window_ms;
    if ((rc = exec_account(db, "DELETE FROM identity_failures WHERE account_id=?1 AND at_ms<=?2",
                           app->account_id, since)) != CV_OK)
        goto out;
    if ((rc = failures_count(db, app->account_id, since, &failures)) != CV_OK)
        goto out;
    if (pol->max_failed > 0 && failures >= (int64_t)pol->max_failed) {
        int64_t secs = 0;
        if ((rc = retry_after(db, app->account_id, pol, failures, &secs)) != CV_OK)
            goto out;
        *retry_after_s = secs;
        rc = CV_E_TOO_MANY_ATTEMPTS;
        goto out;
    }
    int type_ok = strcmp(cv_account_type_str(rec.type), app->applicant_type) == 0;
    if (type_ok && (rc = identity_matches(kr, &rec, app, &match)) != CV_OK)
        goto out;
    if (!type_ok || !match) {
        cv_status refusal = type_ok ? CV_E_IDENTITY_MISMATCH : CV_E_ACCOUNT_TYPE_MISMATCH;
        if ((rc = exec_account(db, "INSERT INTO identity_failures(account_id, at_ms) VALUES(?1,?2)",
                               app->account_id, pol->now_ms)) != CV_OK)
            goto out;
        if ((rc = audit(db, "case.identity_check", actor, NULL, NULL, "refused",
                        json_pack("{s:s,s:I}", "account_id", app->account_id, "failures",
                                  (json_int_t)(failures + 1)))) != CV_OK)
            goto out;
        rc = refusal;
        goto out;
    }
    if (!rec.mfa_bound) {
        rc = CV_E_MFA_NOT_BOUND;
        goto out;
    }
    if ((rc = check_open_case(db, app->account_id, pol)) != CV_OK)
        goto out;
    if ((rc = exec_account(db, "DELETE FROM identity_failures WHERE account_id=?1 AND ?2>=0",
                           app->account_id, 0)) != CV_OK)
        goto out;
    cv_ulid_new(id);
    cv_time_format(pol->now_ms, now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "INSERT INTO cases(id, account_id, applicant_type, status, id_type, "
                           "name_enc, id_number_enc, mobile_enc, contact_mobile_enc, "
                           "enterprise_name_enc, uscc_enc, created_ms, created_at, updated_at) "
                           "VALUES(?1,?2,?3,'draft',?4,?5,?6,?7,?8,?9,?10,?11,?12,?12)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, app->account_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, app->applicant_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, app->id_type, -1, SQLITE_STATIC);
    const char *cols[6] = {"name",           "id_number",       "mobile",
                           "contact_mobile", "enterprise_name", "uscc"};
    const char *vals[6] = {app->name,           app->id_number,       app->mobile,
                           app->contact_mobile, app->enterprise_name, app->uscc};
    for (int i = 0; i < 6; i++)
        if ((rc = bind_sealed(kr, st, 5 + i, "cases", cols[i], id, vals[i], &enc[i])) != CV_OK)
            goto out;
    sqlite3_bind_int64(st, 11, pol->now_ms);
    sqlite3_bind_text(st, 12, now, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK) {
        if (rc == CV_E_DB && sqlite3_extended_errcode(cv_db_writer(db)) == SQLITE_CONSTRAINT_UNIQUE)
            rc = CV_E_CASE_OPEN;
        goto out;
    }
    snprintf(tok_name, sizeof tok_name, "case-%s", id);
    if ((rc = cv_token_create(db, kr, CV_ROLE_APPLICANT, tok_name, id,
                              pol->now_ms + pol->token_ttl_ms, tok, tok_id)) != CV_OK)
        goto out;
    if ((rc = audit(db, "case.create", actor, id, id, NULL,
                    json_pack("{s:s,s:s,s:s,s:s}", "account_id", app->account_id, "applicant_type",
                              app->applicant_type, "status", "draft", "token_id", tok_id))) !=
        CV_OK)
        goto out;
    memcpy(case_id, id, sizeof id);
    memcpy(token, tok, sizeof tok);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    for (int i = 0; i < 6; i++)
        free(enc[i]);
    sodium_memzero(tok, sizeof tok);
    sodium_memzero(&rec, sizeof rec);
    return rc;
}

/* ---- reading ---- */

static sqlite3 *conn_get(struct cv_db *db, int in_txn)
{
    return in_txn ? cv_db_writer(db) : cv_db_reader_get(db);
}

static void conn_put(struct cv_db *db, int in_txn, sqlite3 *c)
{
    if (!in_txn && c != NULL)
        cv_db_reader_put(db, c);
}

#define CASE_COLUMNS                                                                               \
    "id, account_id, applicant_type, status, id_type, round, resubmit_kinds, first_approver, "     \
    "decision, decided_by, created_at, updated_at"

static cv_status row_to_case(sqlite3_stmt *st, struct cv_case_info *c)
{
    memset(c, 0, sizeof *c);
    copy_col(st, 0, c->id, sizeof c->id);
    copy_col(st, 1, c->account_id, sizeof c->account_id);
    copy_col(st, 2, c->applicant_type, sizeof c->applicant_type);
    if (cv_case_status_parse((const char *)sqlite3_column_text(st, 3), &c->status) != CV_OK)
        return CV_E_DB;
    copy_col(st, 4, c->id_type, sizeof c->id_type);
    c->round = sqlite3_column_int64(st, 5);
    copy_col(st, 6, c->resubmit_kinds, sizeof c->resubmit_kinds);
    copy_col(st, 7, c->first_approver, sizeof c->first_approver);
    copy_col(st, 8, c->decision, sizeof c->decision);
    copy_col(st, 9, c->decided_by, sizeof c->decided_by);
    copy_col(st, 10, c->created_at, sizeof c->created_at);
    copy_col(st, 11, c->updated_at, sizeof c->updated_at);
    return CV_OK;
}

cv_status cv_case_get(struct cv_db *db, int in_txn, const char *case_id, struct cv_case_info *out)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    sqlite3 *c = conn_get(db, in_txn);
    struct cv_case_info info;
    if (sqlite3_prepare_v2(c, "SELECT " CASE_COLUMNS " FROM cases WHERE id=?", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    if ((rc = row_to_case(st, &info)) != CV_OK)
        goto out;
    *out = info;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    conn_put(db, in_txn, c);
    return rc;
}

cv_status cv_case_list(struct cv_db *db, const enum cv_case_status *status, const char *cursor,
                       unsigned limit, int (*fn)(const struct cv_case_info *c, void *arg),
                       void *arg, char next_cursor[CV_ULID_LEN + 1])
{
    cv_status rc = CV_E_ARG;
    sqlite3_stmt *st = NULL;
    sqlite3 *c = NULL;
    struct cv_case_info info;
    unsigned n = 0;
    char last[CV_ULID_LEN + 1] = "";
    int more = 0;

    if (limit < 1 || limit > 200)
        goto out;
    c = cv_db_reader_get(db);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "SELECT " CASE_COLUMNS " FROM cases WHERE (?1 IS NULL OR status=?1) "
                           "AND (?2 IS NULL OR id<?2) ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (status)
        sqlite3_bind_text(st, 1, cv_case_status_str(*status), -1, SQLITE_STATIC);
    if (cursor)
        sqlite3_bind_text(st, 2, cursor, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)limit + 1);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            more = 1;
            break;
        }
        if ((rc = row_to_case(st, &info)) != CV_OK)
            goto out;
        n++;
        memcpy(last, info.id, sizeof last);
        if (fn(&info, arg) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = cv_db_status(src);
        goto out;
    }
    memcpy(next_cursor, more ? last : "", more ? sizeof last : 1);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    if (c != NULL)
        cv_db_reader_put(db, c);
    return rc;
}

cv_status cv_case_identity_read(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                                const struct cv_case_actor *actor, struct cv_case_identity *out)
{
    static const char *const cols[6] = {"name",           "id_number",       "mobile",
                                        "contact_mobile", "enterprise_name", "uscc"};
    cv_status rc = CV_E_NOMEM;
    sqlite3_stmt *st = NULL;
    struct cv_case_identity *idn = sodium_malloc(sizeof *idn);
    char *dst[6];
    size_t cap[6];

    if (idn == NULL)
        goto out;
    memset(idn, 0, sizeof *idn);
    dst[0] = idn->name, cap[0] = sizeof idn->name;
    dst[1] = idn->id_number, cap[1] = sizeof idn->id_number;
    dst[2] = idn->mobile, cap[2] = sizeof idn->mobile;
    dst[3] = idn->contact_mobile, cap[3] = sizeof idn->contact_mobile;
    dst[4] = idn->enterprise_name, cap[4] = sizeof idn->enterprise_name;
    dst[5] = idn->uscc, cap[5] = sizeof idn->uscc;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT name_enc, id_number_enc, mobile_enc, contact_mobile_enc, "
                           "enterprise_name_enc, uscc_enc FROM cases WHERE id=?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    for (int i = 0; i < 6; i++) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
            continue;
        char *plain = NULL;
        size_t plen = 0;
        rc = cv_field_open(kr, "cases", cols[i], case_id, sqlite3_column_blob(st, i),
                           (size_t)sqlite3_column_bytes(st, i), &plain, &plen);
        if (rc != CV_OK)
            goto out;
        if (plen + 1 > cap[i]) {
            sodium_memzero(plain, plen);
            free(plain);
            rc = CV_E_CRYPTO;
            goto out;
        }
        memcpy(dst[i], plain, plen + 1);
        sodium_memzero(plain, plen);
        free(plain);
    }
    if ((rc = audit(db, "case.view", actor, case_id, case_id, NULL,
                    json_pack("{s:s}", "fields", "identity"))) != CV_OK)
        goto out;
    memcpy(out, idn, sizeof *idn);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    if (idn != NULL)
        sodium_free(idn);
    return rc;
}

/* ---- documents ---- */

static int hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static int short_text(const char *s, size_t max)
{
    return s != NULL && s[0] != '\0' && strlen(s) < max;
}

static int kind_in_list(const char *list, const char *kind)
{
    size_t k = strlen(kind);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == k && strncmp(p, kind, k) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int kind_required(const char *applicant_type, const char *kind)
{
    unsigned n = 0;
    const char *const *k = cv_case_required_kinds(applicant_type, &n);
    for (unsigned i = 0; kind && i < n; i++)
        if (strcmp(k[i], kind) == 0)
            return 1;
    return 0;
}

cv_status cv_case_document_add(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                               const struct cv_document_new *doc, char doc_id[CV_ULID_LEN + 1],
                               char superseded_id[CV_ULID_LEN + 1])
{
    cv_status rc = CV_E_ARG;
    struct cv_case_info c;
    struct cv_document_info prev;
    sqlite3_stmt *st = NULL;
    uint8_t *fn_enc = NULL;
    char id[CV_ULID_LEN + 1];
    char sup[CV_ULID_LEN + 1] = "";
    char now[CV_TIME_LEN + 1];

    if (doc == NULL || !short_text(doc->original_blob_id, sizeof prev.original_blob_id) ||
        !short_text(doc->normalized_blob_id, sizeof prev.normalized_blob_id) ||
        !short_text(doc->source_format, sizeof prev.source_format) ||
        !hex64(doc->original_sha256) || !hex64(doc->normalized_sha256) || doc->original_size < 0 ||
        doc->width <= 0 || doc->height <= 0 || doc->orientation_applied < 1 ||
        doc->orientation_applied > 8)
        goto out;
    if ((rc = cv_case_get(db, 1, case_id, &c)) != CV_OK)
        goto out;
    if (!kind_required(c.applicant_type, doc->kind)) {
        rc = CV_E_INVALID_FIELD;
        goto out;
    }
    if (!cv_case_uploads_allowed(c.status) ||
        (c.status == CV_CASE_NEEDS_RESUBMISSION && !kind_in_list(c.resubmit_kinds, doc->kind))) {
        rc = CV_E_INVALID_TRANSITION;
        goto out;
    }
    rc = cv_case_document_latest(db, 1, case_id, doc->kind, &prev);
    if (rc == CV_OK)
        memcpy(sup, prev.id, sizeof sup);
    else if (rc != CV_E_NOT_FOUND)
        goto out;
    rc = CV_E_DB;
    if (sup[0]) {
        if (sqlite3_prepare_v2(cv_db_writer(db), "UPDATE documents SET superseded=1 WHERE id=?", -1,
                               &st, NULL) != SQLITE_OK)
            goto out;
        sqlite3_bind_text(st, 1, sup, -1, SQLITE_STATIC);
        if ((rc = cv_db_step_done(st)) != CV_OK)
            goto out;
        sqlite3_finalize(st);
        st = NULL;
    }
    cv_ulid_new(id);
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "INSERT INTO documents(id, case_id, kind, original_blob_id, "
                           "normalized_blob_id, source_format, original_size, original_sha256, "
                           "normalized_sha256, width, height, orientation_applied, file_name_enc, "
                           "round, created_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, doc->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, doc->original_blob_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, doc->normalized_blob_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, doc->source_format, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, doc->original_size);
    sqlite3_bind_text(st, 8, doc->original_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, doc->normalized_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, doc->width);
    sqlite3_bind_int64(st, 11, doc->height);
    sqlite3_bind_int(st, 12, doc->orientation_applied);
    if ((rc = bind_sealed(kr, st, 13, "documents", "file_name", id, doc->file_name, &fn_enc)) !=
        CV_OK)
        goto out;
    sqlite3_bind_int64(st, 14, c.round);
    sqlite3_bind_text(st, 15, now, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    memcpy(doc_id, id, sizeof id);
    memcpy(superseded_id, sup, sizeof sup);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    free(fn_enc);
    return rc;
}

/* One document row of case_id: WHERE case_id=?1 AND <where> with ?2 = arg. */
static cv_status document_query(struct cv_db *db, int in_txn, const char *case_id,
                                const char *where, const char *arg, struct cv_document_info *out)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    sqlite3 *c = conn_get(db, in_txn);
    struct cv_document_info d;
    char sql[512];
    memset(&d, 0, sizeof d);
    snprintf(sql, sizeof sql,
             "SELECT id, kind, source_format, original_size, original_sha256, "
             "normalized_sha256, original_blob_id, normalized_blob_id, width, height, "
             "orientation_applied, round, created_at FROM documents WHERE case_id=?1 AND %s",
             where);
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, arg, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    copy_col(st, 0, d.id, sizeof d.id);
    copy_col(st, 1, d.kind, sizeof d.kind);
    copy_col(st, 2, d.source_format, sizeof d.source_format);
    d.original_size = sqlite3_column_int64(st, 3);
    copy_col(st, 4, d.original_sha256, sizeof d.original_sha256);
    copy_col(st, 5, d.normalized_sha256, sizeof d.normalized_sha256);
    copy_col(st, 6, d.original_blob_id, sizeof d.original_blob_id);
    copy_col(st, 7, d.normalized_blob_id, sizeof d.normalized_blob_id);
    d.width = sqlite3_column_int64(st, 8);
    d.height = sqlite3_column_int64(st, 9);
    d.orientation_applied = sqlite3_column_int(st, 10);
    d.round = sqlite3_column_int64(st, 11);
    copy_col(st, 12, d.created_at, sizeof d.created_at);
    *out = d;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    conn_put(db, in_txn, c);
    return rc;
}

cv_status cv_case_document_latest(struct cv_db *db, int in_txn, const char *case_id,
                                  const char *kind, struct cv_document_info *out)
{
    return document_query(db, in_txn, case_id, "kind=?2 AND superseded=0 ORDER BY id DESC LIMIT 1",
                          kind, out);
}

cv_status cv_case_document_get(struct cv_db *db, int in_txn, const char *case_id,
                               const char *doc_id, struct cv_document_info *out)
{
    return document_query(db, in_txn, case_id, "id=?2", doc_id, out);
}

/* ---- transitions ---- */

static void list_append(char *list, size_t cap, const char *kind)
{
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%s", n ? "," : "", kind);
}

cv_status cv_case_submit(struct cv_db *db, const char *case_id, const struct cv_case_actor *actor,
                         char missing[CV_KIND_LIST_MAX])
{
    cv_status rc;
    struct cv_case_info c;
    struct cv_document_info d;
    enum cv_case_status to;
    sqlite3_stmt *st = NULL;
    char miss[CV_KIND_LIST_MAX] = "";
    char now[CV_TIME_LEN + 1];
    unsigned n = 0;
    json_t *docs = NULL;

    if ((rc = cv_case_get(db, 1, case_id, &c)) != CV_OK)
        goto out;
    if ((rc = next_status(c.status, EV_SUBMIT, &to)) != CV_OK)
        goto out;
    const char *const *kinds = cv_case_required_kinds(c.applicant_type, &n);
    docs = json_array();
    for (unsigned i = 0; i < n; i++) {
        rc = cv_case_document_latest(db, 1, case_id, kinds[i], &d);
        if (rc == CV_E_NOT_FOUND ||
            (rc == CV_OK && c.status == CV_CASE_NEEDS_RESUBMISSION &&
             kind_in_list(c.resubmit_kinds, kinds[i]) && d.round != c.round)) {
            list_append(miss, sizeof miss, kinds[i]);
            continue;
        }
        if (rc != CV_OK)
            goto out;
        json_array_append_new(docs, json_string(d.id));
    }
    if (miss[0]) {
        memcpy(missing, miss, sizeof miss);
        rc = CV_E_MISSING_DOCUMENTS;
        goto out;
    }
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "UPDATE cases SET status=?, resubmit_kinds=NULL, updated_at=? "
                           "WHERE id=? AND status=?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, cv_case_status_str(to), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cv_case_status_str(c.status), -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    rc = audit(db, "case.submit", actor, case_id, case_id, NULL,
               json_pack("{s:s,s:s,s:o}", "from", cv_case_status_str(c.status), "to",
                         cv_case_status_str(to), "documents", docs));
    docs = NULL;
out:
    json_decref(docs);
    sqlite3_finalize(st);
    return rc;
}

/* Canonical comma list of the kinds asked for again: each must be required
 * by the case; duplicates are dropped; order is the required order. */
static cv_status parse_kinds(const char *applicant_type, const char *kinds,
                             char out[CV_KIND_LIST_MAX])
{
    unsigned n = 0;
    const char *const *req = cv_case_required_kinds(applicant_type, &n);
    char list[CV_KIND_LIST_MAX] = "";
    if (kinds == NULL || !kinds[0] || strlen(kinds) >= CV_KIND_LIST_MAX)
        return CV_E_INVALID_FIELD;
    for (const char *p = kinds; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int ok = 0;
        for (unsigned i = 0; i < n; i++)
            if (strlen(req[i]) == len && strncmp(req[i], p, len) == 0)
                ok = 1;
        if (!ok)
            return CV_E_INVALID_FIELD;
        p = e ? e + 1 : NULL;
    }
    for (unsigned i = 0; i < n; i++)
        if (kind_in_list(kinds, req[i]))
            list_append(list, sizeof list, req[i]);
    memcpy(out, list, sizeof list);
    return CV_OK;
}

static const char *decision_str(enum cv_decision d)
{
    switch (d) {
    case CV_DECISION_APPROVE: return "approve";
    case CV_DECISION_REJECT: return "reject";
    case CV_DECISION_RESUBMIT: return "resubmit";
    }
    return "?";
}

cv_status cv_case_decide(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                         enum cv_decision decision, const char *reason, const char *kinds,
                         int four_eyes, int64_t reopen_until_ms, const struct cv_case_actor *actor,
                         enum cv_case_status *new_status)
{
    cv_status rc;
    struct cv_case_info c;
    enum cv_case_status to;
    enum case_event ev;
    sqlite3_stmt *st = NULL;
    uint8_t *reason_enc = NULL;
    char klist[CV_KIND_LIST_MAX] = "";
    char now[CV_TIME_LEN + 1];

    if ((rc = cv_case_get(db, 1, case_id, &c)) != CV_OK)
        goto out;
    switch (decision) {
    case CV_DECISION_APPROVE:
        ev = (four_eyes && c.status == CV_CASE_SUBMITTED) ? EV_APPROVE_FIRST : EV_APPROVE;
        break;
    case CV_DECISION_REJECT: ev = EV_REJECT; break;
    case CV_DECISION_RESUBMIT: ev = EV_RESUBMIT; break;
    default: rc = CV_E_ARG; goto out;
    }
    if ((rc = next_status(c.status, ev, &to)) != CV_OK)
        goto out;
    /* Four-eyes: the second approval must come from someone else. */
    if (ev == EV_APPROVE && c.status == CV_CASE_APPROVAL_PENDING &&
        strcmp(c.first_approver, actor->id) == 0) {
        rc = CV_E_INVALID_TRANSITION;
        goto out;
    }
    if (decision != CV_DECISION_APPROVE && (reason == NULL || !reason[0])) {
        rc = CV_E_INVALID_FIELD;
        goto out;
    }
    if (decision == CV_DECISION_RESUBMIT &&
        (rc = parse_kinds(c.applicant_type, kinds, klist)) != CV_OK)
        goto out;
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "UPDATE cases SET status=?1, decision=?2, decided_by=?3, reason_enc=?4, "
                           "first_approver=?5, round=round+?6, resubmit_kinds=?7, updated_at=?8 "
                           "WHERE id=?9 AND status=?10",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, cv_case_status_str(to), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, decision_str(decision), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, actor->id, -1, SQLITE_STATIC);
    if ((rc = bind_sealed(kr, st, 4, "cases", "reason", case_id, reason, &reason_enc)) != CV_OK)
        goto out;
    if (ev == EV_APPROVE_FIRST)
        sqlite3_bind_text(st, 5, actor->id, -1, SQLITE_STATIC);
    else if (ev == EV_APPROVE && c.first_approver[0])
        sqlite3_bind_text(st, 5, c.first_approver, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, decision == CV_DECISION_RESUBMIT ? 1 : 0);
    if (klist[0])
        sqlite3_bind_text(st, 7, klist, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, cv_case_status_str(c.status), -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    json_t *details = json_pack("{s:s,s:s,s:s}", "decision", decision_str(decision), "from",
                                cv_case_status_str(c.status), "to", cv_case_status_str(to));
    if (klist[0])
        json_object_set_new(details, "kinds", json_string(klist));
    if (decision == CV_DECISION_RESUBMIT && reopen_until_ms > 0) {
        sqlite3_finalize(st);
        st = NULL;
        rc = CV_E_DB;
        if (sqlite3_prepare_v2(cv_db_writer(db),
                               "UPDATE tokens SET expires_at=MAX(expires_at, ?) WHERE case_id=? "
                               "AND role='applicant' AND revoked_at IS NULL AND expires_at IS NOT "
                               "NULL",
                               -1, &st, NULL) != SQLITE_OK) {
            json_decref(details);
            goto out;
        }
        sqlite3_bind_int64(st, 1, reopen_until_ms);
        sqlite3_bind_text(st, 2, case_id, -1, SQLITE_STATIC);
        if ((rc = cv_db_step_done(st)) != CV_OK) {
            json_decref(details);
            goto out;
        }
        char until[CV_TIME_LEN + 1];
        cv_time_format(reopen_until_ms, until);
        json_object_set_new(details, "token_expires_at", json_string(until));
    }
    if (ev == EV_APPROVE_FIRST)
        json_object_set_new(details, "four_eyes", json_string("first_approval"));
    else if (ev == EV_APPROVE && c.first_approver[0])
        json_object_set_new(details, "first_approver", json_string(c.first_approver));
    if ((rc = audit(db, "case.decide", actor, case_id, case_id, NULL, details)) != CV_OK)
        goto out;
    if (to == CV_CASE_APPROVED) {
        if ((rc = cv_account_set_mfa_bound(db, c.account_id, 0)) != CV_OK)
            goto out;
        if ((rc = audit(db, "mfa.unbind", actor, case_id, c.account_id, NULL,
                        json_pack("{s:s}", "account_id", c.account_id))) != CV_OK)
            goto out;
    }
    *new_status = to;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    free(reason_enc);
    return rc;
}

cv_status cv_case_close(struct cv_db *db, const char *case_id, const struct cv_case_actor *actor)
{
    cv_status rc;
    struct cv_case_info c;
    enum cv_case_status to;
    sqlite3_stmt *st = NULL;
    char now[CV_TIME_LEN + 1];

    if ((rc = cv_case_get(db, 1, case_id, &c)) != CV_OK)
        goto out;
    if ((rc = next_status(c.status, EV_CLOSE, &to)) != CV_OK)
        goto out;
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "UPDATE cases SET status=?, updated_at=? WHERE id=? AND status=?", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, cv_case_status_str(to), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cv_case_status_str(c.status), -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    rc = audit(
        db, "case.close", actor, case_id, case_id, NULL,
        json_pack("{s:s,s:s}", "from", cv_case_status_str(c.status), "to", cv_case_status_str(to)));
out:
    sqlite3_finalize(st);
    return rc;
}
