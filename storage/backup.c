/*
 * storage/backup: hot backups as signed tar streams, and restore.
 *
 * DESIGN NOTES
 * 1. Snapshot: VACUUM INTO from a reader connection is one read transaction
 *    in WAL mode, so writers continue (STACK-NOTES §5). SQLite does not fsync
 *    its output: we switch the copy to journal_mode=DELETE (a restored file
 *    then needs no -wal), read what we need from it, and fsync file and
 *    directory before anything streams.
 * 2. Which blobs: the snapshot's own `blobs` table (what it references,
 *    nothing more). Blob files are published (renamed + directory fsync)
 *    before their row commits, so each one exists; they are immutable, so
 *    the bytes streamed are the bytes the row describes. Incremental: the
 *    rows whose backup_blob_log.seq (AUTOINCREMENT, filled by a trigger) is
 *    above the base backup's watermark.
 * 3. The tar entries' sizes must be known before their data (libarchive):
 *    they are the sizes stat'ed in prepare; a file that changed size is an
 *    error, never a silently padded entry.
 * 4. Restore never extracts generically: each entry name must be one of the
 *    layout's, data goes with openat(O_CREAT|O_EXCL|O_NOFOLLOW) into a flat
 *    0700 staging directory inside the target, and only after every hash,
 *    the signature, the chain, every referenced blob and every referenced
 *    key checked out are files renamed into place. Any failure empties the
 *    target again (it was empty when we started).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "casevault/archive.h"
#include "casevault/audit.h"
#include "casevault/backup.h"
#include "casevault/datadir.h"
#include "casevault/keyring.h"
#include "casevault/minisign.h"
#include "db_internal.h"
#include "readahead.h"

#define IO_BUF        (1u << 20)
#define SINK_BUF      (256u << 10)
#define MAX_JSON      (1u << 20)
#define MAX_MANIFEST  (256u << 20)
#define MAX_SIG       4096u
#define MAX_KEY_FILE  (64u << 10)
#define BLOB_NAME_LEN 38 /* "blobs/xx/yy/" + ULID */

struct bk_blob {
    char id[CV_ULID_LEN + 1];
    uint64_t size;
};

struct cv_backup_job {
    struct cv_datadir *dd;
    struct cv_backup_info info;
    char dir[PATH_MAX];
    char snap[PATH_MAX];
    struct bk_blob *blobs;
    size_t nblobs;
    int64_t mtime;
    int streamed;
    int lockfd; /* flock on dir while the job lives: sweeps leave it alone */
};

/* ---- small helpers ---- */

static void blob_rel(const char *id, char out[BLOB_NAME_LEN + 1])
{
    uint8_t h[CV_SHA256_LEN];
    char hex[2 * CV_SHA256_LEN + 1];
    cv_sha256(id, strlen(id), h);
    cv_hex_encode(h, 2, hex);
    snprintf(out, BLOB_NAME_LEN + 1, "blobs/%.2s/%.2s/%s", hex, hex + 2, id);
}

static cv_status fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return CV_E_IO;
    int r = fsync(fd);
    close(fd);
    return r == 0 ? CV_OK : CV_E_IO;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (ftw->level == 0)
        return 0;
    return remove(path) == 0 ? 0 : 0; /* best effort, keep walking */
}

/* Remove everything inside dir (not dir itself), never following links. */
static void empty_dir(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static cv_status snap_query_u64(sqlite3 *c, const char *sql, uint64_t *out)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int64(st, 0) < 0)
        goto out;
    *out = (uint64_t)sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

/* ---- prepare ---- */

static cv_status base_watermark(struct cv_db *db, const char *since, uint64_t *seq)
{
    sqlite3 *c = cv_db_reader_get(db);
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, "SELECT blob_seq FROM backups WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    *seq = (uint64_t)sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    cv_db_reader_put(db, c);
    return rc;
}

static cv_status take_snapshot(struct cv_backup_job *job)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = cv_db_reader_get(job->dd->db);
    char *sql = sqlite3_mprintf("VACUUM INTO %Q", job->snap);
    if (sql == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    /* Reader connections are query_only; VACUUM INTO writes only the new
     * file, so lift it for this statement on the borrowed connection. */
    sqlite3_exec(c, "PRAGMA query_only=OFF", NULL, NULL, NULL);
    int s = sqlite3_exec(c, sql, NULL, NULL, NULL);
    sqlite3_exec(c, "PRAGMA query_only=ON", NULL, NULL, NULL);
    if (s != SQLITE_OK) {
        rc = cv_db_status(s);
        goto out;
    }
    rc = CV_OK;
out:
    sqlite3_free(sql);
    cv_db_reader_put(job->dd->db, c);
    return rc;
}

static cv_status read_snapshot(struct cv_backup_job *job, int incremental, uint64_t base_seq)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    if (sqlite3_open_v2(job->snap, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_db_config(c, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    if (sqlite3_exec(c, "PRAGMA trusted_schema=OFF; PRAGMA journal_mode=DELETE", NULL, NULL,
                     NULL) != SQLITE_OK)
        goto out;
    uint64_t v = 0;
    if ((rc = snap_query_u64(c, "PRAGMA user_version", &v)) != CV_OK)
        goto out;
    job->info.schema_version = (int)v;
    if ((rc = snap_query_u64(c, "SELECT count(*) FROM audit_entries", &job->info.audit_size)) !=
            CV_OK ||
        (rc = snap_query_u64(c, "SELECT coalesce(max(seq), 0) FROM backup_blob_log",
                             &job->info.blob_seq)) != CV_OK)
        goto out;
    const char *q = incremental ? "SELECT b.id FROM blobs b JOIN backup_blob_log l ON "
                                  "l.blob_id = b.id WHERE l.seq > ?1 ORDER BY b.id"
                                : "SELECT id FROM blobs ORDER BY id";
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, q, -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (incremental)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)base_seq);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!cv_ulid_valid(id))
            goto out;
        if (job->nblobs == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct bk_blob *nb = realloc(job->blobs, ncap * sizeof *nb);
            if (nb == NULL) {
                rc = CV_E_NOMEM;
                goto out;
            }
            job->blobs = nb;
            cap = ncap;
        }
        memcpy(job->blobs[job->nblobs].id, id, CV_ULID_LEN + 1);
        job->blobs[job->nblobs].size = 0;
        job->nblobs++;
    }
    if (s != SQLITE_DONE)
        goto out;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    sqlite3_close(c);
    return rc;
}

static cv_status stat_files(struct cv_backup_job *job)
{
    struct stat sb;
    char rel[BLOB_NAME_LEN + 1], path[PATH_MAX];
    if (stat(job->snap, &sb) != 0)
        return CV_E_IO;
    job->info.db_bytes = (uint64_t)sb.st_size;
    job->info.blobs = job->nblobs;
    job->info.blob_bytes = 0;
    for (size_t i = 0; i < job->nblobs; i++) {
        blob_rel(job->blobs[i].id, rel);
        if (cv_path_join(path, sizeof path, job->dd->root, rel) != CV_OK)
            return CV_E_LIMIT;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            return CV_E_IO;
        job->blobs[i].size = (uint64_t)sb.st_size;
        job->info.blob_bytes += (uint64_t)sb.st_size;
    }
    return CV_OK;
}

static cv_status record(struct cv_backup_job *job, const struct cv_backup_actor *who)
{
    struct cv_db *db = job->dd->db;
    const struct cv_backup_info *in = &job->info;
    sqlite3_stmt *st = NULL;
    json_t *details = NULL;
    cv_status rc = cv_db_begin(db);
    if (rc != CV_OK)
        return rc;
    sqlite3 *w = cv_db_writer(db);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(w,
                           "INSERT INTO backups(id, base_id, created_at, schema_version, "
                           "audit_size, blob_seq, blobs, blob_bytes, db_bytes) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, in->id, -1, SQLITE_STATIC);
    if (in->base_id[0])
        sqlite3_bind_text(st, 2, in->base_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_text(st, 3, in->created_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, in->schema_version);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)in->audit_size);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)in->blob_seq);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)in->blobs);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)in->blob_bytes);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)in->db_bytes);
    if ((rc = cv_db_step_done(st)) != CV_OK)
        goto fail;
    details =
        json_pack("{s:s?,s:I,s:I,s:I,s:I}", "base_id", in->base_id[0] ? in->base_id : NULL, "blobs",
                  (json_int_t)in->blobs, "blob_bytes", (json_int_t)in->blob_bytes, "db_bytes",
                  (json_int_t)in->db_bytes, "audit_size", (json_int_t)in->audit_size);
    if (details == NULL) {
        rc = CV_E_NOMEM;
        goto fail;
    }
    struct cv_audit_event ev = {.action = "backup.create",
                                .actor_id = who && who->actor_id ? who->actor_id : "cli",
                                .actor_role = who && who->actor_role ? who->actor_role : "operator",
                                .object_id = in->id,
                                .request_id = who ? who->request_id : NULL,
                                .client = who && who->client ? who->client : "cli",
                                .details = details};
    if ((rc = cv_audit_append(db, &ev, NULL)) != CV_OK)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    json_decref(details);
    return cv_db_commit(db);
fail:
    sqlite3_finalize(st);
    json_decref(details);
    cv_db_rollback(db);
    return rc;
}

/*
 * Remove snapshot directories that a crashed backup left in DATA/tmp: a
 * "backup-*" directory nobody holds locked and untouched for a minute (the
 * age covers the instant between mkdtemp and flock of a starting job).
 * Best effort: the server's start-up sweep removes files only.
 */
static void sweep_stale(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *e;
    char path[PATH_MAX];
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        if (strncmp(e->d_name, "backup-", 7) != 0 ||
            cv_path_join(path, sizeof path, tmp, e->d_name) != CV_OK || lstat(path, &sb) != 0 ||
            !S_ISDIR(sb.st_mode) || time(NULL) - sb.st_mtime < 60)
            continue;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            empty_dir(path);
            rmdir(path);
        }
        close(fd);
    }
    closedir(d);
}

cv_status cv_backup_prepare(struct cv_datadir *dd, const char *since,
                            const struct cv_backup_actor *who, struct cv_backup_job **out,
                            struct cv_backup_info *info)
{
    cv_status rc = CV_E_ARG;
    uint64_t base_seq = 0;
    struct cv_backup_job *job = NULL;
    if (dd == NULL || out == NULL || (since != NULL && !cv_ulid_valid(since)))
        goto out;
    if (since && (rc = base_watermark(dd->db, since, &base_seq)) != CV_OK)
        goto out;
    rc = CV_E_NOMEM;
    if ((job = calloc(1, sizeof *job)) == NULL)
        goto out;
    job->dd = dd;
    job->lockfd = -1;
    sweep_stale(dd->tmp);
    rc = CV_E_LIMIT;
    if (snprintf(job->dir, sizeof job->dir, "%s/backup-XXXXXX", dd->tmp) >= (int)sizeof job->dir)
        goto out;
    rc = CV_E_IO;
    if (mkdtemp(job->dir) == NULL) {
        job->dir[0] = '\0';
        goto out;
    }
    if ((job->lockfd = open(job->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        flock(job->lockfd, LOCK_EX | LOCK_NB) != 0)
        goto out;
    if ((rc = cv_path_join(job->snap, sizeof job->snap, job->dir, "casevault.db")) != CV_OK)
        goto out;
    cv_ulid_new(job->info.id);
    if (since)
        memcpy(job->info.base_id, since, CV_ULID_LEN + 1);
    int64_t now = cv_now_ms();
    cv_time_format(now, job->info.created_at);
    job->mtime = now / 1000;
    if ((rc = take_snapshot(job)) != CV_OK ||
        (rc = read_snapshot(job, since != NULL, base_seq)) != CV_OK)
        goto out;
    if ((rc = fsync_path(job->snap, 0)) != CV_OK || (rc = fsync_path(job->dir, 1)) != CV_OK)
        goto out;
    if ((rc = stat_files(job)) != CV_OK)
        goto out;
    if ((rc = record(job, who)) != CV_OK)
        goto out;
    if (info)
        *info = job->info;
    *out = job;
    job = NULL;
    rc = CV_OK;
out:
    cv_backup_job_free(job);
    return rc;
}

void cv_backup_job_free(struct cv_backup_job *job)
{
    if (job == NULL)
        return;
    if (job->dir[0]) {
        empty_dir(job->dir);
        rmdir(job->dir);
    }
    if (job->lockfd >= 0)
        close(job->lockfd);
    free(job->blobs);
    free(job);
}

/* ---- stream ---- */

struct sink {
    int fd;
    uint8_t *buf;
    size_t len;
};

static cv_status sink_flush(struct sink *s)
{
    cv_status rc = cv_write_all(s->fd, s->buf, s->len);
    s->len = 0;
    return rc;
}

static cv_status sink_fn(void *arg, const uint8_t *data, size_t len)
{
    struct sink *s = arg;
    cv_status rc;
    if (s->len + len <= SINK_BUF) {
        memcpy(s->buf + s->len, data, len);
        s->len += len;
        return CV_OK;
    }
    if ((rc = sink_flush(s)) != CV_OK)
        return rc;
    if (len >= SINK_BUF / 2)
        return cv_write_all(s->fd, data, len);
    memcpy(s->buf, data, len);
    s->len = len;
    return CV_OK;
}

struct manifest {
    char *text;
    size_t len, cap;
};

static cv_status manifest_add(struct manifest *m, const uint8_t sha[CV_SHA256_LEN],
                              const char *name)
{
    size_t need = 2 * CV_SHA256_LEN + 2 + strlen(name) + 1;
    if (m->len + need + 1 > m->cap) {
        size_t ncap = (m->cap ? m->cap * 2 : 4096) + need;
        char *nt = realloc(m->text, ncap);
        if (nt == NULL)
            return CV_E_NOMEM;
        m->text = nt;
        m->cap = ncap;
    }
    cv_hex_encode(sha, CV_SHA256_LEN, m->text + m->len);
    m->len += 2 * CV_SHA256_LEN;
    m->len += (size_t)sprintf(m->text + m->len, "  %s\n", name);
    return CV_OK;
}

static cv_status add_buffer(struct cv_archive_writer *w, struct manifest *m, const char *name,
                            const void *data, size_t len, int64_t mtime)
{
    uint8_t sha[CV_SHA256_LEN];
    cv_sha256(data, len, sha);
    cv_status rc = cv_archive_add_buffer(w, name, data, len, mtime, 0);
    if (rc == CV_OK && m)
        rc = manifest_add(m, sha, name);
    return rc;
}

/* File i of the stream: the snapshot, then every blob (readahead path_fn). */
static cv_status stream_path(void *arg, size_t i, char *path, size_t cap, uint64_t *size)
{
    const struct cv_backup_job *job = arg;
    char rel[BLOB_NAME_LEN + 1];
    if (i == 0) {
        *size = job->info.db_bytes;
        return (size_t)snprintf(path, cap, "%s", job->snap) < cap ? CV_OK : CV_E_LIMIT;
    }
    blob_rel(job->blobs[i - 1].id, rel);
    *size = job->blobs[i - 1].size;
    return cv_path_join(path, cap, job->dd->root, rel);
}

/*
 * One member from the read-ahead helper: the tar header, its pieces
 * (hashed here while the helper opens and reads the next files), and its
 * line of the manifest.
 */
static cv_status add_file(struct cv_archive_writer *w, struct manifest *m, struct cv_readahead *ra,
                          const char *name, uint64_t size, int64_t mtime, uint64_t *done,
                          uint64_t total, cv_backup_progress_fn progress, void *arg)
{
    uint8_t sha[CV_SHA256_LEN];
    int last = 0;
    struct cv_sha256 *h = cv_sha256_new();
    if (h == NULL)
        return CV_E_NOMEM;
    cv_status rc = cv_archive_begin_file(w, name, size, mtime, 0);
    while (rc == CV_OK && !last) {
        const uint8_t *data = NULL;
        size_t len = 0;
        if ((rc = cv_readahead_next(ra, &data, &len, &last)) != CV_OK)
            break;
        cv_sha256_update(h, data, len);
        if (len > 0)
            rc = cv_archive_write(w, data, len);
        cv_readahead_release(ra);
        *done += len;
        if (progress && size > IO_BUF)
            progress(*done, total, arg);
    }
    if (rc != CV_OK)
        goto out;
    cv_sha256_final(h, sha);
    h = NULL;
    if ((rc = cv_archive_end_file(w)) == CV_OK)
        rc = manifest_add(m, sha, name);
out:
    cv_sha256_free(h);
    return rc;
}

static char *backup_json(const struct cv_backup_info *in, const char *instance_id)
{
    json_t *j = json_pack(
        "{s:s,s:i,s:s,s:s?,s:s,s:s,s:i,s:I,s:I,s:{s:I,s:I},s:{s:I,s:I,s:I}}", "format",
        CV_BACKUP_FORMAT, "version", CV_BACKUP_VERSION, "backup_id", in->id, "base_id",
        in->base_id[0] ? in->base_id : NULL, "created_at", in->created_at, "instance_id",
        instance_id, "schema_version", in->schema_version, "audit_size", (json_int_t)in->audit_size,
        "blob_seq", (json_int_t)in->blob_seq, "counts", "blobs", (json_int_t)in->blobs, "files",
        (json_int_t)(in->blobs + 2), "bytes", "blobs", (json_int_t)in->blob_bytes, "db",
        (json_int_t)in->db_bytes, "total", (json_int_t)(in->blob_bytes + in->db_bytes));
    if (j == NULL)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

cv_status cv_backup_stream(struct cv_backup_job *job, int fd, cv_backup_progress_fn progress,
                           void *arg)
{
    cv_status rc = CV_E_ARG;
    struct sink s = {.fd = fd, .buf = NULL, .len = 0};
    struct manifest m = {NULL, 0, 0};
    struct cv_archive_writer *w = NULL;
    struct cv_readahead *ra = NULL;
    char *json = NULL, *sig = NULL;
    char rel[BLOB_NAME_LEN + 1], comment[128];
    uint64_t done = 0, total;
    if (job == NULL || job->streamed)
        goto out;
    job->streamed = 1;
    total = job->info.db_bytes + job->info.blob_bytes;
    rc = CV_E_NOMEM;
    if ((s.buf = malloc(SINK_BUF)) == NULL ||
        (json = backup_json(&job->info, job->dd->instance_id)) == NULL)
        goto out;
    if ((rc = cv_archive_writer_new(CV_ARCHIVE_TAR, sink_fn, &s, &w)) != CV_OK)
        goto out;
    if ((rc = add_buffer(w, &m, "backup.json", json, strlen(json), job->mtime)) != CV_OK)
        goto out;
    if ((rc = cv_readahead_start(job->nblobs + 1, stream_path, job, &ra)) != CV_OK)
        goto out;
    if ((rc = add_file(w, &m, ra, "db/casevault.db", job->info.db_bytes, job->mtime, &done, total,
                       progress, arg)) != CV_OK)
        goto out;
    for (size_t i = 0; i < job->nblobs; i++) {
        blob_rel(job->blobs[i].id, rel);
        if ((rc = add_file(w, &m, ra, rel, job->blobs[i].size, job->mtime, &done, total, progress,
                           arg)) != CV_OK)
            goto out;
        if (progress && (i % 256 == 255))
            progress(done, total, arg);
    }
    if ((rc = add_buffer(w, NULL, "MANIFEST.sha256", m.text, m.len, job->mtime)) != CV_OK)
        goto out;
    snprintf(comment, sizeof comment, "casevault backup %s base %s", job->info.id,
             job->info.base_id[0] ? job->info.base_id : "none");
    if ((rc = cv_minisign_sign(job->dd->kr, m.text, m.len, comment, &sig)) != CV_OK)
        goto out;
    if ((rc = add_buffer(w, NULL, "MANIFEST.sha256.minisig", sig, strlen(sig), job->mtime)) !=
        CV_OK)
        goto out;
    if ((rc = cv_archive_writer_finish(w)) != CV_OK || (rc = sink_flush(&s)) != CV_OK)
        goto out;
    if (progress)
        progress(done, total, arg);
    rc = CV_OK;
out:
    if (ra != NULL) {
        cv_status hr = cv_readahead_stop(ra);
        if (rc == CV_OK)
            rc = hr;
    }
    cv_archive_writer_free(w);
    free(s.buf);
    free(json);
    free(sig);
    free(m.text);
    return rc;
}

/* ---- restore ---- */

struct rs_entry {
    char name[BLOB_NAME_LEN + 1];
    uint8_t sha[CV_SHA256_LEN];
};

struct rs_archive {
    struct rs_entry *e;
    size_t n, cap;
    char *json;
    size_t json_len;
    char *manifest;
    size_t manifest_len;
    char *sig;
    size_t sig_len;
    char id[CV_ULID_LEN + 1];
    char base[CV_ULID_LEN + 1];
    uint64_t blobs;
    uint64_t declared_blobs;
};

struct rs {
    const char *keys_dir;
    char *pub;
    char staging[PATH_MAX];
    int sfd;
    uint8_t *buf;
    char *detail;
    size_t cap;
    uint64_t max_entry;
    char prev_id[CV_ULID_LEN + 1];
};

__attribute__((format(printf, 2, 3))) static void say(struct rs *r, const char *fmt, ...)
{
    if (r->detail == NULL || r->cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, r->cap, fmt, ap);
    va_end(ap);
    /* Names come from the archive: keep the message printable. */
    for (char *q = r->detail; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            *q = '?';
}

static void rs_archive_free(struct rs_archive *a)
{
    free(a->e);
    free(a->json);
    free(a->manifest);
    free(a->sig);
    memset(a, 0, sizeof *a);
}

static int blob_name_ok(const char *name, char id[CV_ULID_LEN + 1])
{
    char rel[BLOB_NAME_LEN + 1];
    if (strlen(name) != BLOB_NAME_LEN || strncmp(name, "blobs/", 6) != 0)
        return 0;
    if (!cv_ulid_valid(name + 12))
        return 0;
    blob_rel(name + 12, rel);
    if (strcmp(rel, name) != 0)
        return 0;
    memcpy(id, name + 12, CV_ULID_LEN + 1);
    return 1;
}

static cv_status read_small(struct cv_archive_reader *ar, uint64_t size, size_t max, char **out,
                            size_t *len)
{
    if (size > max)
        return CV_E_UNSAFE_ARCHIVE_ENTRY;
    char *p = malloc((size_t)size + 1);
    size_t have = 0, got = 0;
    if (p == NULL)
        return CV_E_NOMEM;
    for (;;) {
        cv_status rc = cv_archive_read(ar, p + have, (size_t)size - have, &got);
        if (rc != CV_OK) {
            free(p);
            return rc;
        }
        if (got == 0)
            break;
        have += got;
        if (have == size) {
            /* make sure the entry ends here */
            char extra;
            if ((rc = cv_archive_read(ar, &extra, 1, &got)) != CV_OK || got != 0) {
                free(p);
                return rc != CV_OK ? rc : CV_E_ARCHIVE_FORMAT;
            }
            break;
        }
    }
    if (have != size) {
        free(p);
        return CV_E_ARCHIVE_FORMAT;
    }
    p[have] = '\0';
    *out = p;
    *len = have;
    return CV_OK;
}

static cv_status stage_file(struct rs *r, struct cv_archive_reader *ar, const char *fname,
                            uint64_t size, uint8_t sha[CV_SHA256_LEN])
{
    cv_status rc = CV_E_IO;
    struct cv_sha256 *h = NULL;
    uint64_t have = 0;
    size_t got = 0;
    int fd = openat(r->sfd, fname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno == EEXIST ? CV_E_UNSAFE_ARCHIVE_ENTRY : CV_E_IO;
        goto out;
    }
    if ((h = cv_sha256_new()) == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    for (;;) {
        if ((rc = cv_archive_read(ar, r->buf, IO_BUF, &got)) != CV_OK)
            goto out;
        if (got == 0)
            break;
        have += got;
        if (have > size) {
            rc = CV_E_ARCHIVE_FORMAT;
            goto out;
        }
        cv_sha256_update(h, r->buf, got);
        if ((rc = cv_write_all(fd, r->buf, got)) != CV_OK)
            goto out;
    }
    rc = CV_E_ARCHIVE_FORMAT;
    if (have != size)
        goto out;
    cv_sha256_final(h, sha);
    h = NULL;
    rc = CV_OK;
out:
    cv_sha256_free(h);
    if (fd >= 0)
        close(fd);
    return rc;
}

static cv_status entry_add(struct rs_archive *a, const char *name, const uint8_t sha[32])
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 256;
        struct rs_entry *ne = realloc(a->e, ncap * sizeof *ne);
        if (ne == NULL)
            return CV_E_NOMEM;
        a->e = ne;
        a->cap = ncap;
    }
    snprintf(a->e[a->n].name, sizeof a->e[a->n].name, "%s", name);
    memcpy(a->e[a->n].sha, sha, CV_SHA256_LEN);
    a->n++;
    return CV_OK;
}

static cv_status parse_json(struct rs *r, unsigned idx, struct rs_archive *a);

/* Read one archive into staging; everything is checked afterwards. */
static cv_status read_archive(struct rs *r, int fd, unsigned idx, struct rs_archive *a)
{
    cv_status rc;
    struct cv_archive_reader *ar = NULL;
    const char *name = NULL;
    uint64_t size = 0;
    int have_db = 0;
    char fname[64], id[CV_ULID_LEN + 1];
    uint8_t sha[CV_SHA256_LEN];
    if ((rc = cv_archive_reader_open_fd(fd, 0, r->max_entry, &ar)) != CV_OK)
        goto out;
    for (;;) {
        rc = cv_archive_next(ar, &name, &size);
        if (rc == CV_E_NOT_FOUND)
            break;
        if (rc != CV_OK) {
            if (rc == CV_E_UNSAFE_ARCHIVE_ENTRY)
                say(r, "unsafe archive entry \"%s\"", name ? name : "?");
            goto out;
        }
        rc = CV_E_UNSAFE_ARCHIVE_ENTRY;
        if (a->sig) {
            say(r, "entry \"%s\" after the manifest signature", name);
            goto out;
        }
        if (a->json == NULL && strcmp(name, "backup.json") != 0) {
            say(r, "unexpected archive entry \"%s\" (backup.json must come first)", name);
            goto out;
        }
        if (strcmp(name, "backup.json") == 0) {
            if (a->json) {
                say(r, "duplicate archive entry \"%s\"", name);
                goto out;
            }
            if ((rc = read_small(ar, size, MAX_JSON, &a->json, &a->json_len)) != CV_OK)
                goto bad_entry;
            if ((rc = parse_json(r, idx, a)) != CV_OK)
                goto out;
            cv_sha256(a->json, a->json_len, sha);
        } else if (strcmp(name, "db/casevault.db") == 0) {
            if (have_db || a->manifest) {
                say(r, "duplicate or misplaced archive entry \"%s\"", name);
                goto out;
            }
            snprintf(fname, sizeof fname, "db.%u", idx);
            if ((rc = stage_file(r, ar, fname, size, sha)) != CV_OK)
                goto bad_entry;
            have_db = 1;
        } else if (blob_name_ok(name, id)) {
            if (a->manifest) {
                say(r, "misplaced archive entry \"%s\"", name);
                goto out;
            }
            snprintf(fname, sizeof fname, "b.%s", id);
            if ((rc = stage_file(r, ar, fname, size, sha)) != CV_OK) {
                if (rc == CV_E_UNSAFE_ARCHIVE_ENTRY) {
                    say(r, "duplicate blob entry \"%s\"", name);
                    goto out;
                }
                goto bad_entry;
            }
            a->blobs++;
        } else if (strcmp(name, "MANIFEST.sha256") == 0) {
            if (a->manifest) {
                say(r, "duplicate archive entry \"%s\"", name);
                goto out;
            }
            if ((rc = read_small(ar, size, MAX_MANIFEST, &a->manifest, &a->manifest_len)) != CV_OK)
                goto bad_entry;
            continue;
        } else if (strcmp(name, "MANIFEST.sha256.minisig") == 0) {
            if (a->manifest == NULL) {
                say(r, "archive entry \"%s\" before the manifest", name);
                goto out;
            }
            if ((rc = read_small(ar, size, MAX_SIG, &a->sig, &a->sig_len)) != CV_OK)
                goto bad_entry;
            continue;
        } else {
            say(r, "unexpected archive entry \"%s\" (not part of a casevault backup)", name);
            goto out;
        }
        if ((rc = entry_add(a, name, sha)) != CV_OK)
            goto out;
    }
    rc = CV_E_ARCHIVE_FORMAT;
    if (a->json == NULL || !have_db || a->manifest == NULL) {
        say(r, "%s", "not a complete casevault backup (backup.json, db or manifest missing)");
        goto out;
    }
    if (a->sig == NULL) {
        rc = CV_E_SIGNATURE_INVALID;
        say(r, "%s", "the manifest signature (MANIFEST.sha256.minisig) is missing");
        goto out;
    }
    rc = CV_OK;
    goto out;
bad_entry:
    if (rc == CV_E_UNSAFE_ARCHIVE_ENTRY)
        say(r, "archive entry \"%s\" is over the size limit", name);
    else
        say(r, "archive entry \"%s\" is corrupt", name);
out:
    cv_archive_reader_free(ar);
    return rc;
}

/* Parse backup.json and check its place in the chain. Called as soon as
 * it is read (an early, clear refusal) and again once the manifest and its
 * signature verified (which is what makes its content trusted). */
static cv_status parse_json(struct rs *r, unsigned idx, struct rs_archive *a)
{
    cv_status rc = CV_E_ARCHIVE_FORMAT;
    json_t *j = json_loadb(a->json, a->json_len, JSON_REJECT_DUPLICATES, NULL);
    const char *fmt = json_string_value(json_object_get(j, "format"));
    const char *id = json_string_value(json_object_get(j, "backup_id"));
    json_t *base = json_object_get(j, "base_id");
    if (!json_is_object(j) || fmt == NULL || strcmp(fmt, CV_BACKUP_FORMAT) != 0 ||
        json_integer_value(json_object_get(j, "version")) != CV_BACKUP_VERSION ||
        !cv_ulid_valid(id) || !(json_is_null(base) || cv_ulid_valid(json_string_value(base))) ||
        !json_is_integer(json_object_get(json_object_get(j, "counts"), "blobs"))) {
        say(r, "%s", "backup.json is not a valid casevault backup description");
        goto out;
    }
    memcpy(a->id, id, CV_ULID_LEN + 1);
    if (json_is_null(base))
        a->base[0] = '\0';
    else
        memcpy(a->base, json_string_value(base), CV_ULID_LEN + 1);
    a->declared_blobs =
        (uint64_t)json_integer_value(json_object_get(json_object_get(j, "counts"), "blobs"));
    rc = CV_E_BACKUP_CHAIN;
    if (idx == 0 && a->base[0]) {
        say(r, "backup %s is incremental: the first --from must be a full backup", a->id);
        goto out;
    }
    if (idx > 0 && strcmp(a->base, r->prev_id) != 0) {
        say(r, "backup %s does not follow the previous one (gap or wrong order)", a->id);
        goto out;
    }
    rc = CV_OK;
out:
    json_decref(j);
    return rc;
}

static cv_status check_archive(struct rs *r, unsigned idx, struct rs_archive *a)
{
    cv_status rc;
    char trusted[600];
    if ((rc = cv_minisign_verify(r->pub, a->sig, a->manifest, a->manifest_len, trusted,
                                 sizeof trusted)) != CV_OK) {
        rc = CV_E_SIGNATURE_INVALID;
        say(r, "%s", "the manifest signature does not verify with keys/casevault.pub");
        goto out;
    }
    /* The manifest must list exactly the entries read, in order. */
    rc = CV_E_MANIFEST_MISMATCH;
    const char *p = a->manifest, *end = a->manifest + a->manifest_len;
    for (size_t i = 0; i < a->n; i++) {
        char hex[2 * CV_SHA256_LEN + 1];
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t nlen = strlen(a->e[i].name);
        cv_hex_encode(a->e[i].sha, CV_SHA256_LEN, hex);
        if (nl == NULL || (size_t)(nl - p) != 2 * CV_SHA256_LEN + 2 + nlen ||
            memcmp(p, hex, 2 * CV_SHA256_LEN) != 0 || memcmp(p + 64, "  ", 2) != 0 ||
            memcmp(p + 66, a->e[i].name, nlen) != 0) {
            say(r, "archive entry \"%s\" does not match the signed manifest", a->e[i].name);
            goto out;
        }
        p = nl + 1;
    }
    if (p != end) {
        say(r, "%s", "the signed manifest lists entries the archive does not hold");
        goto out;
    }
    if ((rc = parse_json(r, idx, a)) != CV_OK)
        goto out;
    rc = CV_E_ARCHIVE_FORMAT;
    if (a->declared_blobs != a->blobs) {
        say(r, "%s", "backup.json counts a different number of blobs than the archive holds");
        goto out;
    }
    memcpy(r->prev_id, a->id, CV_ULID_LEN + 1);
    rc = CV_OK;
out:
    return rc;
}

static int key_present(const char *keys_dir, const char *file)
{
    char path[PATH_MAX];
    struct stat sb;
    return cv_path_join(path, sizeof path, keys_dir, file) == CV_OK && lstat(path, &sb) == 0 &&
           S_ISREG(sb.st_mode);
}

static int kek_id_ok(const char *k)
{
    if (k == NULL || strlen(k) != CV_KEY_ID_LEN)
        return 0;
    for (size_t i = 0; i < CV_KEY_ID_LEN; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
            return 0;
    return 1;
}

/* Check the final snapshot; when `apply`, move its blobs into place. */
static cv_status check_snapshot(struct rs *r, const char *target, unsigned last, int apply,
                                struct cv_restore_result *res)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    char path[PATH_MAX], fname[64], rel[BLOB_NAME_LEN + 1], dst[PATH_MAX];
    uint64_t v = 0, n = 0;
    snprintf(fname, sizeof fname, "db.%u", last);
    if (cv_path_join(path, sizeof path, r->staging, fname) != CV_OK)
        return CV_E_LIMIT;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto bad;
    sqlite3_db_config(c, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    if (sqlite3_exec(c, "PRAGMA trusted_schema=OFF", NULL, NULL, NULL) != SQLITE_OK ||
        snap_query_u64(c, "PRAGMA application_id", &v) != CV_OK || v != CV_DB_APPLICATION_ID)
        goto bad;
    if (snap_query_u64(c, "PRAGMA user_version", &v) != CV_OK || v < 1 ||
        v > (uint64_t)cv_db_latest_version())
        goto bad;
    res->schema_version = (int)v;
    if (snap_query_u64(c, "SELECT count(*) FROM audit_entries", &res->audit_size) != CV_OK)
        goto bad;
    if (!apply) {
        if (sqlite3_prepare_v2(c, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW ||
            strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
            goto bad;
        sqlite3_finalize(st);
        st = NULL;
        /* every master key the data references */
        if (sqlite3_prepare_v2(c, "SELECT kek_id FROM root_keys UNION SELECT kek_id FROM blobs", -1,
                               &st, NULL) != SQLITE_OK)
            goto bad;
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            char kf[CV_KEY_ID_LEN + 8];
            if (!kek_id_ok(k))
                goto bad;
            snprintf(kf, sizeof kf, "%s.kek", k);
            if (!key_present(r->keys_dir, kf)) {
                rc = CV_E_KEY_MISSING;
                say(r, "--keys lacks master key %s, which the backup's data references", k);
                goto out;
            }
        }
        if (s != SQLITE_DONE)
            goto bad;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (sqlite3_prepare_v2(c, "SELECT id FROM blobs ORDER BY id", -1, &st, NULL) != SQLITE_OK)
        goto bad;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!cv_ulid_valid(id))
            goto bad;
        snprintf(fname, sizeof fname, "b.%s", id);
        if (!apply) {
            if (faccessat(r->sfd, fname, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
                rc = CV_E_BACKUP_CHAIN;
                say(r, "blob %s that the snapshot references is in none of the backups", id);
                goto out;
            }
        } else {
            blob_rel(id, rel);
            rc = CV_E_IO;
            snprintf(dst, sizeof dst, "%s/%.8s", target, rel); /* blobs/xx */
            if (mkdir(dst, 0700) != 0 && errno != EEXIST)
                goto out;
            snprintf(dst, sizeof dst, "%s/%.11s", target, rel); /* blobs/xx/yy */
            if (mkdir(dst, 0700) != 0 && errno != EEXIST)
                goto out;
            if (cv_path_join(dst, sizeof dst, target, rel) != CV_OK ||
                renameat(r->sfd, fname, AT_FDCWD, dst) != 0)
                goto out;
        }
        n++;
    }
    if (s != SQLITE_DONE)
        goto bad;
    res->blobs = n;
    rc = CV_OK;
    goto out;
bad:
    rc = CV_E_DB;
    say(r, "%s", "the database snapshot is not a usable casevault database");
out:
    sqlite3_finalize(st);
    sqlite3_close(c);
    return rc;
}

static cv_status copy_keys(struct rs *r, const char *target)
{
    cv_status rc = CV_E_IO;
    char dir[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    DIR *d = NULL;
    char *data = NULL;
    size_t len = 0;
    if (cv_path_join(dir, sizeof dir, target, "keys") != CV_OK || mkdir(dir, 0700) != 0)
        goto out;
    if ((d = opendir(r->keys_dir)) == NULL)
        goto out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        const char *nm = e->d_name;
        int ok = nm[0] != '.' && nm[0] != '\0';
        for (const char *q = nm; ok && *q; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                 *q == '.' || *q == '_' || *q == '-';
        if (!ok || cv_path_join(src, sizeof src, r->keys_dir, nm) != CV_OK ||
            lstat(src, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > MAX_KEY_FILE)
            continue;
        if (cv_file_read(src, MAX_KEY_FILE, &data, &len) != CV_OK ||
            cv_path_join(dst, sizeof dst, dir, nm) != CV_OK)
            goto out;
        int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      (mode_t)(sb.st_mode & 0644));
        if (fd < 0)
            goto out;
        int bad = cv_write_all(fd, (const uint8_t *)data, len) != CV_OK || fsync(fd) != 0;
        close(fd);
        sodium_memzero(data, len);
        free(data);
        data = NULL;
        if (bad)
            goto out;
    }
    rc = fsync_path(dir, 1);
out:
    if (data) {
        sodium_memzero(data, len);
        free(data);
    }
    if (d)
        closedir(d);
    return rc;
}

static cv_status target_prepare(const char *target, int *created)
{
    /* never through a symlink: the target itself must be a real directory */
    int fd = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    *created = 0;
    if (d == NULL) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (err != ENOENT)
            return err == ENOTDIR || err == ELOOP ? CV_E_NOT_EMPTY : CV_E_IO;
        if (mkdir(target, 0700) != 0)
            return CV_E_IO;
        *created = 1;
        return CV_OK;
    }
    struct dirent *e;
    cv_status rc = CV_OK;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            rc = CV_E_NOT_EMPTY;
            break;
        }
    closedir(d);
    return rc;
}

cv_status cv_restore(const char *const *from, size_t nfrom, const char *keys_dir,
                     const char *target, uint64_t max_entry, struct cv_restore_result *res,
                     char *detail, size_t cap)
{
    cv_status rc = CV_E_ARG;
    struct rs r;
    struct rs_archive a;
    struct cv_restore_result out_res;
    int created = 0, touched = 0, used_stdin = 0;
    size_t publen = 0;
    char path[PATH_MAX];
    memset(&r, 0, sizeof r);
    memset(&a, 0, sizeof a);
    memset(&out_res, 0, sizeof out_res);
    r.sfd = -1;
    r.detail = detail;
    r.cap = cap;
    r.keys_dir = keys_dir;
    r.max_entry = max_entry ? max_entry : CV_BACKUP_MAX_ENTRY;
    if (detail && cap)
        detail[0] = '\0';
    if (from == NULL || nfrom == 0 || nfrom > 100000 || keys_dir == NULL || target == NULL)
        goto out;
    /* The operator's key directory is the trust anchor. */
    if (cv_path_join(path, sizeof path, keys_dir, "casevault.pub") != CV_OK ||
        cv_file_read(path, 4096, &r.pub, &publen) != CV_OK) {
        rc = CV_E_KEY_MISSING;
        say(&r, "%s", "--keys has no casevault.pub (the backup signing public key)");
        goto out;
    }
    if (!key_present(keys_dir, "signing.key")) {
        rc = CV_E_KEY_MISSING;
        say(&r, "%s", "--keys has no signing.key");
        goto out;
    }
    if ((rc = target_prepare(target, &created)) != CV_OK) {
        say(&r, "%s", "the target must be missing or an empty directory (not a symlink)");
        goto out;
    }
    touched = 1;
    rc = CV_E_IO;
    if (snprintf(r.staging, sizeof r.staging, "%s/.restore-XXXXXX", target) >=
            (int)sizeof r.staging ||
        mkdtemp(r.staging) == NULL) {
        r.staging[0] = '\0';
        goto out;
    }
    if ((r.sfd = open(r.staging, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        goto out;
    rc = CV_E_NOMEM;
    if ((r.buf = malloc(IO_BUF)) == NULL)
        goto out;
    for (size_t i = 0; i < nfrom; i++) {
        int fd;
        if (strcmp(from[i], "-") == 0) {
            rc = CV_E_ARG;
            if (used_stdin++)
                goto out;
            fd = 0;
        } else if ((fd = open(from[i], O_RDONLY | O_CLOEXEC)) < 0) {
            rc = CV_E_NOT_FOUND;
            say(&r, "cannot open %s", from[i]);
            goto out;
        }
        rc = read_archive(&r, fd, (unsigned)i, &a);
        if (fd != 0)
            close(fd);
        if (rc == CV_OK)
            rc = check_archive(&r, (unsigned)i, &a);
        rs_archive_free(&a);
        if (rc != CV_OK)
            goto out;
        out_res.archives++;
    }
    if ((rc = check_snapshot(&r, target, (unsigned)(nfrom - 1), 0, &out_res)) != CV_OK)
        goto out;
    /* Everything verified: make it live. */
    rc = CV_E_IO;
    char sub[PATH_MAX];
    if (cv_path_join(sub, sizeof sub, target, "blobs") != CV_OK || mkdir(sub, 0700) != 0 ||
        cv_path_join(sub, sizeof sub, target, "tmp") != CV_OK || mkdir(sub, 0700) != 0)
        goto out;
    if ((rc = copy_keys(&r, target)) != CV_OK)
        goto out;
    if ((rc = check_snapshot(&r, target, (unsigned)(nfrom - 1), 1, &out_res)) != CV_OK)
        goto out;
    char fname[64];
    snprintf(fname, sizeof fname, "db.%u", (unsigned)(nfrom - 1));
    rc = CV_E_IO;
    if (cv_path_join(sub, sizeof sub, target, "casevault.db") != CV_OK ||
        renameat(r.sfd, fname, AT_FDCWD, sub) != 0)
        goto out;
    close(r.sfd);
    r.sfd = -1;
    empty_dir(r.staging);
    rmdir(r.staging);
    r.staging[0] = '\0';
    int tfd = open(target, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (tfd < 0 || syncfs(tfd) != 0) {
        if (tfd >= 0)
            close(tfd);
        goto out;
    }
    close(tfd);
    memcpy(out_res.last_id, r.prev_id, CV_ULID_LEN + 1);
    if (res)
        *res = out_res;
    touched = 0;
    rc = CV_OK;
out:
    rs_archive_free(&a);
    if (r.sfd >= 0)
        close(r.sfd);
    if (touched) {
        /* The target was empty (or missing) when we started: empty it again. */
        empty_dir(target);
        if (created)
            rmdir(target);
    }
    free(r.pub);
    free(r.buf);
    return rc;
}
