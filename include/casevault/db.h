/*
 * storage/db: the SQLite metadata store.
 *
 * One writer connection (serialized by a mutex, every write transaction is
 * BEGIN IMMEDIATE) and a pool of reader connections, all in WAL mode with
 * synchronous=FULL, foreign keys on, trusted_schema off, defensive mode, and
 * a busy timeout, so other casevault processes (CLI subcommands) may write the
 * same file at the same time. Schema migrations are embedded from
 * schemas/sql/NNN_name.sql and applied in order under PRAGMA user_version.
 *
 * Callers outside storage/ never see sqlite3: they open a transaction here
 * and call other storage modules' functions inside it.
 */
#ifndef CASEVAULT_DB_H
#define CASEVAULT_DB_H

#include <stddef.h>

#include "casevault/status.h"

struct cv_db;

/* PRAGMA application_id of a casevault database ("CVLT"). */
#define CV_DB_APPLICATION_ID 0x43564c54

/*
 * cv_db_open - open (creating if asked) the database file and migrate it to
 * the latest schema.
 * In: path; readers = size of the reader pool (1..64); create = 1 to create a
 * missing file (mode 0600). Out: *out, free with cv_db_free.
 * Errors: CV_E_NOT_FOUND (missing and !create), CV_E_DB, CV_E_NOMEM,
 * CV_E_DB_BUSY (another process held the lock past the busy timeout).
 */
cv_status cv_db_open(const char *path, unsigned readers, int create, struct cv_db **out);

/*
 * cv_db_open_at_version - like cv_db_open with create=1 but migrates only up to
 * schema version `version` (tests of upgrades from every earlier migration).
 */
cv_status cv_db_open_at_version(const char *path, int version, struct cv_db **out);

/* cv_db_free - close every connection. NULL is a no-op. */
void cv_db_free(struct cv_db *db);

/* cv_db_migrate - apply every embedded migration above the current version. */
cv_status cv_db_migrate(struct cv_db *db);

/* cv_db_latest_version - highest embedded migration number. */
int cv_db_latest_version(void);

/* cv_db_schema_version - PRAGMA user_version of the open file, or -1. */
int cv_db_schema_version(struct cv_db *db);

/*
 * cv_db_begin - take the writer and open a BEGIN IMMEDIATE transaction.
 * Every cv_db_begin must be followed by exactly one cv_db_commit or
 * cv_db_rollback on the same thread. Blocks while another thread writes.
 * Errors: CV_E_DB_BUSY (another process holds the write lock past the busy
 * timeout), CV_E_DB.
 */
cv_status cv_db_begin(struct cv_db *db);

/* cv_db_commit - COMMIT and release the writer. On failure the transaction
 * is rolled back and the writer released. Errors: CV_E_DB, CV_E_DB_BUSY. */
cv_status cv_db_commit(struct cv_db *db);

/* cv_db_rollback - ROLLBACK and release the writer. Never fails. */
void cv_db_rollback(struct cv_db *db);

/*
 * cv_db_check_writable - readiness probe: a write transaction that touches
 * the file and rolls back. Errors: CV_E_DB, CV_E_DB_BUSY.
 */
cv_status cv_db_check_writable(struct cv_db *db);

/*
 * cv_db_meta_get / cv_db_meta_set - the small key/value table `meta`
 * (instance id, active key id, ...). get: out[cap] NUL-terminated;
 * CV_E_NOT_FOUND if absent, CV_E_LIMIT if too long. set: inside a write
 * transaction.
 */
cv_status cv_db_meta_get(struct cv_db *db, const char *key, char *out, size_t cap);
cv_status cv_db_meta_set(struct cv_db *db, const char *key, const char *value);

#endif
