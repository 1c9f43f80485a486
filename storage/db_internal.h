/*
 * Private to storage/: raw SQLite access for the storage modules. Nothing
 * outside storage/ includes this file (except its unit test, test_db).
 */
#ifndef CASEVAULT_DB_INTERNAL_H
#define CASEVAULT_DB_INTERNAL_H

#include <sqlite3.h>

#include "casevault/db.h"

/* The writer connection; only valid between cv_db_begin and commit/rollback
 * on the calling thread. */
sqlite3 *cv_db_writer(struct cv_db *db);

/*
 * cv_db_writer_stmt - a cached prepared statement on the writer connection
 * for `sql`, which must be a string literal (the cache is keyed by its
 * address). Returned reset with bindings cleared; the caller must
 * sqlite3_reset it after use and never finalize it (cv_db_free does).
 * Only between cv_db_begin and commit/rollback, like cv_db_writer. NULL if
 * it cannot be prepared or the cache (16) is full: prepare your own then.
 */
sqlite3_stmt *cv_db_writer_stmt(struct cv_db *db, const char *sql);

/* Borrow a reader connection (blocks while all are in use); give it back
 * with cv_db_reader_put. Never returns NULL. */
sqlite3 *cv_db_reader_get(struct cv_db *db);
void cv_db_reader_put(struct cv_db *db, sqlite3 *conn);

/* cv_db_meta_get on a given connection (inside a transaction of the
 * caller's, or a reader it holds). Errors as cv_db_meta_get. */
cv_status cv_db_meta_get_on(sqlite3 *c, const char *key, char *out, size_t cap);

/* Map an SQLite result code to a cv_status (BUSY/LOCKED -> CV_E_DB_BUSY). */
cv_status cv_db_status(int sqlite_rc);

/*
 * cv_db_step_row - sqlite3_step(st) for a query that should yield a row:
 * CV_OK with the row ready to read, `none` when there is no (further) row
 * (SQLITE_DONE), otherwise cv_db_status of the result (CV_E_DB_BUSY,
 * CV_E_NOMEM, CV_E_EXISTS, CV_E_DB).
 */
cv_status cv_db_step_row(sqlite3_stmt *st, cv_status none);

/*
 * cv_db_step_done - sqlite3_step(st) for a statement that returns no row
 * (INSERT, UPDATE, DELETE): CV_OK once it ran; a row is CV_E_DB; other
 * results as cv_db_status.
 */
cv_status cv_db_step_done(sqlite3_stmt *st);

/* Embedded migrations (generated from schemas/sql by scripts/embed_sql.py). */
struct cv_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct cv_migration cv_migrations[];
extern const unsigned cv_migrations_count;

#endif
