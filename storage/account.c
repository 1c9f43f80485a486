/*
 * storage/account: real-name records, sealed per column with blind indexes.
 *
 * DESIGN NOTES
 * 1. A record's PII exists in the database only as *_enc (AEAD, associated
 *    data "accounts/<column>/<account_id>") and *_bi (blind index of the
 *    canonical value). Plaintext lives only in sodium_malloc'd records.
 * 2. Upserts are idempotent: an equal record (same flags, same blind
 *    indexes) is not rewritten, so re-importing a file changes nothing and
 *    appends no audit entry.
 * 3. Validation happens before any write: a record that fails validation
 *    never reaches the database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/account.h"
#include "casevault/keyring.h"
#include "casevault/util.h"
#include "db_internal.h"

const char *cv_account_type_str(enum cv_account_type t)
{
    switch (t) {
    case CV_ACCOUNT_PERSONAL: return "personal";
    case CV_ACCOUNT_ENTERPRISE: return "enterprise";
    case CV_ACCOUNT_SUB: return "sub";
    }
    return "?";
}

const char *cv_account_upsert_str(enum cv_upsert_result r)
{
    switch (r) {
    case CV_UPSERT_CREATED: return "created";
    case CV_UPSERT_UPDATED: return "updated";
    case CV_UPSERT_UNCHANGED: return "unchanged";
    }
    return "?";
}

struct cv_account_record *cv_account_record_new(void)
{
    struct cv_account_record *r = sodium_malloc(sizeof *r);
    if (r != NULL)
        memset(r, 0, sizeof *r);
    return r;
}

void cv_account_record_free(struct cv_account_record *r)
{
    if (r != NULL)
        sodium_free(r); /* sodium_free wipes before unmapping */
}

static const char *const record_members[] = {
    "account_id",
    "type",
    "primary_account_id",
    "real_name_verified",
    "name",
    "id_type",
    "id_number",
    "uscc",
    "enterprise_name",
    "mobile",
    "mfa_bound",
};

static int present(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    return v != NULL && !json_is_null(v);
}

/* String member: CV_OK with *s NULL when absent or null; CV_E_INVALID_FIELD
 * when present but not a string. */
#define BAD(f, w)                                                                                  \
    do {                                                                                           \
        *field = (f);                                                                              \
        *why = (w);                                                                                \
        rc = CV_E_INVALID_FIELD;                                                                   \
        goto out;                                                                                  \
    } while (0)

cv_status cv_account_record_from_json(json_t *j, const char *path_account_id,
                                      struct cv_account_record *out, const char **field,
                                      const char **why)
{
    cv_status rc = CV_E_INVALID_FIELD;
    struct cv_account_record *r = cv_account_record_new();
    const char *s = NULL, *w = NULL;
    const char *key;
    json_t *v;

    if (r == NULL)
        return CV_E_NOMEM;
    if (!json_is_object(j))
        BAD("record", "must be a JSON object");
    json_object_foreach(j, key, v)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof record_members / sizeof record_members[0]; i++)
            if (strcmp(key, record_members[i]) == 0)
                known = 1;
        if (!known)
            BAD("record", "has an unknown member");
    }
    /* account_id */
    if (cv_validate_json_string(j, "account_id", &s) != CV_OK)
        BAD("account_id", "must be a string");
    if (path_account_id != NULL) {
        if (s != NULL && strcmp(s, path_account_id) != 0)
            BAD("account_id", "must equal the account id in the path");
        s = path_account_id;
    }
    if (s == NULL)
        BAD("account_id", "is required");
    if (cv_validate_account_id(s, &w) != CV_OK)
        BAD("account_id", w);
    snprintf(r->account_id, sizeof r->account_id, "%s", s);
    /* type */
    if (cv_validate_json_string(j, "type", &s) != CV_OK || s == NULL)
        BAD("type", "must be personal, enterprise or sub");
    if (strcmp(s, "personal") == 0)
        r->type = CV_ACCOUNT_PERSONAL;
    else if (strcmp(s, "enterprise") == 0)
        r->type = CV_ACCOUNT_ENTERPRISE;
    else if (strcmp(s, "sub") == 0)
        r->type = CV_ACCOUNT_SUB;
    else
        BAD("type", "must be personal, enterprise or sub");
    /* flags */
    v = json_object_get(j, "real_name_verified");
    if (!json_is_boolean(v))
        BAD("real_name_verified", "must be true or false");
    r->real_name_verified = json_is_true(v);
    v = json_object_get(j, "mfa_bound");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
        BAD("mfa_bound", "must be true or false");
    r->mfa_bound = json_is_true(v);
    /* primary_account_id: sub-accounts only */
    if (cv_validate_json_string(j, "primary_account_id", &s) != CV_OK)
        BAD("primary_account_id", "must be a string");
    if (r->type == CV_ACCOUNT_SUB) {
        if (s == NULL)
            BAD("primary_account_id", "is required for a sub-account");
        if (cv_validate_account_id(s, &w) != CV_OK)
            BAD("primary_account_id", w);
        if (strcmp(s, r->account_id) == 0)
            BAD("primary_account_id", "must differ from account_id");
        snprintf(r->primary_account_id, sizeof r->primary_account_id, "%s", s);
    } else if (s != NULL) {
        BAD("primary_account_id", "is only for sub-accounts");
    }
    /* enterprise fields only on enterprise records */
    if (r->type != CV_ACCOUNT_ENTERPRISE) {
        if (present(j, "enterprise_name"))
            BAD("enterprise_name", "is only for enterprise records");
        if (present(j, "uscc"))
            BAD("uscc", "is only for enterprise records");
    }
    /* identity */
    const char *id_type = NULL;
    if (cv_validate_json_string(j, "id_type", &id_type) != CV_OK)
        BAD("id_type", "must be cn_resident_id or passport");
    if (id_type != NULL && strcmp(id_type, "cn_resident_id") != 0 &&
        strcmp(id_type, "passport") != 0)
        BAD("id_type", "must be cn_resident_id or passport");
    if (cv_validate_json_string(j, "id_number", &s) != CV_OK)
        BAD("id_number", "must be a string");
    if ((s != NULL) != (id_type != NULL))
        BAD(s ? "id_type" : "id_number", "id_type and id_number go together");
    if (s != NULL) {
        if (cv_validate_id_number(id_type, s, r->id_number, sizeof r->id_number, &w) != CV_OK)
            BAD("id_number", w);
        snprintf(r->id_type, sizeof r->id_type, "%s", id_type);
    }
    if (cv_validate_json_string(j, "name", &s) != CV_OK)
        BAD("name", "must be a string");
    if (s != NULL && cv_validate_name(s, CV_NAME_MAX_CHARS, r->name, sizeof r->name, &w) != CV_OK)
        BAD("name", w);
    if (cv_validate_json_string(j, "mobile", &s) != CV_OK)
        BAD("mobile", "must be a string");
    if (s != NULL && cv_validate_mobile(s, r->mobile, &w) != CV_OK)
        BAD("mobile", w);
    if (cv_validate_json_string(j, "enterprise_name", &s) != CV_OK)
        BAD("enterprise_name", "must be a string");
    if (s != NULL && cv_validate_name(s, CV_ENTERPRISE_NAME_MAX_CHARS, r->enterprise_name,
                                      sizeof r->enterprise_name, &w) != CV_OK)
        BAD("enterprise_name", w);
    if (cv_validate_json_string(j, "uscc", &s) != CV_OK)
        BAD("uscc", "must be a string");
    if (s != NULL && cv_validate_uscc(s, r->uscc, &w) != CV_OK)
        BAD("uscc", w);
    /* A verified personal/enterprise record carries the whole identity. */
    if (r->real_name_verified && r->type != CV_ACCOUNT_SUB) {
        if (!r->name[0])
            BAD("name", "is required for a verified record");
        if (!r->id_number[0])
            BAD("id_number", "is required for a verified record");
        if (!r->mobile[0])
            BAD("mobile", "is required for a verified record");
        if (r->type == CV_ACCOUNT_ENTERPRISE && !r->enterprise_name[0])
            BAD("enterprise_name", "is required for a verified enterprise record");
        if (r->type == CV_ACCOUNT_ENTERPRISE && !r->uscc[0])
            BAD("uscc", "is required for a verified enterprise record");
    }
    memcpy(out, r, sizeof *r);
    rc = CV_OK;
out:
    cv_account_record_free(r);
    return rc;
}

#undef BAD

static enum cv_field_kind column_kind(const char *column)
{
    if (strcmp(column, "name") == 0 || strcmp(column, "enterprise_name") == 0)
        return CV_FIELD_NAME;
    if (strcmp(column, "mobile") == 0)
        return CV_FIELD_DIGITS;
    return CV_FIELD_ID_NUMBER;
}

cv_status cv_account_blind(struct cv_keyring *kr, const char *column, const char *value,
                           uint8_t out[CV_BLIND_BYTES])
{
    return cv_field_blind_index(kr, "accounts", column, column_kind(column), value, out);
}

/* The five sealed columns, in the order of the statements below. */
static const char *const pii_columns[5] = {"name", "id_number", "enterprise_name", "uscc",
                                           "mobile"};

static const char *pii_value(const struct cv_account_record *r, int i)
{
    switch (i) {
    case 0: return r->name;
    case 1: return r->id_number;
    case 2: return r->enterprise_name;
    case 3: return r->uscc;
    default: return r->mobile;
    }
}

static int blob_eq(sqlite3_stmt *st, int col, const uint8_t *bi, int has)
{
    if (!has)
        return sqlite3_column_type(st, col) == SQLITE_NULL;
    return sqlite3_column_bytes(st, col) == CV_BLIND_BYTES &&
           sodium_memcmp(sqlite3_column_blob(st, col), bi, CV_BLIND_BYTES) == 0;
}

static int text_eq(sqlite3_stmt *st, int col, const char *s)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    if (s == NULL || !s[0])
        return t == NULL;
    return t != NULL && strcmp(t, s) == 0;
}

cv_status cv_account_upsert(struct cv_db *db, struct cv_keyring *kr,
                            const struct cv_account_record *r, enum cv_upsert_result *result)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = cv_db_writer(db);
    sqlite3_stmt *st = NULL;
    uint8_t bi[5][CV_BLIND_BYTES];
    uint8_t *enc[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t enc_len[5] = {0, 0, 0, 0, 0};
    char now[CV_TIME_LEN + 1];
    int exists = 0;

    for (int i = 0; i < 5; i++) {
        const char *v = pii_value(r, i);
        if (!v[0])
            continue;
        if ((rc = cv_account_blind(kr, pii_columns[i], v, bi[i])) != CV_OK)
            goto out;
    }
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "SELECT type, primary_account_id, real_name_verified, id_type, "
                           "mfa_bound, name_bi, id_number_bi, enterprise_name_bi, uscc_bi, "
                           "mobile_bi FROM accounts WHERE account_id=?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, r->account_id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        exists = 1;
        int same = text_eq(st, 0, cv_account_type_str(r->type)) &&
                   text_eq(st, 1, r->primary_account_id) &&
                   sqlite3_column_int(st, 2) == r->real_name_verified &&
                   text_eq(st, 3, r->id_type) && sqlite3_column_int(st, 4) == r->mfa_bound;
        for (int i = 0; i < 5 && same; i++)
            same = blob_eq(st, 5 + i, bi[i], pii_value(r, i)[0] != '\0');
        if (same) {
            *result = CV_UPSERT_UNCHANGED;
            rc = CV_OK;
            goto out;
        }
    } else if (src != SQLITE_DONE) {
        rc = cv_db_status(src);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    for (int i = 0; i < 5; i++) {
        const char *v = pii_value(r, i);
        if (!v[0])
            continue;
        if ((rc = cv_field_seal(kr, "accounts", pii_columns[i], r->account_id, v, strlen(v),
                                &enc[i], &enc_len[i])) != CV_OK)
            goto out;
    }
    rc = CV_E_DB;
    cv_time_format(cv_now_ms(), now);
    if (sqlite3_prepare_v2(
            c,
            "INSERT INTO accounts(account_id, type, primary_account_id, real_name_verified, "
            "id_type, mfa_bound, name_enc, id_number_enc, enterprise_name_enc, uscc_enc, "
            "mobile_enc, name_bi, id_number_bi, enterprise_name_bi, uscc_bi, mobile_bi, "
            "created_at, updated_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,"
            "?16,?17,?17) ON CONFLICT(account_id) DO UPDATE SET type=excluded.type, "
            "primary_account_id=excluded.primary_account_id, "
            "real_name_verified=excluded.real_name_verified, id_type=excluded.id_type, "
            "mfa_bound=excluded.mfa_bound, name_enc=excluded.name_enc, "
            "id_number_enc=excluded.id_number_enc, "
            "enterprise_name_enc=excluded.enterprise_name_enc, uscc_enc=excluded.uscc_enc, "
            "mobile_enc=excluded.mobile_enc, name_bi=excluded.name_bi, "
            "id_number_bi=excluded.id_number_bi, enterprise_name_bi=excluded.enterprise_name_bi, "
            "uscc_bi=excluded.uscc_bi, mobile_bi=excluded.mobile_bi, "
            "updated_at=excluded.updated_at",
            -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, r->account_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cv_account_type_str(r->type), -1, SQLITE_STATIC);
    if (r->primary_account_id[0])
        sqlite3_bind_text(st, 3, r->primary_account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, r->real_name_verified ? 1 : 0);
    if (r->id_type[0])
        sqlite3_bind_text(st, 5, r->id_type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, r->mfa_bound ? 1 : 0);
    for (int i = 0; i < 5; i++) {
        if (enc[i] == NULL)
            continue;
        sqlite3_bind_blob(st, 7 + i, enc[i], (int)enc_len[i], SQLITE_STATIC);
        sqlite3_bind_blob(st, 12 + i, bi[i], CV_BLIND_BYTES, SQLITE_STATIC);
    }
    sqlite3_bind_text(st, 17, now, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    *result = exists ? CV_UPSERT_UPDATED : CV_UPSERT_CREATED;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    for (int i = 0; i < 5; i++)
        free(enc[i]);
    sodium_memzero(bi, sizeof bi);
    return rc;
}

cv_status cv_account_get(struct cv_db *db, const char *account_id, struct cv_account_info *out)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    struct cv_account_info a;

    memset(&a, 0, sizeof a);
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT type, real_name_verified, mfa_bound, id_type, name_bi, "
                           "id_number_bi, enterprise_name_bi, uscc_bi, mobile_bi FROM accounts "
                           "WHERE account_id=?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_ACCOUNT_NOT_FOUND)) != CV_OK)
        goto out;
    const char *t = (const char *)sqlite3_column_text(st, 0);
    a.type = strcmp(t, "personal") == 0     ? CV_ACCOUNT_PERSONAL
             : strcmp(t, "enterprise") == 0 ? CV_ACCOUNT_ENTERPRISE
                                            : CV_ACCOUNT_SUB;
    a.real_name_verified = sqlite3_column_int(st, 1);
    a.mfa_bound = sqlite3_column_int(st, 2);
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
        snprintf(a.id_type, sizeof a.id_type, "%s", (const char *)sqlite3_column_text(st, 3));
    struct {
        int *has;
        uint8_t *bi;
    } cols[5] = {{&a.has_name, a.name_bi},
                 {&a.has_id_number, a.id_number_bi},
                 {&a.has_enterprise_name, a.enterprise_name_bi},
                 {&a.has_uscc, a.uscc_bi},
                 {&a.has_mobile, a.mobile_bi}};
    for (int i = 0; i < 5; i++) {
        if (sqlite3_column_bytes(st, 4 + i) == CV_BLIND_BYTES) {
            *cols[i].has = 1;
            memcpy(cols[i].bi, sqlite3_column_blob(st, 4 + i), CV_BLIND_BYTES);
        }
    }
    *out = a;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_account_set_mfa_bound(struct cv_db *db, const char *account_id, int bound)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    char now[CV_TIME_LEN + 1];
    sqlite3 *c = cv_db_writer(db);
    cv_time_format(cv_now_ms(), now);
    if (sqlite3_prepare_v2(c, "UPDATE accounts SET mfa_bound=?, updated_at=? WHERE account_id=?",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, bound ? 1 : 0);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, account_id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    if (sqlite3_changes(c) != 1) {
        rc = CV_E_ACCOUNT_NOT_FOUND;
        goto out;
    }
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}
