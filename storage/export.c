/*
 * storage/export: writes a case archive (DESIGN §6) to a sink, as a pure
 * function of (case, tree size N), after cv_export_prepare has audited it.
 * It never writes to the database once streaming starts, never holds a
 * document in memory, and never logs.
 *
 * DESIGN NOTES
 * 1. What belongs to "the case as of N" is decided by the audit log alone:
 *    the entries with case_id = the case and seq < N. A document is in the
 *    export iff one of those entries names it as object_id; the status
 *    history is the sequence of their "to" states. Rows written after N
 *    (new uploads, decisions) therefore never change an export as of N.
 * 2. Sizes and SHA-256 of every member are known before the first byte:
 *    documents from the blobs and documents rows, generated members by a
 *    first pass that only hashes (entries.jsonl and proofs.json are produced
 *    twice, never buffered). MANIFEST.sha256 sorts first, so it is written
 *    first. The blob reader re-checks each blob's SHA-256 at its end; a
 *    mismatch cuts the stream (an error from the sink chain).
 * 3. mtime of every member = time of the case's last change as of N (the
 *    last entry that is not a read: *.view, export.create).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <utf8proc.h>

#include "casevault/age.h"
#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/export.h"
#include "casevault/field.h"
#include "casevault/minisign.h"
#include "casevault/util.h"
#include "db_internal.h"

#define SAFE_NAME_MAX   CV_EXPORT_SAFE_NAME_MAX
#define MEMBER_NAME_MAX (16 + CV_ULID_LEN + 1 + SAFE_NAME_MAX + 1)
#define EXPORT_DOCS_MAX 10000 /* documents of one case */

enum member_src { SRC_BUF, SRC_ENTRIES, SRC_PROOFS, SRC_BLOB, SRC_DIR };

struct member {
    char name[MEMBER_NAME_MAX];
    enum member_src src;
    int compress;
    uint64_t size;
    char sha256[65];
    const char *buf; /* SRC_BUF: borrowed from the export */
    char blob_id[CV_ULID_LEN + 1];
};

struct export_doc {
    char id[CV_ULID_LEN + 1];
    char kind[20];
    char source_format[16];
    char original_blob[CV_ULID_LEN + 1];
    char normalized_blob[CV_ULID_LEN + 1];
    char original_sha256[65];
    char normalized_sha256[65];
    int64_t original_size, width, height, orientation, round;
    char created_at[CV_TIME_LEN + 1];
    char safe_name[SAFE_NAME_MAX + 1];
    int superseded_as_of;
};

struct cv_export {
    struct cv_datadir *dd;
    char case_id[CV_ULID_LEN + 1];
    enum cv_archive_format format;
    uint64_t as_of;
    int encrypted;
    uint8_t recipient[32];
    struct cv_case_info info;
    struct cv_case_identity *idn; /* sodium_malloc */
    char *checkpoint;             /* signed note at as_of */
    int written;
};

/* ---- small helpers ---- */

static int hex64_ok(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff]Z" to seconds since the epoch (UTC). */
static int64_t parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t < 0 ? 0 : (int64_t)t;
}

static int is_read_action(const char *a)
{
    size_t n = strlen(a);
    return strcmp(a, "export.create") == 0 || (n >= 5 && strcmp(a + n - 5, ".view") == 0);
}

cv_status cv_export_safe_name(const char *in, char *out, size_t cap)
{
    cv_status rc = CV_E_INTERNAL;
    utf8proc_uint8_t *nfc = NULL;
    char *clean = NULL, *san = NULL;
    if (cap <= SAFE_NAME_MAX)
        return CV_E_LIMIT;
    size_t len = strlen(in);
    /* 1. invalid UTF-8 -> U+FFFD (3 bytes per bad byte at most) */
    if ((clean = malloc(len * 3 + 1)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    size_t o = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)in;
    utf8proc_ssize_t left = (utf8proc_ssize_t)len;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k < 0) {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
            left--;
        } else {
            memcpy(clean + o, p, (size_t)k);
            o += (size_t)k;
            p += k;
            left -= k;
        }
    }
    clean[o] = '\0';
    /* 2. NFC */
    if ((nfc = utf8proc_NFC((const utf8proc_uint8_t *)clean)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    /* 3. replace separators, controls, format characters (into san) */
    size_t nlen = strlen((const char *)nfc);
    if ((san = malloc(nlen + 1)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    o = 0;
    p = nfc;
    left = (utf8proc_ssize_t)nlen;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k <= 0)
            break; /* cannot happen after step 1 */
        utf8proc_category_t cat = utf8proc_category(cp);
        int bad = cp == '/' || cp == '\\' || cp == ':' || cat == UTF8PROC_CATEGORY_CC ||
                  cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                  cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN ||
                  cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
        if (!(o == 0 && (cp == '.' || cp == ' '))) {
            if (bad)
                san[o++] = '_';
            else {
                memcpy(san + o, p, (size_t)k);
                o += (size_t)k;
            }
        }
        p += k;
        left -= k;
    }
    while (o > 0 && san[o - 1] == ' ')
        o--;
    san[o] = '\0';
    /* 4. at most SAFE_NAME_MAX bytes: cut the stem at a character boundary,
     * keeping a short ASCII extension (".jpg") */
    if (o > SAFE_NAME_MAX) {
        size_t ext = 0;
        const char *dot = strrchr(san, '.');
        if (dot != NULL && dot != san && strlen(dot) <= 11) {
            ext = strlen(dot);
            for (size_t i = 1; i < ext; i++)
                if (!((dot[i] >= 'a' && dot[i] <= 'z') || (dot[i] >= 'A' && dot[i] <= 'Z') ||
                      (dot[i] >= '0' && dot[i] <= '9')))
                    ext = 0;
        }
        size_t stem = SAFE_NAME_MAX - ext;
        while (stem > 0 && ((unsigned char)san[stem] & 0xC0) == 0x80)
            stem--; /* san[stem] must start a character */
        memmove(san + stem, san + o - ext, ext);
        o = stem + ext;
        san[o] = '\0';
    }
    if (o == 0) {
        memcpy(out, "file", 5);
    } else {
        memcpy(out, san, o + 1);
    }
    rc = CV_OK;
out:
    free(san);
    free(nfc);
    free(clean);
    return rc;
}

/* ---- prepare ---- */

static cv_status case_entries_before(sqlite3 *c, const char *case_id, uint64_t n, int64_t *count)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, "SELECT COUNT(*) FROM audit_entries WHERE case_id=? AND seq<?", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)n);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    *count = sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_export_prepare(struct cv_datadir *dd, const struct cv_export_params *p,
                            struct cv_export **out)
{
    cv_status rc = CV_E_INTERNAL;
    struct cv_export *x = NULL;
    json_t *details = NULL;
    int in_txn = 0;
    if (p == NULL || p->case_id == NULL || p->actor == NULL)
        return CV_E_ARG;
    if (!cv_ulid_valid(p->case_id))
        return CV_E_NOT_FOUND;
    if ((x = calloc(1, sizeof *x)) == NULL)
        return CV_E_NOMEM;
    if ((x->idn = sodium_malloc(sizeof *x->idn)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    x->dd = dd;
    snprintf(x->case_id, sizeof x->case_id, "%s", p->case_id);
    x->format = p->format;
    if (p->recipient != NULL) {
        x->encrypted = 1;
        memcpy(x->recipient, p->recipient, 32);
    }
    if ((rc = cv_db_begin(dd->db)) != CV_OK)
        goto out;
    in_txn = 1;
    if ((rc = cv_case_get(dd->db, 1, x->case_id, &x->info)) != CV_OK)
        goto out;
    uint64_t size = 0;
    if ((rc = cv_audit_size_in_txn(dd->db, &size)) != CV_OK)
        goto out;
    x->as_of = p->as_of ? p->as_of : size;
    if (x->as_of == 0 || x->as_of > size) {
        rc = CV_E_RANGE;
        goto out;
    }
    int64_t count = 0;
    if ((rc = case_entries_before(cv_db_writer(dd->db), x->case_id, x->as_of, &count)) != CV_OK)
        goto out;
    if (count == 0) {
        rc = CV_E_RANGE;
        goto out;
    }
    if ((rc = cv_case_identity_read(dd->db, dd->kr, x->case_id, p->actor, x->idn)) != CV_OK)
        goto out;
    details = json_pack("{s:I,s:s,s:b}", "as_of", (json_int_t)x->as_of, "format",
                        x->format == CV_ARCHIVE_ZIP ? "zip" : "tar", "encrypted", x->encrypted);
    if (details == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    struct cv_audit_event ev = {.action = "export.create",
                                .actor_id = p->actor->id,
                                .actor_role = p->actor->role,
                                .case_id = x->case_id,
                                .request_id = p->actor->request_id,
                                .client = p->actor->client,
                                .details = details};
    if ((rc = cv_audit_append(dd->db, &ev, NULL)) != CV_OK)
        goto out;
    if ((rc = cv_db_commit(dd->db)) != CV_OK)
        goto out;
    in_txn = 0;
    if ((rc = cv_audit_checkpoint_at(dd->db, dd->kr, x->as_of, &x->checkpoint)) != CV_OK)
        goto out;
    *out = x;
    x = NULL;
    rc = CV_OK;
out:
    if (in_txn)
        cv_db_rollback(dd->db);
    json_decref(details);
    cv_export_free(x);
    return rc;
}

uint64_t cv_export_as_of(const struct cv_export *x)
{
    return x->as_of;
}

void cv_export_free(struct cv_export *x)
{
    if (x == NULL)
        return;
    if (x->idn != NULL)
        sodium_free(x->idn);
    free(x->checkpoint);
    free(x);
}

/* ---- the case's entries as of N ---- */

typedef cv_status (*emit_fn)(void *arg, const void *data, size_t len);

/* Calls fn(arg, seq, entry, len, leaf) for the case's entries below N, in order. */
typedef cv_status (*entry_fn)(void *arg, uint64_t seq, const char *entry, size_t len,
                              const uint8_t *leaf);

#define ENTRY_BATCH 64 /* entries copied out of one read before the callbacks run */

struct entry_row {
    uint64_t seq;
    char *entry;
    size_t len;
    uint8_t leaf[32];
};

/* Reads entries in batches and releases the reader connection before the
 * callbacks run: a callback (inclusion proofs) needs a reader of its own,
 * and the CLI opens only one. */
static cv_status each_case_entry(struct cv_export *x, entry_fn fn, void *arg)
{
    cv_status rc = CV_E_DB;
    struct entry_row rows[ENTRY_BATCH];
    size_t nrows = 0;
    int64_t after = -1;
    for (;;) {
        sqlite3 *c = cv_db_reader_get(x->dd->db);
        sqlite3_stmt *st = NULL;
        int s = SQLITE_ERROR;
        nrows = 0;
        if (c == NULL)
            return CV_E_DB;
        if (sqlite3_prepare_v2(c,
                               "SELECT seq, entry, leaf_hash FROM audit_entries WHERE case_id=? "
                               "AND seq<? AND seq>? ORDER BY seq LIMIT ?",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, x->case_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)x->as_of);
            sqlite3_bind_int64(st, 3, after);
            sqlite3_bind_int(st, 4, ENTRY_BATCH);
            while ((s = sqlite3_step(st)) == SQLITE_ROW) {
                struct entry_row *r = &rows[nrows];
                size_t len = (size_t)sqlite3_column_bytes(st, 1);
                if (sqlite3_column_bytes(st, 2) != 32 || (r->entry = malloc(len + 1)) == NULL) {
                    s = SQLITE_ERROR;
                    break;
                }
                r->seq = (uint64_t)sqlite3_column_int64(st, 0);
                memcpy(r->entry, sqlite3_column_text(st, 1), len);
                r->entry[len] = '\0';
                r->len = len;
                memcpy(r->leaf, sqlite3_column_blob(st, 2), 32);
                nrows++;
            }
        }
        sqlite3_finalize(st);
        cv_db_reader_put(x->dd->db, c);
        if (s != SQLITE_DONE) {
            rc = CV_E_DB;
            goto out;
        }
        for (size_t i = 0; i < nrows; i++)
            if ((rc = fn(arg, rows[i].seq, rows[i].entry, rows[i].len, rows[i].leaf)) != CV_OK)
                goto out;
        if (nrows < ENTRY_BATCH)
            break;
        after = (int64_t)rows[nrows - 1].seq;
        for (size_t i = 0; i < nrows; i++)
            free(rows[i].entry);
    }
    rc = CV_OK;
out:
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].entry);
    return rc;
}

struct scan {
    json_t *history;    /* array of state changes */
    json_t *object_ids; /* object -> true */
    int64_t last_change;
    cv_status err;
};

static cv_status scan_entry(void *arg, uint64_t seq, const char *entry, size_t len,
                            const uint8_t *leaf)
{
    struct scan *s = arg;
    (void)leaf;
    json_t *j = json_loadb(entry, len, 0, NULL);
    if (j == NULL)
        return CV_E_AUDIT_MISMATCH;
    const char *action = json_string_value(json_object_get(j, "action"));
    const char *time = json_string_value(json_object_get(j, "time"));
    const char *obj = json_string_value(json_object_get(j, "object_id"));
    json_t *det = json_object_get(j, "details");
    const char *to = json_string_value(json_object_get(det, "to"));
    if (action == NULL) {
        json_decref(j);
        return CV_E_AUDIT_MISMATCH;
    }
    if (obj != NULL)
        json_object_set_new(s->object_ids, obj, json_true());
    if (!is_read_action(action))
        s->last_change = parse_time(time);
    if (strcmp(action, "case.create") == 0)
        to = "draft";
    if (to != NULL) {
        json_t *h = json_pack("{s:I,s:s,s:s?,s:s,s:O?}", "seq", (json_int_t)seq, "action", action,
                              "time", time, "to", to, "actor_role",
                              json_object_get(json_object_get(j, "actor"), "role"));
        if (h != NULL) {
            const char *from = json_string_value(json_object_get(det, "from"));
            if (from != NULL)
                json_object_set_new(h, "from", json_string(from));
            const char *dec = json_string_value(json_object_get(det, "decision"));
            if (dec != NULL)
                json_object_set_new(h, "decision", json_string(dec));
            json_array_append_new(s->history, h);
        }
    }
    json_decref(j);
    return CV_OK;
}

/* entries.jsonl: each entry's exact bytes then "\n". */
struct emit_ctx {
    emit_fn fn;
    void *arg;
    uint64_t as_of;
    int first;
};

static cv_status emit_entry_line(void *arg, uint64_t seq, const char *entry, size_t len,
                                 const uint8_t *leaf)
{
    struct emit_ctx *e = arg;
    (void)seq;
    (void)leaf;
    cv_status rc = e->fn(e->arg, entry, len);
    if (rc == CV_OK)
        rc = e->fn(e->arg, "\n", 1);
    return rc;
}

static void b64(const uint8_t h[32], char out[45])
{
    sodium_bin2base64(out, 45, h, 32, sodium_base64_VARIANT_ORIGINAL);
}

/* struct used by proofs.json (held in the heap: ~2 KiB) */
struct proof_ctx {
    struct emit_ctx e;
    struct cv_db *db;
    struct cv_audit_proof proof;
    char line[CV_MERKLE_MAX_PROOF * 48 + 256];
};

static cv_status emit_proof(void *arg, uint64_t seq, const char *entry, size_t len,
                            const uint8_t *leaf)
{
    struct proof_ctx *p = arg;
    (void)entry;
    (void)len;
    (void)leaf;
    cv_status rc = cv_audit_inclusion_proof(p->db, seq, p->e.as_of, &p->proof);
    if (rc != CV_OK)
        return rc;
    char h[45];
    b64(p->proof.leaf, h);
    int n = snprintf(p->line, sizeof p->line, "%s\n{\"hashes\":[", p->e.first ? "" : ",");
    for (size_t i = 0; i < p->proof.n; i++) {
        char s[45];
        b64(p->proof.hashes[i], s);
        n += snprintf(p->line + n, sizeof p->line - (size_t)n, "%s\"%s\"", i ? "," : "", s);
    }
    n += snprintf(p->line + n, sizeof p->line - (size_t)n, "],\"index\":%llu,\"leaf_hash\":\"%s\"}",
                  (unsigned long long)seq, h);
    p->e.first = 0;
    return p->e.fn(p->e.arg, p->line, (size_t)n);
}

static cv_status gen_entries(struct cv_export *x, emit_fn fn, void *arg)
{
    struct emit_ctx e = {fn, arg, x->as_of, 1};
    return each_case_entry(x, emit_entry_line, &e);
}

static cv_status gen_proofs(struct cv_export *x, emit_fn fn, void *arg)
{
    cv_status rc = CV_E_INTERNAL;
    struct proof_ctx *p = calloc(1, sizeof *p);
    char head[128];
    if (p == NULL)
        return CV_E_NOMEM;
    p->e = (struct emit_ctx){fn, arg, x->as_of, 1};
    p->db = x->dd->db;
    int n = snprintf(head, sizeof head,
                     "{\"hash\":\"SHA-256\",\"leaf\":\"RFC 9162 SHA-256(0x00||line)\","
                     "\"tree_size\":%llu,\"proofs\":[",
                     (unsigned long long)x->as_of);
    if ((rc = fn(arg, head, (size_t)n)) != CV_OK)
        goto out;
    if ((rc = each_case_entry(x, emit_proof, p)) != CV_OK)
        goto out;
    if ((rc = fn(arg, "\n]}\n", 4)) != CV_OK)
        goto out;
    rc = CV_OK;
out:
    free(p);
    return rc;
}

/* First pass: size and SHA-256 of a generated member. */
struct hash_ctx {
    struct cv_sha256 *h;
    uint64_t size;
};

static cv_status hash_emit(void *arg, const void *data, size_t len)
{
    struct hash_ctx *c = arg;
    cv_sha256_update(c->h, data, len);
    c->size += len;
    return CV_OK;
}

static cv_status measure(struct cv_export *x, cv_status (*gen)(struct cv_export *, emit_fn, void *),
                         struct member *m)
{
    struct hash_ctx c = {cv_sha256_new(), 0};
    uint8_t d[32];
    if (c.h == NULL)
        return CV_E_NOMEM;
    cv_status rc = gen(x, hash_emit, &c);
    if (rc != CV_OK) {
        cv_sha256_free(c.h);
        return rc;
    }
    cv_sha256_final(c.h, d);
    cv_hex_encode(d, 32, m->sha256);
    m->size = c.size;
    return CV_OK;
}

static void measure_buf(struct member *m, const char *buf)
{
    uint8_t d[32];
    m->buf = buf;
    m->size = strlen(buf);
    cv_sha256(buf, m->size, d);
    cv_hex_encode(d, 32, m->sha256);
}

/* ---- documents as of N ---- */

static cv_status load_docs(struct cv_export *x, json_t *object_ids, struct export_doc **docs,
                           size_t *ndocs)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = cv_db_reader_get(x->dd->db);
    sqlite3_stmt *st = NULL;
    struct export_doc *v = NULL;
    size_t n = 0, cap = 0;
    char *fname = NULL;
    size_t fname_len = 0;
    if (c == NULL)
        return CV_E_DB;
    if (sqlite3_prepare_v2(c,
                           "SELECT id, kind, source_format, original_blob_id, normalized_blob_id, "
                           "original_sha256, normalized_sha256, original_size, width, height, "
                           "orientation_applied, round, created_at, file_name_enc FROM documents "
                           "WHERE case_id=? ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, x->case_id, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id == NULL || json_object_get(object_ids, id) == NULL)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct export_doc *nv = nc > EXPORT_DOCS_MAX ? NULL : realloc(v, nc * sizeof *v);
            if (nv == NULL) {
                rc = nc > EXPORT_DOCS_MAX ? CV_E_LIMIT : CV_E_NOMEM;
                goto out;
            }
            v = nv;
            cap = nc;
        }
        struct export_doc *d = &v[n];
        memset(d, 0, sizeof *d);
        const char *t[7];
        for (int i = 0; i < 7; i++)
            t[i] = (const char *)sqlite3_column_text(st, i);
        const char *created = (const char *)sqlite3_column_text(st, 12);
        if (!cv_ulid_valid(t[0]) || !cv_ulid_valid(t[3]) || !cv_ulid_valid(t[4]) ||
            !hex64_ok(t[5]) || !hex64_ok(t[6]) || t[1] == NULL || t[2] == NULL || created == NULL) {
            rc = CV_E_DB;
            goto out;
        }
        snprintf(d->id, sizeof d->id, "%s", t[0]);
        snprintf(d->kind, sizeof d->kind, "%s", t[1]);
        snprintf(d->source_format, sizeof d->source_format, "%s", t[2]);
        snprintf(d->original_blob, sizeof d->original_blob, "%s", t[3]);
        snprintf(d->normalized_blob, sizeof d->normalized_blob, "%s", t[4]);
        snprintf(d->original_sha256, sizeof d->original_sha256, "%s", t[5]);
        snprintf(d->normalized_sha256, sizeof d->normalized_sha256, "%s", t[6]);
        d->original_size = sqlite3_column_int64(st, 7);
        d->width = sqlite3_column_int64(st, 8);
        d->height = sqlite3_column_int64(st, 9);
        d->orientation = sqlite3_column_int64(st, 10);
        d->round = sqlite3_column_int64(st, 11);
        snprintf(d->created_at, sizeof d->created_at, "%s", created);
        if (sqlite3_column_type(st, 13) == SQLITE_BLOB) {
            if ((rc = cv_field_open(
                     x->dd->kr, "documents", "file_name", d->id, sqlite3_column_blob(st, 13),
                     (size_t)sqlite3_column_bytes(st, 13), &fname, &fname_len)) != CV_OK)
                goto out;
            rc = cv_export_safe_name(fname, d->safe_name, sizeof d->safe_name);
            sodium_memzero(fname, fname_len);
            free(fname);
            fname = NULL;
            if (rc != CV_OK)
                goto out;
        } else {
            snprintf(d->safe_name, sizeof d->safe_name, "original.%s", d->source_format);
        }
        n++;
    }
    if (s != SQLITE_DONE) {
        rc = CV_E_DB;
        goto out;
    }
    /* superseded as of N: a later document of the same kind exists */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(v[i].kind, v[j].kind) == 0)
                v[i].superseded_as_of = 1;
    *docs = v;
    *ndocs = n;
    v = NULL;
    rc = CV_OK;
out:
    if (fname != NULL) {
        sodium_memzero(fname, fname_len);
        free(fname);
    }
    free(v);
    sqlite3_finalize(st);
    cv_db_reader_put(x->dd->db, c);
    return rc;
}

/* ---- case.json ---- */

static char *case_json(struct cv_export *x, const struct scan *s, const struct export_doc *docs,
                       size_t ndocs)
{
    const struct cv_case_identity *i = x->idn;
    json_t *docs_j = json_array();
    for (size_t k = 0; k < ndocs; k++) {
        const struct export_doc *d = &docs[k];
        char norm[MEMBER_NAME_MAX], orig[MEMBER_NAME_MAX];
        snprintf(norm, sizeof norm, "documents/%s-%s.jpg", d->id, d->kind);
        snprintf(orig, sizeof orig, "originals/%s-%s", d->id, d->safe_name);
        json_array_append_new(
            docs_j,
            json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:b}", "id", d->id, "kind",
                      d->kind, "source_format", d->source_format, "original_size",
                      (json_int_t)d->original_size, "original_sha256", d->original_sha256,
                      "normalized_sha256", d->normalized_sha256, "created_at", d->created_at,
                      "width", (json_int_t)d->width, "height", (json_int_t)d->height,
                      "orientation_applied", (json_int_t)d->orientation, "round",
                      (json_int_t)d->round, "normalized", norm, "superseded", d->superseded_as_of));
        json_object_set_new(json_array_get(docs_j, k), "original", json_string(orig));
    }
    const char *status = "?";
    size_t nh = json_array_size(s->history);
    if (nh > 0)
        status = json_string_value(json_object_get(json_array_get(s->history, nh - 1), "to"));
    json_t *idn =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", i->name, "id_type", x->info.id_type, "id_number",
                  i->id_number, "mobile", i->mobile, "contact_mobile", i->contact_mobile);
    if (idn != NULL && i->enterprise_name[0])
        json_object_set_new(idn, "enterprise_name", json_string(i->enterprise_name));
    if (idn != NULL && i->uscc[0])
        json_object_set_new(idn, "uscc", json_string(i->uscc));
    json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:O,s:o}", "format",
                             "casevault-case-export/1", "case_id", x->case_id, "account_id",
                             x->info.account_id, "applicant_type", x->info.applicant_type,
                             "status_as_of", status ? status : "?", "as_of", (json_int_t)x->as_of,
                             "identity", idn, "status_history", s->history, "documents", docs_j);
    if (root == NULL)
        return NULL;
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *withnl = realloc(text, n + 2);
    if (withnl == NULL) {
        sodium_memzero(text, n);
        free(text);
        return NULL;
    }
    withnl[n] = '\n';
    withnl[n + 1] = '\0';
    return withnl;
}

/* ---- writing ---- */

/*
 * Every archive byte goes through guarded(). libarchive 3.6.2 leaks its
 * client-filter state when a write callback fails (the archive turns FATAL
 * and archive_write_free skips the close), so a failing sink never reports
 * failure to libarchive: the error is kept in sink_err, the export checks
 * it after each write and stops, and from then on nothing more leaves (not
 * even the padding and trailer that freeing the writer produces).
 */
struct sink_chain {
    struct cv_age_writer *age;
    cv_archive_sink_fn sink;
    void *arg;
    int dead;
    cv_status sink_err;
};

static cv_status guarded(void *arg, const uint8_t *data, size_t len)
{
    struct sink_chain *c = arg;
    if (c->dead)
        return CV_OK;
    cv_status rc =
        c->age != NULL ? cv_age_writer_write(c->age, data, len) : c->sink(c->arg, data, len);
    if (rc != CV_OK) {
        c->sink_err = rc;
        c->dead = 1;
    }
    return CV_OK;
}

/* cv_archive_write, then the sink's error if it failed meanwhile. */
static cv_status awrite(struct cv_archive_writer *w, const struct sink_chain *c, const void *data,
                        size_t len)
{
    cv_status rc = cv_archive_write(w, data, len);
    return rc != CV_OK ? rc : c->sink_err;
}

struct arch_emit {
    struct cv_archive_writer *w;
    const struct sink_chain *c;
};

static cv_status arch_emit(void *arg, const void *data, size_t len)
{
    struct arch_emit *a = arg;
    return awrite(a->w, a->c, data, len);
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

/*
 * Blob members are decrypted by one helper thread, in member order, into a
 * ring of PIPE_SLOTS buffers while the caller writes earlier slots into
 * the archive: decryption and the archive/pipe writes overlap on two cores,
 * across blob boundaries too (the helper opens the next blob while the
 * caller still writes the previous one). A slot holds bytes of one member
 * only, at most what is left of its recorded size, so the caller takes
 * slots until it has the member's size. Memory: PIPE_SLOTS * PIPE_SLOT,
 * whatever the case holds.
 *
 * The plaintext is not hashed again here. Every chunk is authenticated by
 * XChaCha20-Poly1305 under a data key wrapped for this blob id (the header
 * carries the id, the stream must end with TAG_FINAL and add up to the
 * recorded size), so a byte that differs from what was put fails the read;
 * the manifest's SHA-256 was computed over that same put stream and matches
 * the blobs row (checked when the member was measured). Hashing again cost
 * a fifth of the export's CPU (bench/export) and caught nothing the AEAD
 * does not; the auditor's `sha256sum -c` is the end-to-end check.
 */
#define PIPE_SLOTS 4
#define PIPE_SLOT  (256 * 1024)

struct blob_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cv_export *x;
    const struct member *m;
    size_t nm;
    uint8_t *buf[PIPE_SLOTS];
    size_t len[PIPE_SLOTS];
    unsigned head, count;
    int done, stop; /* done: the helper has finished (err says how) */
    cv_status err;
};

/* Decrypt one blob member into the ring; CV_E_SHUTDOWN once told to stop. */
static cv_status pipe_blob(struct blob_pipe *p, const struct member *e)
{
    struct cv_blob_reader *r = NULL;
    uint8_t end;
    size_t got = 0;
    cv_status rc = cv_blob_get_open(p->x->dd->bs, e->blob_id, &r);
    if (rc != CV_OK)
        return rc;
    cv_blob_get_skip_hash(r);
    for (uint64_t left = e->size; left > 0; left -= got) {
        pthread_mutex_lock(&p->mu);
        while (p->count == PIPE_SLOTS && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        unsigned slot = (p->head + p->count) % PIPE_SLOTS;
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            rc = CV_E_SHUTDOWN;
            goto out;
        }
        size_t want = left < PIPE_SLOT ? (size_t)left : PIPE_SLOT;
        if ((rc = cv_blob_get_read(r, p->buf[slot], want, &got)) != CV_OK)
            goto out;
        if (got == 0) {
            rc = CV_E_BLOB_SIZE; /* unreachable: the reader checks the size */
            goto out;
        }
        pthread_mutex_lock(&p->mu);
        p->len[slot] = got;
        p->count++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    /* the end: TAG_FINAL, no trailing byte, the recorded size */
    rc = cv_blob_get_read(r, &end, 1, &got);
    if (rc == CV_OK && got != 0)
        rc = CV_E_BLOB_SIZE;
out:
    cv_blob_get_close(r);
    return rc;
}

static void *pipe_reader(void *arg)
{
    struct blob_pipe *p = arg;
    cv_status rc = CV_OK;
    for (size_t k = 0; k < p->nm && rc == CV_OK; k++)
        if (p->m[k].src == SRC_BLOB)
            rc = pipe_blob(p, &p->m[k]);
    pthread_mutex_lock(&p->mu);
    p->err = rc;
    p->done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Write blob member e from the ring into the archive. */
static cv_status write_blob(struct blob_pipe *p, struct cv_archive_writer *w,
                            const struct sink_chain *c, const struct member *e)
{
    cv_status rc = CV_OK;
    for (uint64_t left = e->size; left > 0;) {
        pthread_mutex_lock(&p->mu);
        while (p->count == 0 && !p->done)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0) {
            rc = p->err != CV_OK ? p->err : CV_E_INTERNAL;
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        unsigned slot = p->head;
        pthread_mutex_unlock(&p->mu);
        size_t len = p->len[slot];
        if (len > left)
            return CV_E_INTERNAL; /* a slot never spans two members */
        rc = awrite(w, c, p->buf[slot], len);
        left -= len;
        pthread_mutex_lock(&p->mu);
        p->head = (p->head + 1) % PIPE_SLOTS;
        p->count--;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (rc != CV_OK)
            return rc;
    }
    return CV_OK;
}

/* Stop the helper (if still running), wait for it; its error, if any. */
static cv_status pipe_stop(struct blob_pipe *p, pthread_t t)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(t, NULL);
    return p->err;
}

cv_status cv_export_write(struct cv_export *x, cv_archive_sink_fn sink, void *arg)
{
    cv_status rc = CV_E_INTERNAL;
    struct scan s = {json_array(), json_object(), 0, CV_OK};
    struct export_doc *docs = NULL;
    size_t ndocs = 0;
    struct member *m = NULL;
    size_t nm = 0;
    char *casej = NULL, *manifest = NULL, *sig = NULL;
    uint8_t *slots = NULL;
    struct sink_chain chain = {NULL, sink, arg, 0, CV_OK};
    struct cv_archive_writer *w = NULL;
    struct blob_pipe pipe;
    pthread_t helper;
    int helping = 0;
    memset(&pipe, 0, sizeof pipe);
    pthread_mutex_init(&pipe.mu, NULL);
    pthread_cond_init(&pipe.cv, NULL);
    if (x->written)
        return CV_E_ARG;
    x->written = 1;
    if (s.history == NULL || s.object_ids == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    if ((rc = each_case_entry(x, scan_entry, &s)) != CV_OK)
        goto out;
    if ((rc = load_docs(x, s.object_ids, &docs, &ndocs)) != CV_OK)
        goto out;
    if ((casej = case_json(x, &s, docs, ndocs)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    if ((m = calloc(8 + 2 * ndocs, sizeof *m)) == NULL ||
        (slots = malloc((size_t)PIPE_SLOTS * PIPE_SLOT)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    /* members other than the manifest and its signature */
    snprintf(m[nm].name, MEMBER_NAME_MAX, "audit/checkpoint");
    m[nm].compress = 1;
    measure_buf(&m[nm++], x->checkpoint);
    snprintf(m[nm].name, MEMBER_NAME_MAX, "audit/entries.jsonl");
    m[nm].src = SRC_ENTRIES;
    m[nm].compress = 1;
    if ((rc = measure(x, gen_entries, &m[nm++])) != CV_OK)
        goto out;
    snprintf(m[nm].name, MEMBER_NAME_MAX, "audit/proofs.json");
    m[nm].src = SRC_PROOFS;
    m[nm].compress = 1;
    if ((rc = measure(x, gen_proofs, &m[nm++])) != CV_OK)
        goto out;
    snprintf(m[nm].name, MEMBER_NAME_MAX, "case.json");
    m[nm].compress = 1;
    measure_buf(&m[nm++], casej);
    for (size_t k = 0; k < ndocs; k++) {
        const struct export_doc *d = &docs[k];
        struct cv_blob_info bi;
        for (int o = 0; o < 2; o++) {
            struct member *e = &m[nm++];
            e->src = SRC_BLOB;
            if (o == 0)
                snprintf(e->name, MEMBER_NAME_MAX, "documents/%s-%s.jpg", d->id, d->kind);
            else
                snprintf(e->name, MEMBER_NAME_MAX, "originals/%s-%s", d->id, d->safe_name);
            snprintf(e->blob_id, sizeof e->blob_id, "%s",
                     o == 0 ? d->normalized_blob : d->original_blob);
            snprintf(e->sha256, sizeof e->sha256, "%s",
                     o == 0 ? d->normalized_sha256 : d->original_sha256);
            if ((rc = cv_blob_lookup(x->dd->bs, e->blob_id, &bi)) != CV_OK)
                goto out;
            char bh[65];
            cv_hex_encode(bi.sha256, 32, bh);
            if (strcmp(bh, e->sha256) != 0) {
                rc = CV_E_BLOB_HASH; /* the documents and blobs rows disagree */
                goto out;
            }
            e->size = bi.size;
            sodium_memzero(&bi, sizeof bi);
        }
    }
    qsort(m, nm, sizeof *m, member_cmp);
    /* MANIFEST.sha256 and its signature */
    size_t mcap = nm * (64 + 2 + MEMBER_NAME_MAX + 1) + 1, mlen = 0;
    if ((manifest = malloc(mcap)) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    for (size_t k = 0; k < nm; k++)
        mlen += (size_t)snprintf(manifest + mlen, mcap - mlen, "%s  %s\n", m[k].sha256, m[k].name);
    char comment[128];
    snprintf(comment, sizeof comment, "casevault export case=%s as_of=%llu", x->case_id,
             (unsigned long long)x->as_of);
    if ((rc = cv_minisign_sign(x->dd->kr, manifest, mlen, comment, &sig)) != CV_OK)
        goto out;
    /* the stream */
    if (x->encrypted && (rc = cv_age_writer_new(x->recipient, sink, arg, &chain.age)) != CV_OK)
        goto out;
    if ((rc = cv_archive_writer_new(x->format, guarded, &chain, &w)) != CV_OK)
        goto out;
    int64_t mt = s.last_change;
    if ((rc = cv_archive_add_buffer(w, "MANIFEST.sha256", manifest, mlen, mt, 1)) != CV_OK ||
        (rc = cv_archive_add_buffer(w, "MANIFEST.sha256.minisig", sig, strlen(sig), mt, 1)) !=
            CV_OK)
        goto out;
    pipe.x = x;
    pipe.m = m;
    pipe.nm = nm;
    for (unsigned i = 0; i < PIPE_SLOTS; i++)
        pipe.buf[i] = slots + (size_t)i * PIPE_SLOT;
    if (pthread_create(&helper, NULL, pipe_reader, &pipe) != 0) {
        rc = CV_E_NOMEM;
        goto out;
    }
    helping = 1;
    char dir[16] = "";
    for (size_t k = 0; k < nm; k++) {
        const struct member *e = &m[k];
        const char *slash = strchr(e->name, '/');
        if (slash != NULL && ((size_t)(slash - e->name) != strlen(dir) ||
                              strncmp(dir, e->name, (size_t)(slash - e->name)) != 0)) {
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - e->name), e->name);
            if ((rc = cv_archive_add_dir(w, dir, mt)) != CV_OK)
                goto out;
        }
        if ((rc = cv_archive_begin_file(w, e->name, e->size, mt, e->compress)) != CV_OK)
            goto out;
        struct arch_emit ae = {w, &chain};
        switch (e->src) {
        case SRC_BUF: rc = awrite(w, &chain, e->buf, e->size); break;
        case SRC_ENTRIES: rc = gen_entries(x, arch_emit, &ae); break;
        case SRC_PROOFS: rc = gen_proofs(x, arch_emit, &ae); break;
        case SRC_BLOB: rc = write_blob(&pipe, w, &chain, e); break;
        case SRC_DIR: rc = CV_E_INTERNAL; break;
        }
        if (rc != CV_OK)
            goto out;
        if ((rc = cv_archive_end_file(w)) != CV_OK || (rc = chain.sink_err) != CV_OK)
            goto out;
    }
    /* the last blob's end checks are done before the trailer goes out */
    helping = 0;
    if ((rc = pipe_stop(&pipe, helper)) != CV_OK)
        goto out;
    if ((rc = cv_archive_writer_finish(w)) != CV_OK || (rc = chain.sink_err) != CV_OK)
        goto out;
    if (chain.age != NULL && (rc = cv_age_writer_finish(chain.age)) != CV_OK)
        goto out;
    rc = CV_OK;
out:
    if (helping)
        (void)pipe_stop(&pipe, helper);
    pthread_cond_destroy(&pipe.cv);
    pthread_mutex_destroy(&pipe.mu);
    chain.dead = rc != CV_OK;
    cv_archive_writer_free(w);
    cv_age_writer_free(chain.age);
    if (casej != NULL) {
        sodium_memzero(casej, strlen(casej));
        free(casej);
    }
    free(manifest);
    free(sig);
    if (slots != NULL) {
        sodium_memzero(slots, (size_t)PIPE_SLOTS * PIPE_SLOT);
        free(slots);
    }
    free(m);
    free(docs);
    json_decref(s.history);
    json_decref(s.object_ids);
    return rc;
}

static cv_status fd_sink(void *arg, const uint8_t *data, size_t len)
{
    return cv_write_all(*(int *)arg, data, len);
}

cv_status cv_export_write_fd(struct cv_export *x, int fd)
{
    return cv_export_write(x, fd_sink, &fd);
}
