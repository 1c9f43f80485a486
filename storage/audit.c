/*
 * storage/audit: appends canonical JSON entries as Merkle-tree leaves.
 *
 * DESIGN NOTES
 * 1. An entry is appended only inside the caller's write transaction; its
 *    seq is read there (MAX(seq)+1), never cached, because CLI subcommands
 *    append while the server runs.
 * 2. The stored `entry` text is exactly the leaf's bytes; the leaf hash is
 *    stored beside it so tree computations need no re-serialisation, and
 *    `audit verify` recomputes it from the text.
 */
#include <stdlib.h>
#include <string.h>

#include "casevault/audit.h"
#include "casevault/util.h"
#include "db_internal.h"

void cv_audit_leaf_hash(const void *data, size_t len, uint8_t out[32])
{
    struct cv_sha256 *h = cv_sha256_new();
    const uint8_t prefix = 0x00;
    if (h == NULL) {
        memset(out, 0, 32);
        return;
    }
    cv_sha256_update(h, &prefix, 1);
    cv_sha256_update(h, data, len);
    cv_sha256_final(h, out);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

cv_status cv_audit_append(struct cv_db *db, const struct cv_audit_event *ev, uint64_t *seq_out)
{
    cv_status rc = CV_E_ARG;
    sqlite3 *c = cv_db_writer(db);
    sqlite3_stmt *st = NULL;
    json_t *e = NULL;
    char *text = NULL;
    char now[CV_TIME_LEN + 1];
    uint8_t leaf[32];
    int64_t seq = 0;

    if (ev == NULL || ev->action == NULL || ev->actor_id == NULL || ev->actor_role == NULL)
        goto out;
    if (ev->details != NULL && !json_is_object(ev->details))
        goto out;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto out;
    seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    cv_time_format(cv_now_ms(), now);
    rc = CV_E_NOMEM;
    e = json_pack("{s:s, s:{s:s, s:s}, s:o, s:o, s:O?, s:o, s:s, s:o, s:I, s:s}", "action",
                  ev->action, "actor", "id", ev->actor_id, "role", ev->actor_role, "case_id",
                  str_or_null(ev->case_id), "client", str_or_null(ev->client), "details",
                  ev->details, "object_id", str_or_null(ev->object_id), "outcome",
                  ev->outcome ? ev->outcome : "ok", "request_id", str_or_null(ev->request_id),
                  "seq", (json_int_t)seq, "time", now);
    if (e == NULL)
        goto out;
    text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        goto out;
    cv_audit_leaf_hash(text, strlen(text), leaf);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "INSERT INTO audit_entries(seq,entry,leaf_hash,action,case_id,"
                           "created_at) VALUES(?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, leaf, sizeof leaf, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ev->action, -1, SQLITE_STATIC);
    if (ev->case_id)
        sqlite3_bind_text(st, 5, ev->case_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE) {
        rc = cv_db_status(src);
        goto out;
    }
    if (seq_out)
        *seq_out = (uint64_t)seq;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    free(text);
    json_decref(e);
    return rc;
}

cv_status cv_audit_size(struct cv_db *db, uint64_t *size)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    sqlite3 *c = cv_db_reader_get(db);
    if (sqlite3_prepare_v2(c, "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto out;
    *size = (uint64_t)sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    cv_db_reader_put(db, c);
    return rc;
}
