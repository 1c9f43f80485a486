/* Unit tests: storage/backup (hot backup while a thread keeps putting
 * blobs, restore and decrypt everything back, incremental chains, the
 * entry size cap, tampering, a reader that goes away) and storage/keybackup. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <locale.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "casevault/backup.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keybackup.h"
#include "fixture.h"

/* One upload-like put: blob + row in one transaction. */
static cv_status put_one(struct cv_datadir *dd, size_t size, unsigned seed)
{
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    uint8_t *buf = malloc(size + 1);
    cv_status st;
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i * 7 + seed);
    if ((st = cv_blob_put_begin(dd->bs, &w)) == CV_OK &&
        (st = cv_blob_put_write(w, buf, size)) == CV_OK &&
        (st = cv_blob_put_finish(w, &info)) == CV_OK && (st = cv_blob_put_commit(w)) == CV_OK &&
        (st = cv_db_begin(dd->db)) == CV_OK) {
        st = cv_blob_record(dd->bs, &info);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    if (st == CV_OK)
        cv_blob_put_done(w);
    else
        cv_blob_put_abort(w);
    free(buf);
    return st;
}

static void take(struct cv_datadir *dd, const char *since, const char *path,
                 struct cv_backup_info *info)
{
    struct cv_backup_job *job = NULL;
    struct cv_backup_actor who = {"cli", "operator", NULL, "cli"};
    assert_int_equal(cv_backup_prepare(dd, since, &who, &job, info), CV_OK);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(cv_backup_stream(job, fd, NULL, NULL), CV_OK);
    /* a job streams once */
    assert_int_equal(cv_backup_stream(job, fd, NULL, NULL), CV_E_ARG);
    close(fd);
    cv_backup_job_free(job);
}

static int verify_row(const struct cv_blob_info *info, void *arg)
{
    void **a = arg;
    struct cv_datadir *dd = a[0];
    uint64_t *n = a[1];
    assert_int_equal(cv_blob_verify(dd->bs, info), CV_OK);
    (*n)++;
    return 0;
}

/* Open a restored dir and decrypt every blob; returns the blob count. */
static uint64_t verify_restored(const char *root)
{
    struct cv_datadir *dd = NULL;
    uint64_t n = 0;
    assert_int_equal(cv_datadir_open(root, 1, &dd), CV_OK);
    void *arg[2] = {dd, &n};
    assert_int_equal(cv_blob_each_row(dd->bs, verify_row, arg), CV_OK);
    cv_datadir_free(dd);
    return n;
}

struct putter {
    struct cv_datadir *dd;
    unsigned count;
    volatile int done;
    cv_status st;
};

static void *putter_main(void *arg)
{
    struct putter *p = arg;
    for (unsigned i = 0; i < p->count && p->st == CV_OK; i++)
        p->st = put_one(p->dd, 3000 + i * 97, i);
    p->done = 1;
    return NULL;
}

static void test_hot_backup_while_putting(void **state)
{
    struct fx *f = *state;
    char path[3][200], target[200], keys[200], detail[300];
    struct cv_backup_info info[3];
    struct cv_restore_result res;
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(put_one(f->dd, 70000, i), CV_OK);
    struct putter p = {f->dd, 120, 0, CV_OK};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, putter_main, &p), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "%s/b%d.tar", f->dir, i);
        take(f->dd, NULL, path[i], &info[i]);
    }
    pthread_join(th, NULL);
    assert_int_equal(p.st, CV_OK);
    snprintf(keys, sizeof keys, "%s/keys", f->root);
    uint64_t last = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(target, sizeof target, "%s/r%d", f->dir, i);
        const char *from[1] = {path[i]};
        assert_int_equal(cv_restore(from, 1, keys, target, 0, &res, detail, sizeof detail), CV_OK);
        assert_string_equal(res.last_id, info[i].id);
        assert_int_equal(res.audit_size, info[i].audit_size);
        assert_true(info[i].blobs >= 5 && info[i].blobs <= 125 && info[i].blobs >= last);
        last = info[i].blobs;
        /* everything the snapshot references is there and decrypts */
        assert_int_equal(verify_restored(target), info[i].blobs);
        assert_int_equal(res.blobs, info[i].blobs);
    }
}

static void test_incremental_chain_and_order(void **state)
{
    struct fx *f = *state;
    char full[200], inc[200], inc2[200], target[200], keys[200], detail[300];
    struct cv_backup_info a, b, c;
    struct cv_restore_result res;
    struct stat sb;
    snprintf(full, sizeof full, "%s/full.tar", f->dir);
    snprintf(inc, sizeof inc, "%s/inc.tar", f->dir);
    snprintf(inc2, sizeof inc2, "%s/inc2.tar", f->dir);
    snprintf(keys, sizeof keys, "%s/keys", f->root);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(put_one(f->dd, 1000, i), CV_OK);
    take(f->dd, NULL, full, &a);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(put_one(f->dd, 2000, i), CV_OK);
    take(f->dd, a.id, inc, &b);
    take(f->dd, b.id, inc2, &c); /* nothing new: an empty incremental */
    assert_int_equal(a.blobs, 4);
    assert_int_equal(b.blobs, 3);
    assert_int_equal(c.blobs, 0);
    assert_string_equal(b.base_id, a.id);
    /* unknown or malformed since */
    struct cv_backup_job *job = NULL;
    assert_int_equal(cv_backup_prepare(f->dd, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL, &job, NULL),
                     CV_E_NOT_FOUND);
    assert_int_equal(cv_backup_prepare(f->dd, "nope", NULL, &job, NULL), CV_E_ARG);
    assert_null(job);

    snprintf(target, sizeof target, "%s/r", f->dir);
    const char *chain[3] = {full, inc, inc2};
    assert_int_equal(cv_restore(chain, 3, keys, target, 0, &res, detail, sizeof detail), CV_OK);
    assert_int_equal(res.archives, 3);
    assert_string_equal(res.last_id, c.id);
    assert_int_equal(verify_restored(target), 7);

    const char *gap[2] = {full, inc2};
    const char *swapped[3] = {full, inc2, inc};
    const char *noful[1] = {inc};
    snprintf(target, sizeof target, "%s/r2", f->dir);
    assert_int_equal(cv_restore(gap, 2, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_BACKUP_CHAIN);
    assert_non_null(strstr(detail, "gap or wrong order"));
    assert_int_equal(stat(target, &sb), -1);
    assert_int_equal(cv_restore(swapped, 3, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_BACKUP_CHAIN);
    assert_int_equal(cv_restore(noful, 1, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_BACKUP_CHAIN);
    assert_int_equal(stat(target, &sb), -1);
}

static void test_restore_cap_tamper_and_target(void **state)
{
    struct fx *f = *state;
    char full[200], target[200], keys[200], detail[300], bad[200];
    struct cv_backup_info a;
    struct cv_restore_result res;
    struct stat sb;
    snprintf(full, sizeof full, "%s/full.tar", f->dir);
    snprintf(keys, sizeof keys, "%s/keys", f->root);
    snprintf(target, sizeof target, "%s/r", f->dir);
    assert_int_equal(put_one(f->dd, 200000, 1), CV_OK);
    take(f->dd, NULL, full, &a);
    const char *from[1] = {full};
    /* an entry over the cap (the 200 kB blob; the cap still admits the db) */
    assert_int_equal(cv_restore(from, 1, keys, target, a.db_bytes, &res, detail, sizeof detail),
                     CV_E_UNSAFE_ARCHIVE_ENTRY);
    assert_non_null(strstr(detail, "blobs/"));
    assert_int_equal(stat(target, &sb), -1);
    /* flip one byte inside the blob's data */
    char *raw = NULL;
    size_t len = 0;
    assert_int_equal(cv_file_read(full, 1 << 24, &raw, &len), CV_OK);
    size_t at = len - 100000; /* inside the 200 kB blob, before the manifest */
    raw[at] ^= 1;
    snprintf(bad, sizeof bad, "%s/bad.tar", f->dir);
    assert_int_equal(cv_file_write_durable(bad, raw, len, 0600, 0), CV_OK);
    free(raw);
    const char *bfrom[1] = {bad};
    assert_int_equal(cv_restore(bfrom, 1, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_MANIFEST_MISMATCH);
    assert_int_equal(stat(target, &sb), -1);
    /* an existing empty target stays, emptied again; a non-empty one is refused */
    assert_int_equal(mkdir(target, 0700), 0);
    assert_int_equal(cv_restore(bfrom, 1, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_MANIFEST_MISMATCH);
    assert_int_equal(rmdir(target), 0); /* it is empty */
    assert_int_equal(mkdir(target, 0700), 0);
    char junk[220];
    snprintf(junk, sizeof junk, "%s/x", target);
    assert_int_equal(cv_file_write_durable(junk, "x", 1, 0600, 0), CV_OK);
    assert_int_equal(cv_restore(from, 1, keys, target, 0, &res, detail, sizeof detail),
                     CV_E_NOT_EMPTY);
    assert_int_equal(stat(junk, &sb), 0);
    /* keys dir without the public key */
    char nokeys[200];
    snprintf(nokeys, sizeof nokeys, "%s/nokeys", f->dir);
    assert_int_equal(mkdir(nokeys, 0700), 0);
    snprintf(target, sizeof target, "%s/r3", f->dir);
    assert_int_equal(cv_restore(from, 1, nokeys, target, 0, &res, detail, sizeof detail),
                     CV_E_KEY_MISSING);
    assert_int_equal(stat(target, &sb), -1);
}

static void test_stream_reader_gone(void **state)
{
    struct fx *f = *state;
    struct cv_backup_job *job = NULL;
    int fds[2];
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(put_one(f->dd, 300000, i), CV_OK);
    /* a snapshot dir left by a crashed backup an hour ago is swept */
    char stale[200], staledb[230];
    snprintf(stale, sizeof stale, "%s/tmp/backup-AbC123", f->root);
    snprintf(staledb, sizeof staledb, "%s/casevault.db", stale);
    assert_int_equal(mkdir(stale, 0700), 0);
    assert_int_equal(cv_file_write_durable(staledb, "x", 1, 0600, 0), CV_OK);
    struct timeval old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    assert_int_equal(utimes(stale, old), 0);
    assert_int_equal(cv_backup_prepare(f->dd, NULL, NULL, &job, NULL), CV_OK);
    struct stat sb;
    assert_int_equal(stat(stale, &sb), -1);
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(cv_backup_stream(job, fds[1], NULL, NULL), CV_E_IO);
    close(fds[1]);
    cv_backup_job_free(job);
    /* the snapshot directory is gone */
    char tmp[200];
    snprintf(tmp, sizeof tmp, "rmdir '%s/tmp' 2>/dev/null", f->root);
    assert_int_equal(system(tmp), 0);
}

/* The last blob file under blobs/ that nftw meets. */
static char found_blob[512];

static int find_blob(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_F)
        snprintf(found_blob, sizeof found_blob, "%s", path);
    return 0;
}

enum change { UNCHANGED, SHORTER, LONGER, SYMLINK, GONE };

/* Prepare a full backup, change found_blob as told, then stream it into a
 * file; the stream's status. The file is put back afterwards. */
static cv_status stream_changed(struct fx *f, enum change how)
{
    struct cv_backup_job *job = NULL;
    char out[300], moved[600];
    struct stat sb;
    snprintf(out, sizeof out, "%s/tmp/out.tar", f->root);
    snprintf(moved, sizeof moved, "%s.moved", found_blob);
    assert_int_equal(cv_backup_prepare(f->dd, NULL, NULL, &job, NULL), CV_OK);
    assert_int_equal(stat(found_blob, &sb), 0);
    chmod(found_blob, 0600);
    switch (how) {
    case UNCHANGED: break;
    case SHORTER: assert_int_equal(truncate(found_blob, sb.st_size - 1), 0); break;
    case LONGER: assert_int_equal(truncate(found_blob, sb.st_size + 1), 0); break;
    case SYMLINK:
        assert_int_equal(rename(found_blob, moved), 0);
        assert_int_equal(symlink(moved, found_blob), 0);
        break;
    case GONE: assert_int_equal(rename(found_blob, moved), 0); break;
    }
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    cv_status st = cv_backup_stream(job, fd, NULL, NULL);
    close(fd);
    unlink(out);
    cv_backup_job_free(job);
    if (how == SHORTER || how == LONGER)
        assert_int_equal(truncate(found_blob, sb.st_size), 0);
    if (how == SYMLINK)
        assert_int_equal(unlink(found_blob), 0);
    if (how == SYMLINK || how == GONE)
        assert_int_equal(rename(moved, found_blob), 0);
    return st;
}

/* A blob file that changes between the snapshot and the stream (shorter,
 * longer, a symlink, gone) fails the stream with CV_E_IO: the read-ahead
 * helper's error reaches the caller, and nothing leaks or hangs. */
static void test_stream_blob_file_changed(void **state)
{
    struct fx *f = *state;
    char blobs[300];
    for (unsigned i = 0; i < 3; i++) /* 700 KB: several read-ahead slots */
        assert_int_equal(put_one(f->dd, 700000, i), CV_OK);
    snprintf(blobs, sizeof blobs, "%s/blobs", f->root);
    assert_int_equal(nftw(blobs, find_blob, 8, FTW_PHYS), 0);
    assert_true(found_blob[0] != '\0');
    assert_int_equal(stream_changed(f, UNCHANGED), CV_OK);
    assert_int_equal(stream_changed(f, SHORTER), CV_E_IO);
    assert_int_equal(stream_changed(f, LONGER), CV_E_IO);
    assert_int_equal(stream_changed(f, SYMLINK), CV_E_IO);
    assert_int_equal(stream_changed(f, GONE), CV_E_IO);
    assert_int_equal(stream_changed(f, UNCHANGED), CV_OK);
}

static void test_keybackup_round_trip(void **state)
{
    struct fx *f = *state;
    char keys[200], out[200], back[200], a[600], b[600];
    unsigned n = 0, m = 0;
    snprintf(keys, sizeof keys, "%s/keys", f->root);
    snprintf(out, sizeof out, "%s/keys.cvkeys", f->dir);
    snprintf(back, sizeof back, "%s/keys-back", f->dir);
    const char *pass = "correct horse battery staple";
    assert_int_equal(cv_keybackup_export(keys, "short", 5, out, &n), CV_E_ARG);
    assert_int_equal(cv_keybackup_export(keys, pass, strlen(pass), out, &n), CV_OK);
    assert_true(n >= 3);
    assert_int_equal(cv_keybackup_export(keys, pass, strlen(pass), out, &n), CV_E_EXISTS);
    assert_int_equal(cv_keybackup_import(out, "wrong passphrase", 16, back, &m),
                     CV_E_SIGNATURE_INVALID);
    assert_int_equal(cv_keybackup_import(out, pass, strlen(pass), back, &m), CV_OK);
    assert_int_equal(m, n);
    snprintf(a, sizeof a, "cmp -s '%s/signing.key' '%s/signing.key'", keys, back);
    assert_int_equal(system(a), 0);
    snprintf(b, sizeof b, "diff -r '%s' '%s' >/dev/null", keys, back);
    assert_int_equal(system(b), 0);
    /* never overwrites */
    assert_int_equal(cv_keybackup_import(out, pass, strlen(pass), back, &m), CV_E_EXISTS);
}

int main(void)
{
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
        setlocale(LC_CTYPE, "C.utf8");
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hot_backup_while_putting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_chain_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_cap_tamper_and_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_reader_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_blob_file_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keybackup_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
