/*
 * storage/db: SQLite connections, transactions and migrations.
 *
 * DESIGN NOTES
 * 1. Exactly one writer connection per process; cv_db_begin takes its mutex
 *    and issues BEGIN IMMEDIATE, so a read-then-write transaction never hits
 *    SQLITE_BUSY_SNAPSHOT. Other processes are kept out by SQLite's own lock
 *    and wait up to the busy timeout.
 * 2. Reader connections are pooled; each is used by one thread at a time
 *    (SQLITE_OPEN_NOMUTEX).
 * 3. Migrations run in one BEGIN IMMEDIATE transaction that re-reads
 *    user_version inside it, so two processes starting together migrate once.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_internal.h"

#define BUSY_TIMEOUT_MS 10000
#define WRITER_STMTS    16

struct cv_db {
    sqlite3 *writer;
    pthread_mutex_t wlock;
    unsigned nreaders;
    sqlite3 **readers;
    unsigned char *reader_busy;
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    /* Prepared statements on the writer, keyed by the SQL literal's
     * address (cv_db_writer_stmt); used under wlock, finalized at free. */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } wstmt[WRITER_STMTS];
};

cv_status cv_db_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return CV_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return CV_E_DB_BUSY;
    case SQLITE_NOMEM: return CV_E_NOMEM;
    case SQLITE_CONSTRAINT: return CV_E_EXISTS;
    default: return CV_E_DB;
    }
}

cv_status cv_db_step_row(sqlite3_stmt *st, cv_status none)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return CV_OK;
    return rc == SQLITE_DONE ? none : cv_db_status(rc);
}

cv_status cv_db_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return CV_OK;
    return rc == SQLITE_ROW ? CV_E_DB : cv_db_status(rc);
}

static cv_status conn_open(const char *path, int create, sqlite3 **out)
{
    cv_status rc = CV_E_DB;
    sqlite3 *c = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    int src = sqlite3_open_v2(path, &c, flags, NULL);
    if (src != SQLITE_OK) {
        rc = (src & 0xff) == SQLITE_CANTOPEN ? CV_E_NOT_FOUND : cv_db_status(src);
        goto out;
    }
    sqlite3_extended_result_codes(c, 1);
    sqlite3_busy_timeout(c, BUSY_TIMEOUT_MS);
    sqlite3_db_config(c, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(c, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
    static const char *pragmas = "PRAGMA foreign_keys=ON;"
                                 "PRAGMA trusted_schema=OFF;"
                                 "PRAGMA synchronous=FULL;";
    src = sqlite3_exec(c, pragmas, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = cv_db_status(src);
        goto out;
    }
    *out = c;
    c = NULL;
    rc = CV_OK;
out:
    sqlite3_close(c);
    return rc;
}

static int user_version(sqlite3 *c)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(c, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int cv_db_latest_version(void)
{
    return cv_migrations_count ? cv_migrations[cv_migrations_count - 1].version : 0;
}

int cv_db_schema_version(struct cv_db *db)
{
    sqlite3 *c = cv_db_reader_get(db);
    int v = user_version(c);
    cv_db_reader_put(db, c);
    return v;
}

static cv_status migrate_to(struct cv_db *db, int target)
{
    cv_status rc = CV_E_DB;
    char sql[96];
    int src;
    if ((rc = cv_db_begin(db)) != CV_OK)
        return rc;
    sqlite3 *c = db->writer;
    int v = user_version(c);
    if (v < 0 || v > cv_db_latest_version()) {
        /* A newer casevault wrote this file: refuse rather than guess. */
        rc = CV_E_DB;
        goto out;
    }
    for (unsigned i = 0; i < cv_migrations_count; i++) {
        if (cv_migrations[i].version <= v || cv_migrations[i].version > target)
            continue;
        src = sqlite3_exec(c, cv_migrations[i].sql, NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            rc = cv_db_status(src);
            goto out;
        }
    }
    if (target > v) {
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d; PRAGMA application_id=%d;", target,
                 CV_DB_APPLICATION_ID);
        src = sqlite3_exec(c, sql, NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            rc = cv_db_status(src);
            goto out;
        }
    }
    return cv_db_commit(db);
out:
    cv_db_rollback(db);
    return rc;
}

cv_status cv_db_migrate(struct cv_db *db)
{
    return migrate_to(db, cv_db_latest_version());
}

static cv_status db_open(const char *path, unsigned readers, int create, int version,
                         struct cv_db **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_db *db = NULL;
    struct stat sb;
    if (readers == 0 || readers > 64)
        return CV_E_ARG;
    if (!create && stat(path, &sb) != 0)
        return CV_E_NOT_FOUND;
    db = calloc(1, sizeof *db);
    if (db == NULL)
        goto out;
    pthread_mutex_init(&db->wlock, NULL);
    pthread_mutex_init(&db->rlock, NULL);
    pthread_cond_init(&db->rcond, NULL);
    db->readers = calloc(readers, sizeof *db->readers);
    db->reader_busy = calloc(readers, 1);
    if (db->readers == NULL || db->reader_busy == NULL)
        goto out;
    if (create) {
        /* Create the file 0600 ourselves so SQLite never makes it wider. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = CV_E_IO;
            goto out;
        }
        close(fd);
    }
    if ((rc = conn_open(path, create, &db->writer)) != CV_OK)
        goto out;
    if (sqlite3_exec(db->writer, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
        rc = CV_E_DB;
        goto out;
    }
    if ((rc = migrate_to(db, version)) != CV_OK)
        goto out;
    for (unsigned i = 0; i < readers; i++) {
        if ((rc = conn_open(path, 0, &db->readers[i])) != CV_OK)
            goto out;
        sqlite3_exec(db->readers[i], "PRAGMA query_only=ON", NULL, NULL, NULL);
        db->nreaders = i + 1;
    }
    *out = db;
    db = NULL;
    rc = CV_OK;
out:
    cv_db_free(db);
    return rc;
}

cv_status cv_db_open(const char *path, unsigned readers, int create, struct cv_db **out)
{
    return db_open(path, readers, create, cv_db_latest_version(), out);
}

cv_status cv_db_open_at_version(const char *path, int version, struct cv_db **out)
{
    if (version < 0 || version > cv_db_latest_version())
        return CV_E_ARG;
    return db_open(path, 1, 1, version, out);
}

void cv_db_free(struct cv_db *db)
{
    if (db == NULL)
        return;
    for (unsigned i = 0; i < db->nreaders; i++)
        sqlite3_close(db->readers[i]);
    for (unsigned i = 0; i < WRITER_STMTS; i++)
        sqlite3_finalize(db->wstmt[i].st);
    sqlite3_close(db->writer);
    free(db->readers);
    free(db->reader_busy);
    pthread_mutex_destroy(&db->wlock);
    pthread_mutex_destroy(&db->rlock);
    pthread_cond_destroy(&db->rcond);
    free(db);
}

cv_status cv_db_begin(struct cv_db *db)
{
    pthread_mutex_lock(&db->wlock);
    int src = sqlite3_exec(db->writer, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        pthread_mutex_unlock(&db->wlock);
        return cv_db_status(src);
    }
    return CV_OK;
}

cv_status cv_db_commit(struct cv_db *db)
{
    int src = sqlite3_exec(db->writer, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        sqlite3_exec(db->writer, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&db->wlock);
        return cv_db_status(src);
    }
    pthread_mutex_unlock(&db->wlock);
    return CV_OK;
}

void cv_db_rollback(struct cv_db *db)
{
    if (!sqlite3_get_autocommit(db->writer))
        sqlite3_exec(db->writer, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&db->wlock);
}

sqlite3 *cv_db_writer(struct cv_db *db)
{
    return db->writer;
}

sqlite3_stmt *cv_db_writer_stmt(struct cv_db *db, const char *sql)
{
    for (unsigned i = 0; i < WRITER_STMTS; i++) {
        if (db->wstmt[i].sql == sql) {
            sqlite3_reset(db->wstmt[i].st);
            sqlite3_clear_bindings(db->wstmt[i].st);
            return db->wstmt[i].st;
        }
        if (db->wstmt[i].sql == NULL) {
            if (sqlite3_prepare_v3(db->writer, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->wstmt[i].st,
                                   NULL) != SQLITE_OK) {
                sqlite3_finalize(db->wstmt[i].st);
                db->wstmt[i].st = NULL;
                return NULL;
            }
            db->wstmt[i].sql = sql;
            return db->wstmt[i].st;
        }
    }
    return NULL; /* cache full: the caller prepares its own */
}

sqlite3 *cv_db_reader_get(struct cv_db *db)
{
    pthread_mutex_lock(&db->rlock);
    for (;;) {
        for (unsigned i = 0; i < db->nreaders; i++) {
            if (!db->reader_busy[i]) {
                db->reader_busy[i] = 1;
                pthread_mutex_unlock(&db->rlock);
                return db->readers[i];
            }
        }
        pthread_cond_wait(&db->rcond, &db->rlock);
    }
}

void cv_db_reader_put(struct cv_db *db, sqlite3 *conn)
{
    pthread_mutex_lock(&db->rlock);
    for (unsigned i = 0; i < db->nreaders; i++)
        if (db->readers[i] == conn)
            db->reader_busy[i] = 0;
    pthread_cond_signal(&db->rcond);
    pthread_mutex_unlock(&db->rlock);
}

cv_status cv_db_check_writable(struct cv_db *db)
{
    cv_status rc = cv_db_begin(db);
    if (rc != CV_OK)
        return rc;
    int src = sqlite3_exec(db->writer,
                           "INSERT INTO meta(key,value) VALUES('readyz_probe','1') "
                           "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                           NULL, NULL, NULL);
    cv_db_rollback(db);
    return cv_db_status(src);
}

cv_status cv_db_meta_get_on(sqlite3 *c, const char *key, char *out, size_t cap)
{
    cv_status rc = CV_E_DB;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) != CV_OK)
        goto out;
    const char *v = (const char *)sqlite3_column_text(st, 0);
    if (v == NULL || strlen(v) >= cap) {
        rc = CV_E_LIMIT;
        goto out;
    }
    memcpy(out, v, strlen(v) + 1);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

cv_status cv_db_meta_get(struct cv_db *db, const char *key, char *out, size_t cap)
{
    sqlite3 *c = cv_db_reader_get(db);
    cv_status rc = cv_db_meta_get_on(c, key, out, cap);
    cv_db_reader_put(db, c);
    return rc;
}

cv_status cv_db_meta_set(struct cv_db *db, const char *key, const char *value)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(db->writer,
                                 "INSERT INTO meta(key,value) VALUES(?,?) "
                                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                                 -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        src = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return cv_db_status(src);
}
