/*
 * storage/audit: appends canonical JSON entries as Merkle-tree leaves,
 * stores the tree's nodes beside them, serves proofs, signs checkpoints and
 * verifies the whole log. Never writes outside a caller's transaction in
 * cv_audit_append; never signs a tree inconsistent with an earlier
 * checkpoint; never puts PII in an entry (callers pass ids and hashes).
 *
 * DESIGN NOTES
 * 1. An entry is appended only inside the caller's write transaction; its
 *    seq is read there (MAX(seq)+1), never cached, because CLI subcommands
 *    append while the server runs. seq runs 0..n-1 without gaps.
 * 2. The stored `entry` text is exactly the leaf's bytes; the leaf hash is
 *    stored beside it so tree computations need no re-serialisation, and
 *    `audit verify` recomputes it from the text.
 * 3. Row seq also stores `subtrees`: the hashes of the perfect subtrees of
 *    levels 1..k ending at leaf seq (k = trailing one bits of seq). The
 *    perfect subtree (level l, index i) over leaves [i*2^l, (i+1)*2^l) is
 *    therefore row (i+1)*2^l - 1, at offset (l-1)*32 (level 0: leaf_hash).
 *    These nodes never change once written; storage/merkle builds any root
 *    or proof from O(log n) of them.
 * 4. Appending leaf n reads the k left siblings (rows n-1, n-2, n-4, ...,
 *    amortized one row) and writes one row.
 * 5. Every reader (size, root, proofs, entries, verify) runs in one
 *    deferred read transaction on a reader connection: one snapshot, so a
 *    concurrent append never mixes two tree sizes in one answer.
 * 6. Checkpoints are signed in their own write transaction, after checking
 *    that the latest earlier checkpoint's root still matches storage.
 *    Signing a checkpoint appends no entry (that would grow the tree
 *    forever); changing the origin does (`audit.origin`).
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "casevault/audit.h"
#include "casevault/keyring.h"
#include "casevault/util.h"
#include "db_internal.h"

#define META_ORIGIN "audit_origin"
#define VKEY_FILE   "checkpoint.vkey"
#define BODY_MAX    (CV_NOTE_NAME_MAX + 80)

/* Statements the append path runs on the writer; cached by cv_db_writer_stmt
 * (keyed by these arrays' addresses), which saves ~30 us per append. */
static const char SQL_SIZE[] = "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries";
static const char SQL_NODE[] = "SELECT leaf_hash, subtrees FROM audit_entries WHERE seq=?";
static const char SQL_INSERT[] = "INSERT INTO audit_entries(seq,entry,leaf_hash,subtrees,action,"
                                 "case_id,created_at) VALUES(?,?,?,?,?,?,?)";

/* A writer statement: cached, or prepared here when the cache is full. */
struct wst {
    sqlite3_stmt *st;
    int owned;
};

static cv_status wst_get(struct cv_db *db, const char *sql, struct wst *w)
{
    w->owned = 0;
    w->st = cv_db_writer_stmt(db, sql);
    if (w->st != NULL)
        return CV_OK;
    if (sqlite3_prepare_v2(cv_db_writer(db), sql, -1, &w->st, NULL) != SQLITE_OK) {
        sqlite3_finalize(w->st);
        w->st = NULL;
        return CV_E_DB;
    }
    w->owned = 1;
    return CV_OK;
}

static void wst_put(struct wst *w)
{
    if (w->st == NULL)
        return;
    if (w->owned) {
        sqlite3_finalize(w->st);
    } else {
        sqlite3_reset(w->st);
        sqlite3_clear_bindings(w->st); /* no dangling SQLITE_STATIC pointers */
    }
    w->st = NULL;
}

void cv_audit_leaf_hash(const void *data, size_t len, uint8_t out[32])
{
    cv_merkle_leaf_hash(data, len, out);
}

/* ---- node source over one connection ---- */

struct nodes {
    sqlite3 *c;
    sqlite3_stmt *st; /* SELECT leaf_hash, subtrees FROM audit_entries WHERE seq=? */
};

static cv_status nodes_open(struct nodes *n, sqlite3 *c)
{
    n->c = c;
    n->st = NULL;
    if (sqlite3_prepare_v2(c, SQL_NODE, -1, &n->st, NULL) != SQLITE_OK)
        return CV_E_DB;
    return CV_OK;
}

static void nodes_close(struct nodes *n)
{
    sqlite3_finalize(n->st);
    n->st = NULL;
}

static cv_status node_cb(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct nodes *n = ctx;
    cv_status rc = CV_E_AUDIT_MISMATCH;
    if (level > 62 || index > (UINT64_C(1) << (62 - level)))
        return CV_E_RANGE;
    uint64_t row = ((index + 1) << level) - 1;
    sqlite3_reset(n->st);
    sqlite3_bind_int64(n->st, 1, (sqlite3_int64)row);
    if ((rc = cv_db_step_row(n->st, CV_E_AUDIT_MISMATCH)) != CV_OK)
        goto out;
    if (level == 0) {
        if (sqlite3_column_bytes(n->st, 0) != 32)
            goto out;
        memcpy(out, sqlite3_column_blob(n->st, 0), 32);
    } else {
        const uint8_t *b = sqlite3_column_blob(n->st, 1);
        if ((size_t)sqlite3_column_bytes(n->st, 1) < (size_t)level * 32 || b == NULL)
            goto out;
        memcpy(out, b + (size_t)(level - 1) * 32, 32);
    }
    rc = CV_OK;
out:
    sqlite3_reset(n->st);
    return rc;
}

static cv_status tree_size_step(sqlite3_stmt *st, uint64_t *size)
{
    cv_status rc = cv_db_step_row(st, CV_E_DB);
    if (rc == CV_OK)
        *size = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc;
}

static cv_status tree_size_on(sqlite3 *c, uint64_t *size)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, SQL_SIZE, -1, &st, NULL) == SQLITE_OK)
        rc = tree_size_step(st, size);
    sqlite3_finalize(st);
    return rc;
}

/* ---- append ---- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

cv_status cv_audit_append(struct cv_db *db, const struct cv_audit_event *ev, uint64_t *seq_out)
{
    cv_status rc = CV_E_ARG;
    struct wst size_st = {0}, node_st = {0}, ins = {0};
    struct nodes nd = {0};
    json_t *e = NULL;
    char *text = NULL;
    char now[CV_TIME_LEN + 1];
    uint8_t leaf[32], cur[32];
    uint8_t subtrees[63][32];
    uint64_t seq = 0;
    unsigned k = 0;

    if (ev == NULL || ev->action == NULL || ev->actor_id == NULL || ev->actor_role == NULL)
        goto out;
    if (ev->details != NULL && !json_is_object(ev->details))
        goto out;
    if ((rc = wst_get(db, SQL_SIZE, &size_st)) != CV_OK ||
        (rc = wst_get(db, SQL_NODE, &node_st)) != CV_OK ||
        (rc = wst_get(db, SQL_INSERT, &ins)) != CV_OK)
        goto out;
    if ((rc = tree_size_step(size_st.st, &seq)) != CV_OK)
        goto out;
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
    size_t tlen = strlen(text);
    cv_merkle_leaf_hash(text, tlen, leaf);
    memcpy(cur, leaf, 32);
    /* Subtrees completed by leaf seq: merge with the left sibling at each
     * level while the index's low bit is set (DESIGN NOTES 3, 4). */
    nd.c = cv_db_writer(db);
    nd.st = node_st.st;
    for (uint64_t t = seq; t & 1; t >>= 1, k++) {
        uint8_t left[32];
        if ((rc = node_cb(&nd, k, (seq >> k) - 1, left)) != CV_OK)
            goto out;
        cv_merkle_node_hash(left, cur, cur);
        memcpy(subtrees[k], cur, 32);
    }
    sqlite3_stmt *st = ins.st;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 2, text, (int)tlen, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, leaf, sizeof leaf, SQLITE_STATIC);
    if (k == 0)
        sqlite3_bind_zeroblob(st, 4, 0);
    else
        sqlite3_bind_blob(st, 4, subtrees, (int)(k * 32), SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ev->action, -1, SQLITE_STATIC);
    if (ev->case_id)
        sqlite3_bind_text(st, 6, ev->case_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_text(st, 7, now, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    if (seq_out)
        *seq_out = seq;
    rc = CV_OK;
out:
    wst_put(&ins);
    wst_put(&node_st);
    wst_put(&size_st);
    free(text);
    json_decref(e);
    return rc;
}

/* ---- read snapshots ---- */

struct snap {
    struct cv_db *db;
    sqlite3 *c;
    struct nodes nd;
    uint64_t size;
};

static cv_status snap_begin(struct cv_db *db, struct snap *s)
{
    cv_status rc;
    memset(s, 0, sizeof *s);
    s->db = db;
    s->c = cv_db_reader_get(db);
    int src = sqlite3_exec(s->c, "BEGIN", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        cv_db_reader_put(db, s->c);
        s->c = NULL;
        return cv_db_status(src);
    }
    if ((rc = nodes_open(&s->nd, s->c)) != CV_OK || (rc = tree_size_on(s->c, &s->size)) != CV_OK) {
        nodes_close(&s->nd);
        sqlite3_exec(s->c, "ROLLBACK", NULL, NULL, NULL);
        cv_db_reader_put(db, s->c);
        s->c = NULL;
        return rc;
    }
    return CV_OK;
}

static void snap_end(struct snap *s)
{
    if (s->c == NULL)
        return;
    nodes_close(&s->nd);
    sqlite3_exec(s->c, "ROLLBACK", NULL, NULL, NULL);
    cv_db_reader_put(s->db, s->c);
    s->c = NULL;
}

static struct cv_merkle_src src_of(struct nodes *nd)
{
    struct cv_merkle_src src = {node_cb, nd};
    return src;
}

cv_status cv_audit_size(struct cv_db *db, uint64_t *size)
{
    sqlite3 *c = cv_db_reader_get(db);
    cv_status rc = tree_size_on(c, size);
    cv_db_reader_put(db, c);
    return rc;
}

cv_status cv_audit_size_in_txn(struct cv_db *db, uint64_t *size)
{
    return tree_size_on(cv_db_writer(db), size);
}

cv_status cv_audit_root(struct cv_db *db, uint64_t size, uint8_t root[32])
{
    struct snap s;
    cv_status rc = snap_begin(db, &s);
    if (rc != CV_OK)
        return rc;
    struct cv_merkle_src src = src_of(&s.nd);
    uint8_t r[32];
    if (size > s.size)
        rc = CV_E_RANGE;
    else
        rc = cv_merkle_root(&src, size, r);
    snap_end(&s);
    if (rc == CV_OK)
        memcpy(root, r, 32);
    return rc;
}

cv_status cv_audit_inclusion_proof(struct cv_db *db, uint64_t index, uint64_t size,
                                   struct cv_audit_proof *out)
{
    struct snap s;
    struct cv_audit_proof *p = NULL;
    cv_status rc = CV_E_RANGE;
    if (size == 0 || index >= size)
        return CV_E_RANGE;
    if ((rc = snap_begin(db, &s)) != CV_OK)
        return rc;
    rc = CV_E_RANGE;
    if (size > s.size)
        goto out;
    rc = CV_E_NOMEM;
    if ((p = calloc(1, sizeof *p)) == NULL)
        goto out;
    struct cv_merkle_src src = src_of(&s.nd);
    p->index = index;
    p->size = size;
    if ((rc = node_cb(&s.nd, 0, index, p->leaf)) != CV_OK ||
        (rc = cv_merkle_inclusion_proof(&src, index, size, p->hashes, &p->n)) != CV_OK ||
        (rc = cv_merkle_root(&src, size, p->root)) != CV_OK)
        goto out;
    *out = *p;
    rc = CV_OK;
out:
    free(p);
    snap_end(&s);
    return rc;
}

cv_status cv_audit_consistency_proof(struct cv_db *db, uint64_t old_size, uint64_t new_size,
                                     struct cv_audit_proof *out)
{
    struct snap s;
    struct cv_audit_proof *p = NULL;
    cv_status rc;
    if (old_size == 0 || old_size > new_size)
        return CV_E_RANGE;
    if ((rc = snap_begin(db, &s)) != CV_OK)
        return rc;
    rc = CV_E_RANGE;
    if (new_size > s.size)
        goto out;
    rc = CV_E_NOMEM;
    if ((p = calloc(1, sizeof *p)) == NULL)
        goto out;
    struct cv_merkle_src src = src_of(&s.nd);
    p->index = old_size;
    p->size = new_size;
    if ((rc = cv_merkle_consistency_proof(&src, old_size, new_size, p->hashes, &p->n)) != CV_OK ||
        (rc = cv_merkle_root(&src, old_size, p->old_root)) != CV_OK ||
        (rc = cv_merkle_root(&src, new_size, p->root)) != CV_OK)
        goto out;
    *out = *p;
    rc = CV_OK;
out:
    free(p);
    snap_end(&s);
    return rc;
}

cv_status cv_audit_entries(struct cv_db *db, uint64_t start, uint64_t end, cv_audit_entry_fn fn,
                           void *arg, uint64_t *tree_size)
{
    struct snap s;
    sqlite3_stmt *st = NULL;
    cv_status rc;
    if (end < start)
        return CV_E_RANGE;
    if ((rc = snap_begin(db, &s)) != CV_OK)
        return rc;
    rc = CV_E_RANGE;
    if (start > s.size)
        goto out;
    if (end > s.size)
        end = s.size;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(s.c,
                           "SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq >= ? AND "
                           "seq < ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)start);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)end);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        const uint8_t *leaf = sqlite3_column_blob(st, 2);
        if (text == NULL || leaf == NULL || sqlite3_column_bytes(st, 2) != 32) {
            rc = CV_E_AUDIT_MISMATCH;
            goto out;
        }
        if (fn(arg, (uint64_t)sqlite3_column_int64(st, 0), text, len, leaf) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = cv_db_status(src);
        goto out;
    }
    if (tree_size)
        *tree_size = s.size;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    snap_end(&s);
    return rc;
}

/* ---- origin and verifier key ---- */

/* The origin as seen by connection c (inside its transaction, if any). */
static cv_status origin_on(sqlite3 *c, char out[CV_NOTE_NAME_MAX + 1])
{
    char id[64];
    cv_status rc = cv_db_meta_get_on(c, META_ORIGIN, out, CV_NOTE_NAME_MAX + 1);
    if (rc != CV_E_NOT_FOUND)
        return rc;
    if ((rc = cv_db_meta_get_on(c, "instance_id", id, sizeof id)) != CV_OK)
        return rc;
    snprintf(out, CV_NOTE_NAME_MAX + 1, "casevault/%s", id);
    return CV_OK;
}

cv_status cv_audit_origin(struct cv_db *db, char out[CV_NOTE_NAME_MAX + 1])
{
    sqlite3 *c = cv_db_reader_get(db);
    char o[CV_NOTE_NAME_MAX + 1];
    cv_status rc = origin_on(c, o);
    cv_db_reader_put(db, c);
    if (rc == CV_OK)
        memcpy(out, o, strlen(o) + 1);
    return rc;
}

cv_status cv_audit_vkey(struct cv_db *db, struct cv_keyring *kr, char out[CV_NOTE_VKEY_MAX])
{
    char origin[CV_NOTE_NAME_MAX + 1];
    uint8_t pk[CV_SIGN_PK_BYTES], keyid[CV_MINISIGN_KEYID];
    cv_status rc = cv_audit_origin(db, origin);
    if (rc != CV_OK)
        return rc;
    cv_keyring_sign_pk(kr, pk, keyid);
    return cv_note_vkey(origin, pk, out, CV_NOTE_VKEY_MAX);
}

static cv_status write_vkey(const char *keys_dir, const char *vkey)
{
    char path[PATH_MAX];
    char line[CV_NOTE_VKEY_MAX + 2];
    char *old = NULL;
    size_t old_len = 0;
    cv_status rc = cv_path_join(path, sizeof path, keys_dir, VKEY_FILE);
    if (rc != CV_OK)
        return rc;
    int n = snprintf(line, sizeof line, "%s\n", vkey);
    if (cv_file_read(path, 4096, &old, &old_len) == CV_OK && old_len == (size_t)n &&
        memcmp(old, line, (size_t)n) == 0) {
        free(old);
        return CV_OK;
    }
    free(old);
    if ((rc = cv_file_write_durable(path, line, (size_t)n, 0644, 1)) != CV_OK)
        return rc;
    return chmod(path, 0644) == 0 ? CV_OK : CV_E_IO; /* public: the umask made it 0600 */
}

cv_status cv_audit_set_origin(struct cv_db *db, struct cv_keyring *kr, const char *keys_dir,
                              const char *origin, const char *actor_id, const char *actor_role,
                              char effective[CV_NOTE_NAME_MAX + 1])
{
    char want[CV_NOTE_NAME_MAX + 1], cur[CV_NOTE_NAME_MAX + 1], id[64];
    char vkey[CV_NOTE_VKEY_MAX];
    uint8_t pk[CV_SIGN_PK_BYTES], keyid[CV_MINISIGN_KEYID];
    json_t *details = NULL;
    int in_tx = 0;
    cv_status rc = CV_E_CONFIG;
    if (origin != NULL && origin[0] != '\0') {
        if (!cv_note_name_valid(origin))
            goto out;
        snprintf(want, sizeof want, "%s", origin);
    }
    if ((rc = cv_db_begin(db)) != CV_OK)
        goto out;
    in_tx = 1;
    sqlite3 *c = cv_db_writer(db);
    if (origin == NULL || origin[0] == '\0') {
        if ((rc = cv_db_meta_get_on(c, "instance_id", id, sizeof id)) != CV_OK)
            goto out;
        snprintf(want, sizeof want, "casevault/%s", id);
    }
    rc = cv_db_meta_get_on(c, META_ORIGIN, cur, sizeof cur);
    if (rc == CV_E_NOT_FOUND) {
        /* First use: record it; the log was created under this origin. */
        if ((rc = cv_db_meta_set(db, META_ORIGIN, want)) != CV_OK)
            goto out;
    } else if (rc != CV_OK) {
        goto out;
    } else if (strcmp(cur, want) != 0) {
        rc = CV_E_NOMEM;
        if ((details = json_pack("{s:s, s:s}", "from", cur, "to", want)) == NULL)
            goto out;
        struct cv_audit_event ev = {.action = "audit.origin",
                                    .actor_id = actor_id ? actor_id : "system",
                                    .actor_role = actor_role ? actor_role : "system",
                                    .details = details};
        if ((rc = cv_db_meta_set(db, META_ORIGIN, want)) != CV_OK ||
            (rc = cv_audit_append(db, &ev, NULL)) != CV_OK)
            goto out;
    }
    in_tx = 0;
    if ((rc = cv_db_commit(db)) != CV_OK)
        goto out;
    cv_keyring_sign_pk(kr, pk, keyid);
    if ((rc = cv_note_vkey(want, pk, vkey, sizeof vkey)) != CV_OK ||
        (rc = write_vkey(keys_dir, vkey)) != CV_OK)
        goto out;
    if (effective)
        memcpy(effective, want, strlen(want) + 1);
    rc = CV_OK;
out:
    if (in_tx)
        cv_db_rollback(db);
    json_decref(details);
    return rc;
}

/* ---- checkpoints ---- */

struct cp_row {
    uint64_t size;
    uint8_t root[32];
    int64_t created_ms;
};

/* Latest (largest size) checkpoint of origin on c. CV_E_NOT_FOUND if none. */
static cv_status latest_row(sqlite3 *c, const char *origin, struct cp_row *r, char **note)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "SELECT size, root_hash, created_ms, note FROM audit_checkpoints "
                           "WHERE origin=? ORDER BY size DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    rc = CV_E_AUDIT_MISMATCH;
    if (sqlite3_column_bytes(st, 1) != 32)
        goto out;
    r->size = (uint64_t)sqlite3_column_int64(st, 0);
    memcpy(r->root, sqlite3_column_blob(st, 1), 32);
    r->created_ms = sqlite3_column_int64(st, 2);
    if (note) {
        const char *t = (const char *)sqlite3_column_text(st, 3);
        rc = CV_E_NOMEM;
        if (t == NULL || (*note = strdup(t)) == NULL)
            goto out;
    }
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Sign and store the checkpoint of (origin, size) inside the open write
 * transaction. Checks the latest earlier checkpoint against storage first. */
static cv_status sign_in_tx(struct cv_db *db, struct cv_keyring *kr, const char *origin,
                            uint64_t size, char **note_out)
{
    sqlite3 *c = cv_db_writer(db);
    struct nodes nd = {0};
    sqlite3_stmt *st = NULL;
    struct cp_row prev;
    char body[BODY_MAX];
    size_t blen = 0;
    uint8_t root[32], again[32], sig[CV_SIG_BYTES];
    uint8_t pk[CV_SIGN_PK_BYTES], keyid[CV_MINISIGN_KEYID];
    char *note = NULL;
    cv_status rc = nodes_open(&nd, c);
    if (rc != CV_OK)
        goto out;
    struct cv_merkle_src src = src_of(&nd);
    if ((rc = cv_merkle_root(&src, size, root)) != CV_OK)
        goto out;
    rc = latest_row(c, origin, &prev, NULL);
    if (rc == CV_OK) {
        if ((rc = cv_merkle_root(&src, prev.size, again)) != CV_OK)
            goto out;
        if (memcmp(again, prev.root, 32) != 0) {
            rc = CV_E_AUDIT_MISMATCH;
            goto out;
        }
    } else if (rc != CV_E_NOT_FOUND) {
        goto out;
    }
    if ((rc = cv_checkpoint_body(origin, size, root, body, sizeof body, &blen)) != CV_OK)
        goto out;
    if ((rc = cv_keyring_sign(kr, body, blen, sig)) != CV_OK)
        goto out;
    cv_keyring_sign_pk(kr, pk, keyid);
    if ((rc = cv_note_assemble(body, origin, cv_note_key_id(origin, pk), sig, &note)) != CV_OK)
        goto out;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "INSERT INTO audit_checkpoints(origin,size,root_hash,note,created_ms) "
                           "VALUES(?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
    sqlite3_bind_blob(st, 3, root, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, cv_now_ms());
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto out;
    if (note_out) {
        *note_out = note;
        note = NULL;
    }
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    nodes_close(&nd);
    free(note);
    return rc;
}

/* 1 if a checkpoint is due: none yet, or the tree grew past the latest
 * one and that one is at least interval_ms old. */
static cv_status due_on(sqlite3 *c, int64_t interval_ms, char origin[CV_NOTE_NAME_MAX + 1],
                        uint64_t *size, int *due)
{
    struct cp_row prev;
    cv_status rc = origin_on(c, origin);
    if (rc == CV_OK)
        rc = tree_size_on(c, size);
    if (rc != CV_OK)
        return rc;
    rc = latest_row(c, origin, &prev, NULL);
    if (rc == CV_E_NOT_FOUND) {
        *due = 1;
        return CV_OK;
    }
    if (rc == CV_OK)
        *due = prev.size < *size && cv_now_ms() - prev.created_ms >= interval_ms;
    return rc;
}

cv_status cv_audit_checkpoint_tick(struct cv_db *db, struct cv_keyring *kr, int64_t interval_ms,
                                   int *signed_new)
{
    char origin[CV_NOTE_NAME_MAX + 1];
    uint64_t size = 0;
    int due = 0, in_tx = 0;
    /* Cheap check on a reader first: most ticks find nothing to do. */
    sqlite3 *r = cv_db_reader_get(db);
    cv_status rc = due_on(r, interval_ms, origin, &size, &due);
    cv_db_reader_put(db, r);
    if (rc != CV_OK || !due)
        goto out;
    /* Decide again inside the write transaction: another process may have
     * signed or appended meanwhile. */
    if ((rc = cv_db_begin(db)) != CV_OK)
        goto out;
    in_tx = 1;
    if ((rc = due_on(cv_db_writer(db), interval_ms, origin, &size, &due)) != CV_OK || !due)
        goto out;
    if ((rc = sign_in_tx(db, kr, origin, size, NULL)) != CV_OK)
        goto out;
    in_tx = 0;
    if ((rc = cv_db_commit(db)) != CV_OK)
        goto out;
    rc = CV_OK;
out:
    if (in_tx)
        cv_db_rollback(db);
    if (rc == CV_OK && signed_new)
        *signed_new = due;
    return rc;
}

static cv_status stored_at(sqlite3 *c, const char *origin, uint64_t size, char **note)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, "SELECT note FROM audit_checkpoints WHERE origin=? AND size=?", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    const char *t = (const char *)sqlite3_column_text(st, 0);
    rc = CV_E_NOMEM;
    if (t == NULL || (*note = strdup(t)) == NULL)
        goto out;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_audit_checkpoint_at(struct cv_db *db, struct cv_keyring *kr, uint64_t size,
                                 char **note)
{
    char origin[CV_NOTE_NAME_MAX + 1];
    uint64_t tree = 0;
    char *n = NULL;
    int in_tx = 0;
    cv_status rc = cv_db_begin(db);
    if (rc != CV_OK)
        goto out;
    in_tx = 1;
    sqlite3 *c = cv_db_writer(db);
    if ((rc = origin_on(c, origin)) != CV_OK || (rc = tree_size_on(c, &tree)) != CV_OK)
        goto out;
    rc = CV_E_RANGE;
    if (size > tree)
        goto out;
    rc = stored_at(c, origin, size, &n);
    if (rc == CV_E_NOT_FOUND)
        rc = sign_in_tx(db, kr, origin, size, &n);
    if (rc != CV_OK)
        goto out;
    in_tx = 0;
    if ((rc = cv_db_commit(db)) != CV_OK)
        goto out;
    *note = n;
    n = NULL;
    rc = CV_OK;
out:
    if (in_tx)
        cv_db_rollback(db);
    free(n);
    return rc;
}

cv_status cv_audit_checkpoint_latest(struct cv_db *db, char **note, uint64_t *size)
{
    char origin[CV_NOTE_NAME_MAX + 1];
    struct cp_row row;
    char *n = NULL;
    sqlite3 *c = cv_db_reader_get(db);
    cv_status rc = origin_on(c, origin);
    if (rc == CV_OK)
        rc = latest_row(c, origin, &row, &n);
    cv_db_reader_put(db, c);
    if (rc != CV_OK)
        return rc;
    *note = n;
    if (size)
        *size = row.size;
    return CV_OK;
}

/* ---- verify ---- */

static void report(struct cv_audit_report *rep, int has_index, uint64_t index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(struct cv_audit_report *rep, int has_index, uint64_t index, const char *fmt, ...)
{
    va_list ap;
    rep->has_bad_index = has_index;
    rep->bad_index = index;
    va_start(ap, fmt);
    vsnprintf(rep->problem, sizeof rep->problem, fmt, ap);
    va_end(ap);
}

/*
 * 1 if text is an entry object whose top-level "seq" is i. Canonical entries
 * end with ...,"seq":<i>,"time":"<RFC 3339>"} (keys sorted, "time" last), so
 * the check is a suffix match, not a JSON parse: a full parse and re-dump
 * costs 20 us per entry, i.e. 20 s per million. The hashes are what prove
 * integrity; this only catches entries that name the wrong position.
 */
static int names_seq(const char *text, size_t len, uint64_t i)
{
    char want[64];
    int n = snprintf(want, sizeof want, ",\"seq\":%llu,\"time\":\"", (unsigned long long)i);
    const size_t tail = CV_TIME_LEN + 2; /* the time value's closing quote and '}' */
    if (len < (size_t)n + tail || text[0] != '{' || text[len - 1] != '}' || text[len - 2] != '"')
        return 0;
    return memcmp(text + len - tail - (size_t)n, want, (size_t)n) == 0;
}

struct cp_cursor {
    sqlite3_stmt *st;
    int have;
    uint64_t size;
    int64_t id;
};

static cv_status cp_next(struct cp_cursor *cp)
{
    int src = sqlite3_step(cp->st);
    if (src == SQLITE_DONE) {
        cp->have = 0;
        return CV_OK;
    }
    if (src != SQLITE_ROW)
        return cv_db_status(src);
    cp->have = 1;
    cp->id = sqlite3_column_int64(cp->st, 0);
    cp->size = (uint64_t)sqlite3_column_int64(cp->st, 2);
    return CV_OK;
}

/* Check the checkpoint under the cursor against the recomputed root. */
static int cp_check(struct cp_cursor *cp, const uint8_t pk[32], const uint8_t root[32],
                    uint64_t verified_upto, struct cv_audit_report *rep)
{
    const char *origin = (const char *)sqlite3_column_text(cp->st, 1);
    const char *note = (const char *)sqlite3_column_text(cp->st, 4);
    const uint8_t *stored_root = sqlite3_column_blob(cp->st, 3);
    char vkey[CV_NOTE_VKEY_MAX];
    struct cv_checkpoint parsed;
    if (origin == NULL || note == NULL || stored_root == NULL ||
        sqlite3_column_bytes(cp->st, 3) != 32 ||
        cv_note_vkey(origin, pk, vkey, sizeof vkey) != CV_OK) {
        report(rep, 0, 0, "checkpoint %lld (size %llu) is malformed", (long long)cp->id,
               (unsigned long long)cp->size);
        return 0;
    }
    if (cv_checkpoint_verify(note, (size_t)sqlite3_column_bytes(cp->st, 4), vkey, &parsed) !=
        CV_OK) {
        report(rep, 0, 0, "checkpoint of size %llu (origin %s): signature does not verify",
               (unsigned long long)cp->size, origin);
        return 0;
    }
    if (parsed.size != cp->size || memcmp(parsed.root, stored_root, 32) != 0) {
        report(rep, 0, 0, "checkpoint of size %llu: stored size or root differs from its note",
               (unsigned long long)cp->size);
        return 0;
    }
    if (memcmp(parsed.root, root, 32) != 0) {
        report(rep, 1, verified_upto,
               "entries %llu..%llu do not match the signed checkpoint of size %llu: the log was "
               "altered after it was signed",
               (unsigned long long)verified_upto, (unsigned long long)cp->size - 1,
               (unsigned long long)cp->size);
        return 0;
    }
    return 1;
}

cv_status cv_audit_verify(struct cv_db *db, const uint8_t pk[32], struct cv_audit_report *rep)
{
    struct snap s;
    struct cp_cursor cp = {0};
    sqlite3_stmt *st = NULL;
    struct cv_merkle_stack *stack = NULL;
    uint8_t completed[63][32];
    uint8_t leaf[32], root[32];
    uint64_t i = 0, verified_upto = 0;
    cv_status rc;
    memset(rep, 0, sizeof *rep);
    if ((rc = snap_begin(db, &s)) != CV_OK)
        return rc;
    rc = CV_E_NOMEM;
    if ((stack = malloc(sizeof *stack)) == NULL)
        goto out;
    cv_merkle_stack_init(stack);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(s.c,
                           "SELECT id, origin, size, root_hash, note FROM audit_checkpoints "
                           "ORDER BY size, id",
                           -1, &cp.st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s.c,
                           "SELECT seq, entry, leaf_hash, subtrees FROM audit_entries ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    if ((rc = cp_next(&cp)) != CV_OK)
        goto out;
    rc = CV_E_AUDIT_MISMATCH;
    for (;;) {
        /* Checkpoints of the size verified so far. */
        while (cp.have && cp.size == i) {
            cv_merkle_stack_root(stack, root);
            if (!cp_check(&cp, pk, root, verified_upto, rep))
                goto out;
            rep->checkpoints++;
            verified_upto = i;
            cv_status r2 = cp_next(&cp);
            if (r2 != CV_OK) {
                rc = r2;
                goto out;
            }
        }
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = cv_db_status(src);
            goto out;
        }
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        if (seq != i) {
            report(rep, 1, i, "entry %llu is missing (next stored entry is %llu)",
                   (unsigned long long)i, (unsigned long long)seq);
            goto out;
        }
        const char *text = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        if (text == NULL) {
            report(rep, 1, i, "entry %llu has no text", (unsigned long long)i);
            goto out;
        }
        cv_merkle_leaf_hash(text, len, leaf);
        if (sqlite3_column_bytes(st, 2) != 32 || memcmp(sqlite3_column_blob(st, 2), leaf, 32)) {
            report(rep, 1, i, "entry %llu: its text does not match its stored leaf hash",
                   (unsigned long long)i);
            goto out;
        }
        if (!names_seq(text, len, i)) {
            report(rep, 1, i, "entry %llu is not a canonical entry naming seq %llu",
                   (unsigned long long)i, (unsigned long long)i);
            goto out;
        }
        unsigned k = cv_merkle_stack_push(stack, leaf, completed);
        const uint8_t *sub = sqlite3_column_blob(st, 3);
        if ((size_t)sqlite3_column_bytes(st, 3) != (size_t)k * 32 || (k > 0 && sub == NULL)) {
            report(rep, 1, i, "entry %llu: its stored subtree hashes are missing or malformed",
                   (unsigned long long)i);
            goto out;
        }
        for (unsigned l = 1; l <= k; l++) {
            if (memcmp(sub + (size_t)(l - 1) * 32, completed[l - 1], 32) == 0)
                continue;
            /* The lowest differing subtree: one of its entries was rewritten
             * together with its leaf hash (or the stored node was). */
            uint64_t first = i + 1 - (UINT64_C(1) << l);
            report(rep, 1, first,
                   "entries %llu..%llu do not match the stored hash of their subtree: an entry "
                   "was rewritten together with its leaf hash",
                   (unsigned long long)first, (unsigned long long)i);
            goto out;
        }
        i++;
        rep->entries = i;
    }
    if (cp.have) {
        report(rep, 1, i,
               "a checkpoint of size %llu exists but only %llu entries are stored: entries were "
               "removed",
               (unsigned long long)cp.size, (unsigned long long)i);
        goto out;
    }
    cv_merkle_stack_root(stack, rep->root);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    sqlite3_finalize(cp.st);
    free(stack);
    snap_end(&s);
    return rc;
}
