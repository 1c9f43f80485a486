/*
 * storage/token: bearer token creation, lookup and revocation. The secret
 * is never stored; the lookup key is BLAKE2b-256 keyed with a key derived
 * from the field root key (label "token").
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "casevault/keyring.h"
#include "casevault/token.h"
#include "db_internal.h"

static const struct {
    enum cv_role role;
    const char *name;
} roles[] = {
    {CV_ROLE_APPLICANT, "applicant"}, {CV_ROLE_ADMIN, "admin"},   {CV_ROLE_REVIEWER, "reviewer"},
    {CV_ROLE_AUDITOR, "auditor"},     {CV_ROLE_BACKUP, "backup"},
};

const char *cv_role_str(enum cv_role role)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (roles[i].role == role)
            return roles[i].name;
    return "none";
}

cv_status cv_role_parse(const char *name, enum cv_role *out)
{
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].name, name) == 0) {
            *out = roles[i].role;
            return CV_OK;
        }
    return CV_E_ARG;
}

static int valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CV_TOKEN_NAME_MAX)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@'))
            return 0;
    }
    return 1;
}

static cv_status token_hash(struct cv_keyring *kr, const uint8_t raw[CV_TOKEN_BYTES],
                            uint8_t out[32])
{
    return cv_keyring_keyed_hash(kr, CV_KEY_TOKEN, "token", raw, CV_TOKEN_BYTES, out);
}

cv_status cv_token_create(struct cv_db *db, struct cv_keyring *kr, enum cv_role role,
                          const char *name, const char *case_id, int64_t expires_ms,
                          char text[CV_TOKEN_TEXT_LEN + 1], char id[CV_ULID_LEN + 1])
{
    cv_status rc = CV_E_ARG;
    uint8_t raw[CV_TOKEN_BYTES];
    uint8_t hash[32];
    char tid[CV_ULID_LEN + 1];
    char now[CV_TIME_LEN + 1];
    sqlite3_stmt *st = NULL;

    if (!valid_name(name) || cv_role_str(role)[0] == 'n')
        goto out;
    if ((role == CV_ROLE_APPLICANT) != (case_id != NULL))
        goto out;
    if (case_id != NULL && !cv_ulid_valid(case_id))
        goto out;
    randombytes_buf(raw, sizeof raw);
    if ((rc = token_hash(kr, raw, hash)) != CV_OK)
        goto out;
    cv_ulid_new(tid);
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "INSERT INTO tokens(id,role,name,case_id,hash,created_at,expires_at) "
                           "VALUES(?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cv_role_str(role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (case_id)
        sqlite3_bind_text(st, 4, case_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_blob(st, 5, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
    if (expires_ms > 0)
        sqlite3_bind_int64(st, 7, expires_ms);
    else
        sqlite3_bind_null(st, 7);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    cv_b64url_encode(raw, sizeof raw, text);
    memcpy(id, tid, sizeof tid);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    sodium_memzero(raw, sizeof raw);
    return rc;
}

cv_status cv_token_authenticate(struct cv_db *db, struct cv_keyring *kr, const char *text,
                                struct cv_principal *who)
{
    cv_status rc = CV_E_UNAUTHORIZED;
    uint8_t raw[CV_TOKEN_BYTES];
    uint8_t hash[32];
    sqlite3_stmt *st = NULL;
    sqlite3 *c = NULL;
    struct cv_principal p;

    memset(&p, 0, sizeof p);
    if (cv_b64url_decode(text, raw, sizeof raw) != CV_OK)
        goto out;
    if (token_hash(kr, raw, hash) != CV_OK) {
        rc = CV_E_CRYPTO;
        goto out;
    }
    c = cv_db_reader_get(db);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "SELECT id, role, name, case_id, expires_at, hash FROM tokens "
                           "WHERE hash=? AND revoked_at IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_blob(st, 1, hash, sizeof hash, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_UNAUTHORIZED)) != CV_OK)
        goto out;
    rc = CV_E_UNAUTHORIZED;
    /* The row was found by its hash; compare again in constant time anyway. */
    if (sqlite3_column_bytes(st, 5) != 32 ||
        sodium_memcmp(sqlite3_column_blob(st, 5), hash, 32) != 0)
        goto out;
    if (sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_int64(st, 4) <= cv_now_ms())
        goto out;
    if (cv_role_parse((const char *)sqlite3_column_text(st, 1), &p.role) != CV_OK)
        goto out;
    snprintf(p.token_id, sizeof p.token_id, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(p.name, sizeof p.name, "%s", (const char *)sqlite3_column_text(st, 2));
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
        snprintf(p.case_id, sizeof p.case_id, "%s", (const char *)sqlite3_column_text(st, 3));
    *who = p;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    if (c != NULL)
        cv_db_reader_put(db, c);
    sodium_memzero(raw, sizeof raw);
    return rc;
}

cv_status cv_token_revoke(struct cv_db *db, const char *id)
{
    sqlite3_stmt *st = NULL;
    char now[CV_TIME_LEN + 1];
    cv_status rc = CV_E_DB;
    cv_time_format(cv_now_ms(), now);
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "UPDATE tokens SET revoked_at=? WHERE id=? AND revoked_at IS NULL", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    rc = sqlite3_changes(cv_db_writer(db)) == 1 ? CV_OK : CV_E_NOT_FOUND;
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_token_list(struct cv_db *db, int include_applicants,
                        int (*fn)(const struct cv_token_info *t, void *arg), void *arg)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    sqlite3 *c = cv_db_reader_get(db);
    if (sqlite3_prepare_v2(c,
                           "SELECT id, role, name, case_id, created_at, revoked_at, expires_at "
                           "FROM tokens WHERE ?1 OR case_id IS NULL ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, include_applicants ? 1 : 0);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        struct cv_token_info t = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .role = (const char *)sqlite3_column_text(st, 1),
            .name = (const char *)sqlite3_column_text(st, 2),
            .case_id = (const char *)sqlite3_column_text(st, 3),
            .created_at = (const char *)sqlite3_column_text(st, 4),
            .revoked_at = (const char *)sqlite3_column_text(st, 5),
            .expires_ms = sqlite3_column_int64(st, 6),
        };
        if (fn(&t, arg) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = cv_db_status(src);
        goto out;
    }
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    cv_db_reader_put(db, c);
    return rc;
}
