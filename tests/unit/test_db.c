/* Unit tests: storage/db (migrations from every earlier version, WAL,
 * transactions, meta) and storage/datadir (init, layout, modes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "casevault/datadir.h"
#include "casevault/db.h"
#include "../../storage/db_internal.h"

static char *tmpdir(void)
{
    char *d = strdup("/tmp/cv-db-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmrf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void test_upgrade_from_every_version(void **state)
{
    (void)state;
    char *d = tmpdir();
    int versions[64];
    int nv = 0;
    versions[nv++] = 0;
    /* Every version a released database can be at: 0 and each migration. */
    for (int v = 1; v <= cv_db_latest_version() && nv < 64; v++) {
        struct cv_db *probe = NULL;
        char p[600];
        snprintf(p, sizeof p, "%s/probe%d.db", d, v);
        assert_int_equal(cv_db_open_at_version(p, v, &probe), CV_OK);
        if (cv_db_schema_version(probe) == v)
            versions[nv++] = v;
        cv_db_free(probe);
    }
    for (int i = 0; i < nv; i++) {
        int v = versions[i];
        char path[600];
        struct cv_db *db = NULL;
        snprintf(path, sizeof path, "%s/v%d.db", d, v);
        assert_int_equal(cv_db_open_at_version(path, v, &db), CV_OK);
        assert_int_equal(cv_db_schema_version(db), v);
        cv_db_free(db);
        db = NULL;
        assert_int_equal(cv_db_open(path, 2, 0, &db), CV_OK);
        assert_int_equal(cv_db_schema_version(db), cv_db_latest_version());
        /* Idempotent: a second migrate is a no-op. */
        assert_int_equal(cv_db_migrate(db), CV_OK);
        cv_db_free(db);
    }
    rmrf(d);
    free(d);
}

static void test_transactions_and_meta(void **state)
{
    (void)state;
    char *d = tmpdir();
    char path[600], v[64];
    struct cv_db *db = NULL;
    snprintf(path, sizeof path, "%s/x.db", d);
    assert_int_equal(cv_db_open(path, 1, 0, &db), CV_E_NOT_FOUND);
    assert_int_equal(cv_db_open(path, 0, 1, &db), CV_E_ARG);
    assert_int_equal(cv_db_open(path, 2, 1, &db), CV_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(cv_db_meta_get(db, "k", v, sizeof v), CV_E_NOT_FOUND);
    assert_int_equal(cv_db_begin(db), CV_OK);
    assert_int_equal(cv_db_meta_set(db, "k", "one"), CV_OK);
    cv_db_rollback(db);
    assert_int_equal(cv_db_meta_get(db, "k", v, sizeof v), CV_E_NOT_FOUND);
    assert_int_equal(cv_db_begin(db), CV_OK);
    assert_int_equal(cv_db_meta_set(db, "k", "two"), CV_OK);
    assert_int_equal(cv_db_commit(db), CV_OK);
    assert_int_equal(cv_db_meta_get(db, "k", v, sizeof v), CV_OK);
    assert_string_equal(v, "two");
    assert_int_equal(cv_db_meta_get(db, "k", v, 3), CV_E_LIMIT);
    assert_int_equal(cv_db_check_writable(db), CV_OK);
    cv_db_free(db);
    cv_db_free(NULL);
    rmrf(d);
    free(d);
}

/* cv_db_step_row / cv_db_step_done: a row, no row, a row where none was
 * expected, and a constraint failure. */
static void test_step_helpers(void **state)
{
    (void)state;
    char *d = tmpdir();
    char path[600];
    struct cv_db *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof path, "%s/x.db", d);
    assert_int_equal(cv_db_open(path, 1, 1, &db), CV_OK);
    assert_int_equal(cv_db_begin(db), CV_OK);
    sqlite3 *c = cv_db_writer(db);
    assert_int_equal(
        sqlite3_exec(c, "CREATE TEMP TABLE t(k INTEGER PRIMARY KEY)", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(c, "INSERT INTO t VALUES (1)", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(cv_db_step_done(st), CV_OK);
    sqlite3_reset(st);
    assert_int_equal(cv_db_step_done(st), CV_E_EXISTS); /* the same key again */
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(c, "SELECT k FROM t WHERE k=?", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int(st, 1, 1);
    assert_int_equal(cv_db_step_row(st, CV_E_NOT_FOUND), CV_OK);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    assert_int_equal(cv_db_step_row(st, CV_E_NOT_FOUND), CV_E_NOT_FOUND); /* no second row */
    sqlite3_reset(st);
    assert_int_equal(cv_db_step_done(st), CV_E_DB); /* a row where none was expected */
    sqlite3_reset(st);
    sqlite3_bind_int(st, 1, 2);
    assert_int_equal(cv_db_step_row(st, CV_E_ACCOUNT_NOT_FOUND), CV_E_ACCOUNT_NOT_FOUND);
    sqlite3_finalize(st);
    cv_db_rollback(db);
    cv_db_free(db);
    rmrf(d);
    free(d);
}

static void test_datadir_init(void **state)
{
    (void)state;
    char *d = tmpdir();
    char root[600], path[PATH_MAX + 64];
    struct stat sb;
    snprintf(root, sizeof root, "%s/a/b/data", d);
    assert_false(cv_datadir_initialized(root));
    assert_int_equal(cv_datadir_init(root), CV_OK);
    assert_true(cv_datadir_initialized(root));
    assert_int_equal(cv_datadir_init(root), CV_E_EXISTS);
    const char *dirs[] = {"", "/blobs", "/tmp", "/keys"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", root, dirs[i]);
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0700);
    }
    snprintf(path, sizeof path, "%s/keys/signing.key", root);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 40);
    snprintf(path, sizeof path, "%s/keys/casevault.pub", root);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);

    struct cv_datadir *dd = NULL;
    assert_int_equal(cv_datadir_open(root, 2, &dd), CV_OK);
    assert_true(cv_ulid_valid(dd->instance_id));
    int fd1 = -1, fd2 = -1;
    assert_int_equal(cv_datadir_lock_server(dd, &fd1), CV_OK);
    assert_int_equal(cv_datadir_lock_server(dd, &fd2), CV_E_BUSY);
    close(fd1);
    snprintf(path, sizeof path, "%s/stale.part", dd->tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    unsigned removed = 0;
    assert_int_equal(cv_datadir_sweep_tmp(dd, &removed), CV_OK);
    assert_int_equal(removed, 1);
    assert_int_not_equal(stat(path, &sb), 0);
    cv_datadir_free(dd);

    /* A non-empty foreign directory is never taken over. */
    snprintf(root, sizeof root, "%s/foreign", d);
    mkdir(root, 0700);
    snprintf(path, sizeof path, "%s/file.txt", root);
    f = fopen(path, "w");
    fclose(f);
    assert_int_equal(cv_datadir_init(root), CV_E_NOT_EMPTY);
    assert_int_equal(cv_datadir_open(root, 1, &dd), CV_E_NOT_INITIALIZED);
    rmrf(d);
    free(d);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_from_every_version),
        cmocka_unit_test(test_transactions_and_meta),
        cmocka_unit_test(test_step_helpers),
        cmocka_unit_test(test_datadir_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
