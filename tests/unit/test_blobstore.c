/* Unit tests: storage/blobstore (round trips at chunk edges and 100 MB,
 * every tamper case, aborts at each step, orphan sweep, no plaintext on
 * disk) and key rotation under concurrent reads (storage/keyring). */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keyring.h"
#include "fixture.h"

/* Deterministic test plaintext: byte at offset i. */
static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 131u) ^ (i >> 13) ^ 0x5a);
}

static void fill(uint8_t *buf, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(off + i);
}

/* Put `size` pattern bytes in pieces of `piece` bytes, record the row. */
static void put_pattern(struct cv_datadir *dd, uint64_t size, size_t piece,
                        struct cv_blob_info *info)
{
    struct cv_blob_writer *w = NULL;
    uint8_t *buf = malloc(piece ? piece : 1);
    uint8_t want[32];
    struct cv_sha256 *h = cv_sha256_new();
    assert_int_equal(cv_blob_put_begin(dd->bs, &w), CV_OK);
    for (uint64_t off = 0; off < size;) {
        size_t n = size - off < piece ? (size_t)(size - off) : piece;
        fill(buf, off, n);
        cv_sha256_update(h, buf, n);
        assert_int_equal(cv_blob_put_write(w, buf, n), CV_OK);
        off += n;
    }
    assert_int_equal(cv_blob_put_write(w, buf, 0), CV_OK);
    assert_int_equal(cv_blob_put_finish(w, info), CV_OK);
    cv_sha256_final(h, want);
    assert_int_equal(info->size, size);
    assert_memory_equal(info->sha256, want, 32);
    assert_true(cv_ulid_valid(info->id));
    assert_int_equal(cv_blob_put_commit(w), CV_OK);
    assert_int_equal(cv_db_begin(dd->db), CV_OK);
    assert_int_equal(cv_blob_record(dd->bs, info), CV_OK);
    assert_int_equal(cv_db_commit(dd->db), CV_OK);
    cv_blob_put_done(w);
    free(buf);
}

/* Read blob id back in reads of `cap` bytes; check it equals the pattern. */
static cv_status get_check(struct cv_blobstore *bs, const char *id, uint64_t size, size_t cap)
{
    struct cv_blob_reader *r = NULL;
    uint8_t *buf = malloc(cap), *exp = malloc(cap);
    uint64_t off = 0;
    size_t got = 1;
    cv_status rc = cv_blob_get_open(bs, id, &r);
    while (rc == CV_OK && got > 0) {
        rc = cv_blob_get_read(r, buf, cap, &got);
        if (rc == CV_OK && got > 0) {
            fill(exp, off, got);
            if (memcmp(buf, exp, got) != 0)
                rc = CV_E_INTERNAL;
            off += got;
        }
    }
    if (rc == CV_OK && off != size)
        rc = CV_E_INTERNAL;
    cv_blob_get_close(r);
    free(buf);
    free(exp);
    return rc;
}

static void blob_path(struct fx *f, const char *id, char *out, size_t cap)
{
    uint8_t h[32];
    char hex[5];
    cv_sha256(id, strlen(id), h);
    cv_hex_encode(h, 2, hex);
    snprintf(out, cap, "%s/blobs/%.2s/%.2s/%s", f->root, hex, hex + 2, id);
}

static void test_round_trips(void **state)
{
    struct fx *f = *state;
    const uint64_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 65536 + 5};
    const size_t pieces[] = {1, 7, 4096, 65536, 100000};
    char path[300];
    struct stat sb;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
            if (pieces[p] == 1 && sizes[i] > 70000)
                continue;
            struct cv_blob_info info;
            put_pattern(f->dd, sizes[i], pieces[p], &info);
            blob_path(f, info.id, path, sizeof path);
            assert_int_equal(stat(path, &sb), 0);
            assert_int_equal((sb.st_mode & 0777), 0600);
            assert_int_equal((uint64_t)sb.st_size, cv_blob_stored_size(sizes[i], CV_BLOB_CHUNK));
            assert_int_equal(get_check(f->dd->bs, info.id, sizes[i], 1 + 1000 * p), CV_OK);
            assert_int_equal(cv_blob_verify(f->dd->bs, &info), CV_OK);
            struct cv_blob_info back;
            assert_int_equal(cv_blob_lookup(f->dd->bs, info.id, &back), CV_OK);
            assert_int_equal(back.size, sizes[i]);
            assert_memory_equal(back.sha256, info.sha256, 32);
        }
    }
    /* Exact stored sizes at the chunk edges. */
    assert_int_equal(cv_blob_stored_size(0, 65536), 62 + 17);
    assert_int_equal(cv_blob_stored_size(65536, 65536), 62 + 65536 + 17);
    assert_int_equal(cv_blob_stored_size(65537, 65536), 62 + 65537 + 34);
}

static void test_100mb(void **state)
{
    struct fx *f = *state;
    struct cv_blob_info info;
    uint64_t size = 100ull * 1000 * 1000;
    put_pattern(f->dd, size, 1 << 20, &info);
    assert_int_equal(get_check(f->dd->bs, info.id, size, 300000), CV_OK);
}

static void test_empty_tmp_after_puts_and_bad_args(void **state)
{
    struct fx *f = *state;
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    struct cv_blob_reader *r = NULL;
    char tmp[200];
    uint8_t b[4];
    size_t got;
    assert_int_equal(cv_blob_put_begin(f->dd->bs, &w), CV_OK);
    assert_int_equal(cv_blob_put_commit(w), CV_E_ARG); /* not finished */
    assert_int_equal(cv_blob_put_write(w, NULL, 3), CV_E_ARG);
    assert_int_equal(cv_blob_put_write(w, "abc", 3), CV_OK);
    assert_int_equal(cv_blob_put_finish(w, &info), CV_OK);
    assert_int_equal(cv_blob_put_write(w, "x", 1), CV_E_ARG); /* after finish */
    assert_int_equal(cv_blob_put_finish(w, &info), CV_E_ARG);
    assert_int_equal(cv_blob_put_commit(w), CV_OK);
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_record(f->dd->bs, &info), CV_OK);
    assert_int_equal(cv_blob_record(f->dd->bs, &info), CV_E_EXISTS);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    cv_blob_put_done(w);
    assert_int_equal(cv_blob_get_open(f->dd->bs, "not-an-id", &r), CV_E_ARG);
    char other[CV_ULID_LEN + 1];
    cv_ulid_new(other);
    assert_int_equal(cv_blob_get_open(f->dd->bs, other, &r), CV_E_NOT_FOUND);
    assert_int_equal(cv_blob_get_open(f->dd->bs, info.id, &r), CV_OK);
    assert_int_equal(cv_blob_get_read(r, b, 0, &got), CV_E_ARG);
    cv_blob_get_close(r);
    snprintf(tmp, sizeof tmp, "%s/tmp", f->root);
    DIR *d = opendir(tmp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 0);
}

static int count_files(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(find '%s' -type f | wc -l) -eq 0", dir);
    return system(cmd) == 0 ? 0 : 1;
}

static void test_abort_at_every_step(void **state)
{
    struct fx *f = *state;
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    char blobs[200], tmp[200];
    uint8_t buf[70000];
    fill(buf, 0, sizeof buf);
    snprintf(blobs, sizeof blobs, "%s/blobs", f->root);
    snprintf(tmp, sizeof tmp, "%s/tmp", f->root);
    for (int step = 0; step < 4; step++) {
        assert_int_equal(cv_blob_put_begin(f->dd->bs, &w), CV_OK);
        if (step >= 1)
            assert_int_equal(cv_blob_put_write(w, buf, sizeof buf), CV_OK);
        if (step >= 2)
            assert_int_equal(cv_blob_put_finish(w, &info), CV_OK);
        if (step >= 3)
            assert_int_equal(cv_blob_put_commit(w), CV_OK);
        cv_blob_put_abort(w);
        assert_int_equal(count_files(blobs), 0);
        assert_int_equal(count_files(tmp), 0);
    }
    /* done() on a writer that never committed is an abort too. */
    assert_int_equal(cv_blob_put_begin(f->dd->bs, &w), CV_OK);
    cv_blob_put_done(w);
    assert_int_equal(count_files(tmp), 0);
    cv_blob_put_abort(NULL);
    cv_blob_put_done(NULL);
    cv_blob_get_close(NULL);
}

static int list_cb(const char *id, int in_flight, void *arg)
{
    int *c = arg;
    (void)id;
    c[in_flight ? 1 : 0]++;
    return 0;
}

static void test_orphans(void **state)
{
    struct fx *f = *state;
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info kept, orphan;
    unsigned removed = 99;
    int counts[2] = {0, 0};
    put_pattern(f->dd, 1000, 100, &kept);
    assert_int_equal(cv_blob_put_begin(f->dd->bs, &w), CV_OK);
    assert_int_equal(cv_blob_put_write(w, "orphan", 6), CV_OK);
    assert_int_equal(cv_blob_put_finish(w, &orphan), CV_OK);
    assert_int_equal(cv_blob_put_commit(w), CV_OK);
    /* While its put is live the published file is in flight: kept. */
    assert_int_equal(cv_blob_list(f->dd->bs, list_cb, counts), CV_OK);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(cv_blobstore_sweep_orphans(f->dd->bs, &removed), CV_OK);
    assert_int_equal(removed, 0);
    /* The process "dies" before its row commits: the lock goes away. */
    cv_blob_put_done(w);
    assert_int_equal(cv_blobstore_sweep_orphans(f->dd->bs, &removed), CV_OK);
    assert_int_equal(removed, 1);
    uint64_t stored;
    assert_int_equal(cv_blob_stat(f->dd->bs, orphan.id, &stored), CV_E_NOT_FOUND);
    assert_int_equal(cv_blob_stat(f->dd->bs, kept.id, &stored), CV_OK);
    assert_int_equal(stored, cv_blob_stored_size(1000, CV_BLOB_CHUNK));
    assert_int_equal(get_check(f->dd->bs, kept.id, 1000, 64), CV_OK);
    /* forget (row) then delete (file). */
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_forget(f->dd->bs, kept.id), CV_OK);
    assert_int_equal(cv_blob_forget(f->dd->bs, kept.id), CV_E_NOT_FOUND);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_delete(f->dd->bs, kept.id), CV_OK);
    assert_int_equal(cv_blob_delete(f->dd->bs, kept.id), CV_E_NOT_FOUND);
    assert_int_equal(cv_blob_delete(f->dd->bs, "../../etc"), CV_E_ARG);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static void patch_byte(const char *path, off_t off, uint8_t x)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= x;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void update_row(struct fx *f, const char *sql, const char *id, const void *blob, int n)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char path[200];
    snprintf(path, sizeof path, "%s/casevault.db", f->root);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, blob, n, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_tamper(void **state)
{
    struct fx *f = *state;
    struct cv_blob_info a, b, c;
    struct cv_blob_reader *r = NULL;
    char pa[300], pb[300], pc[300], save[300];
    const uint64_t size = 3 * 65536 + 100; /* four chunks */
    put_pattern(f->dd, size, 65536, &a);
    put_pattern(f->dd, size, 65536, &b);
    put_pattern(f->dd, 10, 10, &c);
    blob_path(f, a.id, pa, sizeof pa);
    blob_path(f, b.id, pb, sizeof pb);
    blob_path(f, c.id, pc, sizeof pc);
    snprintf(save, sizeof save, "%s/saved", f->dir);
    copy_file(pa, save);
    assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_OK);
    off_t full = (off_t)cv_blob_stored_size(size, CV_BLOB_CHUNK);
    off_t c1 = CV_BLOB_HEADER_LEN, clen = 65536 + 17;

    /* Truncated: by one byte, and by the whole final chunk. */
    assert_int_equal(truncate(pa, full - 1), 0);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_TRUNCATED);
    assert_int_equal(truncate(pa, c1 + 3 * clen), 0);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_TRUNCATED);
    assert_int_equal(truncate(pa, 30), 0);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_TRUNCATED);
    assert_int_equal(truncate(pa, 0), 0);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_HEADER);
    copy_file(save, pa);
    /* Trailing bytes. */
    FILE *fp = fopen(pa, "ab");
    fputc(0, fp);
    fclose(fp);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_TRAILING);
    copy_file(save, pa);
    /* Swapped with another blob's file of the same size. */
    copy_file(pb, pa);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_SWAPPED);
    assert_int_equal(cv_blob_verify(f->dd->bs, &a), CV_E_BLOB_SWAPPED);
    /* ... even with its header id rewritten: the first chunk's AD and the
     * DEK both differ. */
    int fd = open(pa, O_RDWR);
    assert_int_equal(pwrite(fd, a.id, CV_ULID_LEN, 12), CV_ULID_LEN);
    close(fd);
    assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_E_BLOB_AUTH);
    copy_file(save, pa);
    /* Bad magic, unknown version, absurd chunk size. */
    patch_byte(pa, 0, 0x20);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_HEADER);
    copy_file(save, pa);
    patch_byte(pa, 6, 0x02);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_HEADER);
    copy_file(save, pa);
    patch_byte(pa, 8, 0x40);
    assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_HEADER);
    copy_file(save, pa);
    /* A flipped bit in the secretstream header, in the first, a middle and
     * the final chunk. */
    off_t spots[] = {40, c1 + 5, c1 + clen + 100, c1 + 3 * clen + 50, full - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        patch_byte(pa, spots[i], 0x01);
        assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_E_BLOB_AUTH);
        copy_file(save, pa);
    }
    /* The middle chunks reordered. */
    {
        uint8_t *x = malloc((size_t)clen), *y = malloc((size_t)clen);
        fd = open(pa, O_RDWR);
        assert_int_equal(pread(fd, x, (size_t)clen, c1 + clen), clen);
        assert_int_equal(pread(fd, y, (size_t)clen, c1 + 2 * clen), clen);
        assert_int_equal(pwrite(fd, y, (size_t)clen, c1 + clen), clen);
        assert_int_equal(pwrite(fd, x, (size_t)clen, c1 + 2 * clen), clen);
        close(fd);
        free(x);
        free(y);
        assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_E_BLOB_AUTH);
        copy_file(save, pa);
    }
    assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_OK);
    /* Wrong key: the row holds a valid wrap of another DEK for this id. */
    {
        uint8_t dek[32], wrapped[CV_WRAPPED_BYTES];
        char kid[CV_KEY_ID_LEN + 1], ad[64];
        randombytes_buf(dek, sizeof dek);
        snprintf(ad, sizeof ad, "blob/%s", a.id);
        assert_int_equal(cv_keyring_wrap(f->dd->kr, ad, dek, kid, wrapped), CV_OK);
        update_row(f, "UPDATE blobs SET wrapped_dek=? WHERE id=?", a.id, wrapped, sizeof wrapped);
        assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_E_BLOB_AUTH);
        /* Another blob's wrapped DEK: bound to its id, so it does not open. */
        update_row(f, "UPDATE blobs SET wrapped_dek=? WHERE id=?", a.id, b.wrapped_dek,
                   CV_WRAPPED_BYTES);
        assert_int_equal(cv_blob_get_open(f->dd->bs, a.id, &r), CV_E_BLOB_AUTH);
        update_row(f, "UPDATE blobs SET wrapped_dek=? WHERE id=?", a.id, a.wrapped_dek,
                   CV_WRAPPED_BYTES);
        assert_int_equal(get_check(f->dd->bs, a.id, size, 65536), CV_OK);
    }
    /* The row's hash differs from the content. */
    {
        uint8_t h[32];
        memcpy(h, c.sha256, 32);
        h[0] ^= 1;
        update_row(f, "UPDATE blobs SET sha256=? WHERE id=?", c.id, h, 32);
        assert_int_equal(get_check(f->dd->bs, c.id, 10, 64), CV_E_BLOB_HASH);
        struct cv_blob_info bad = c;
        bad.sha256[0] ^= 1;
        assert_int_equal(cv_blob_verify(f->dd->bs, &bad), CV_E_BLOB_HASH);
    }
    /* The row claims another size (the file length no longer fits). */
    {
        struct cv_blob_info bad = c;
        bad.size = 11;
        assert_int_equal(cv_blob_verify(f->dd->bs, &bad), CV_E_BLOB_TRUNCATED);
        bad.size = 9;
        assert_int_equal(cv_blob_verify(f->dd->bs, &bad), CV_E_BLOB_TRAILING);
    }
    /* Missing file. */
    assert_int_equal(unlink(pc), 0);
    assert_int_equal(cv_blob_get_open(f->dd->bs, c.id, &r), CV_E_NOT_FOUND);
    /* A wrong KEK (the key file replaced): the DEK does not unwrap. */
    {
        char active[CV_KEY_ID_LEN + 1], kp[300];
        struct cv_datadir *dd2 = NULL;
        uint8_t junk[32];
        cv_keyring_active_kek(f->dd->kr, active);
        snprintf(kp, sizeof kp, "%s/keys/%s.kek", f->root, active);
        snprintf(save, sizeof save, "%s/kek.saved", f->dir);
        copy_file(kp, save);
        randombytes_buf(junk, sizeof junk);
        fd = open(kp, O_WRONLY | O_TRUNC);
        assert_int_equal(write(fd, junk, 32), 32);
        close(fd);
        /* The root key no longer unwraps either, so the data dir refuses. */
        assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_E_CRYPTO);
        copy_file(save, kp);
    }
}

/* Walk every regular file under root: 1 if any contains needle. */
static const uint8_t *g_needle;
static size_t g_needle_len;
static int g_found;
static int g_files;

static int scan_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(sb->st_mode))
        return 0;
    g_files++;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return 0;
    static uint8_t buf[1 << 20];
    size_t keep = 0, n;
    while ((n = fread(buf + keep, 1, sizeof buf - keep, fp)) > 0) {
        if (memmem(buf, keep + n, g_needle, g_needle_len) != NULL)
            g_found = 1;
        size_t total = keep + n;
        keep = total < g_needle_len - 1 ? total : g_needle_len - 1;
        memmove(buf, buf + total - keep, keep);
    }
    fclose(fp);
    return 0;
}

static void test_no_plaintext_on_disk(void **state)
{
    struct fx *f = *state;
    uint8_t run[48];
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    memcpy(run, "CASEVAULT-PLAINTEXT-CANARY-", 27);
    randombytes_buf(run + 27, sizeof run - 27);
    for (size_t i = 27; i < sizeof run; i++)
        run[i] = (uint8_t)('a' + run[i] % 26);
    /* The run straddles a chunk boundary, repeated in a 1 MB blob. */
    assert_int_equal(cv_blob_put_begin(f->dd->bs, &w), CV_OK);
    uint8_t *buf = malloc(65536);
    for (int i = 0; i < 16; i++) {
        memset(buf, 'x', 65536);
        memcpy(buf + 65536 - 20, run, 20);
        if (i > 0)
            memcpy(buf, run + 20, sizeof run - 20);
        assert_int_equal(cv_blob_put_write(w, buf, 65536), CV_OK);
    }
    assert_int_equal(cv_blob_put_write(w, run + 20, sizeof run - 20), CV_OK);
    free(buf);
    assert_int_equal(cv_blob_put_finish(w, &info), CV_OK);
    assert_int_equal(cv_blob_put_commit(w), CV_OK);
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_record(f->dd->bs, &info), CV_OK);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    cv_blob_put_done(w);
    assert_int_equal(cv_blob_verify(f->dd->bs, &info), CV_OK);
    g_needle = run;
    g_needle_len = sizeof run;
    g_found = 0;
    g_files = 0;
    assert_int_equal(nftw(f->root, scan_file, 16, FTW_PHYS), 0);
    assert_true(g_files >= 4);
    assert_false(g_found);
    /* The scanner does find the run when it is there. */
    char canary[300];
    snprintf(canary, sizeof canary, "%s/tmp/canary", f->root);
    FILE *fp = fopen(canary, "wb");
    fwrite("xx", 1, 2, fp);
    fwrite(run, 1, sizeof run, fp);
    fclose(fp);
    assert_int_equal(nftw(f->root, scan_file, 16, FTW_PHYS), 0);
    assert_true(g_found);
    unlink(canary);
}

/* ---- rotation while readers read ---- */

struct reader_arg {
    struct cv_datadir *dd;
    struct cv_blob_info *blobs;
    int n;
    volatile int *stop;
    int reads;
    int failures;
    cv_status last;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;
    for (int round = 0; round < 100000 && !*a->stop; round++) {
        for (int i = 0; i < a->n; i++) {
            cv_status rc = get_check(a->dd->bs, a->blobs[i].id, a->blobs[i].size, 65536);
            a->reads++;
            if (rc != CV_OK) {
                a->failures++;
                a->last = rc;
            }
        }
    }
    return NULL;
}

static void test_rotation_under_reads(void **state)
{
    struct fx *f = *state;
    enum { N = 40 };
    struct cv_blob_info blobs[N + 1];
    struct cv_datadir *cli = NULL, *fresh = NULL;
    struct cv_rotate_stats stats;
    char old[CV_KEY_ID_LEN + 1], act[CV_KEY_ID_LEN + 1];
    volatile int stop = 0;
    uint64_t refs = 0;
    uint8_t blind_before[32], blind_after[32];
    struct cv_audit_event who = {.actor_id = "cli", .actor_role = "operator", .client = "cli"};
    for (int i = 0; i < N; i++)
        put_pattern(f->dd, (uint64_t)(i * 7919) % 200000, 4096, &blobs[i]);
    cv_keyring_active_kek(f->dd->kr, old);
    assert_int_equal(
        cv_keyring_keyed_hash(f->dd->kr, CV_KEY_BLIND, "t", "13800138000", 11, blind_before),
        CV_OK);
    /* A put that starts before the rotation and records after it. */
    struct cv_blob_writer *late = NULL;
    struct cv_blob_info late_info;
    assert_int_equal(cv_blob_put_begin(f->dd->bs, &late), CV_OK);
    assert_int_equal(cv_blob_put_write(late, "late", 4), CV_OK);
    assert_string_equal(old, (cv_keyring_active_kek(f->dd->kr, act), act));

    /* "The server" (f->dd) reads in two threads; "the CLI" rotates. */
    struct reader_arg ra[2] = {{f->dd, blobs, N, &stop, 0, 0, CV_OK},
                               {f->dd, blobs, N, &stop, 0, 0, CV_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &ra[i]), 0);
    assert_int_equal(cv_datadir_open(f->root, 1, &cli), CV_OK);
    assert_int_equal(cv_keyring_retire(cli->kr, old, &who, &refs), CV_E_ARG); /* active */
    assert_int_equal(cv_keyring_rotate(cli->kr, 3, &who, NULL, NULL, &stats), CV_OK);
    assert_string_equal(stats.old_kek, old);
    assert_string_not_equal(stats.new_kek, old);
    assert_int_equal(stats.blobs, N);
    assert_int_equal(stats.root_keys, 1);
    assert_true(stats.batches >= N / 3);
    usleep(200000);
    stop = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_true(ra[i].reads >= N);
        assert_int_equal(ra[i].failures, 0);
    }
    /* The late put records under the new KEK; a new put wraps under it. */
    assert_int_equal(cv_blob_put_finish(late, &late_info), CV_OK);
    assert_string_equal(late_info.kek_id, old);
    assert_int_equal(cv_blob_put_commit(late), CV_OK);
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_record(f->dd->bs, &late_info), CV_OK);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    cv_blob_put_done(late);
    struct cv_blob_info row;
    assert_int_equal(cv_blob_lookup(f->dd->bs, late_info.id, &row), CV_OK);
    assert_string_equal(row.kek_id, stats.new_kek);
    put_pattern(f->dd, 5000, 1000, &blobs[N]);
    assert_string_equal(blobs[N].kek_id, stats.new_kek);
    cv_keyring_active_kek(f->dd->kr, act);
    assert_string_equal(act, stats.new_kek);
    /* A row that still names the old key blocks its retirement. */
    update_row(f, "UPDATE blobs SET wrapped_dek=? WHERE id=?", blobs[0].id, blobs[0].wrapped_dek,
               CV_WRAPPED_BYTES);
    {
        sqlite3 *db;
        char path[200], sql[200];
        snprintf(path, sizeof path, "%s/casevault.db", f->root);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        snprintf(sql, sizeof sql, "UPDATE blobs SET kek_id='%s' WHERE id='%s'", old, blobs[0].id);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    assert_int_equal(get_check(f->dd->bs, blobs[0].id, blobs[0].size, 65536), CV_OK);
    assert_int_equal(cv_keyring_retire(cli->kr, old, &who, &refs), CV_E_NOT_EMPTY);
    assert_int_equal(refs, 1);
    /* A second rotation picks it up; then the old key retires. */
    assert_int_equal(cv_keyring_rotate(cli->kr, 100, &who, NULL, NULL, &stats), CV_OK);
    assert_int_equal(stats.blobs, N + 2);
    assert_int_equal(cv_keyring_retire(cli->kr, old, &who, &refs), CV_OK);
    assert_int_equal(refs, 0);
    assert_int_equal(cv_keyring_retire(cli->kr, old, &who, &refs), CV_E_NOT_FOUND);
    assert_int_equal(cv_keyring_retire(cli->kr, "nothex", &who, &refs), CV_E_ARG);
    assert_int_equal(cv_keyring_rotate(cli->kr, 0, &who, NULL, NULL, &stats), CV_E_ARG);
    cv_datadir_free(cli);
    /* The long-lived handle and a fresh one both read everything. */
    for (int i = 0; i <= N; i++)
        assert_int_equal(get_check(f->dd->bs, blobs[i].id, blobs[i].size, 65536), CV_OK);
    assert_int_equal(cv_datadir_open(f->root, 1, &fresh), CV_OK);
    for (int i = 0; i <= N; i++)
        assert_int_equal(get_check(fresh->bs, blobs[i].id, blobs[i].size, 65536), CV_OK);
    /* Derived keys survive rotation (the root key is re-wrapped, not new). */
    assert_int_equal(
        cv_keyring_keyed_hash(fresh->kr, CV_KEY_BLIND, "t", "13800138000", 11, blind_after), CV_OK);
    assert_memory_equal(blind_before, blind_after, 32);
    cv_datadir_free(fresh);
}

/* ---- a second backend: in memory, with a write that fails on demand ---- */

struct membe {
    uint8_t *data;
    size_t len, cap;
    char id[CV_ULID_LEN + 1];
    int published, writes, fail_at;
};

static cv_status m_stage_open(void *be, const char *id, void **h)
{
    struct membe *m = be;
    memcpy(m->id, id, sizeof m->id);
    m->len = 0;
    m->published = 0;
    *h = m;
    return CV_OK;
}

static cv_status m_stage_write(void *h, const void *buf, size_t len)
{
    struct membe *m = h;
    if (++m->writes == m->fail_at)
        return CV_E_IO;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->data = realloc(m->data, m->cap);
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return CV_OK;
}

static cv_status m_ok(void *h)
{
    (void)h;
    return CV_OK;
}

static cv_status m_publish(void *h)
{
    ((struct membe *)h)->published = 1;
    return CV_OK;
}

static void m_discard(void *h)
{
    struct membe *m = h;
    m->len = 0;
    m->published = 0;
}

static void m_release(void *h)
{
    (void)h;
}

struct mrd {
    struct membe *m;
    size_t off;
};

static cv_status m_open(void *be, const char *id, void **h, uint64_t *stored)
{
    struct membe *m = be;
    struct mrd *r;
    if (!m->published || strcmp(id, m->id) != 0)
        return CV_E_NOT_FOUND;
    r = calloc(1, sizeof *r);
    r->m = m;
    *h = r;
    *stored = m->len;
    return CV_OK;
}

static cv_status m_read(void *h, void *buf, size_t cap, size_t *got)
{
    struct mrd *r = h;
    size_t n = r->m->len - r->off < cap ? r->m->len - r->off : cap;
    memcpy(buf, r->m->data + r->off, n);
    r->off += n;
    *got = n;
    return CV_OK;
}

static void m_close(void *h)
{
    free(h);
}

static cv_status m_stat(void *be, const char *id, uint64_t *stored)
{
    struct membe *m = be;
    if (!m->published || strcmp(id, m->id) != 0)
        return CV_E_NOT_FOUND;
    *stored = m->len;
    return CV_OK;
}

static cv_status m_remove(void *be, const char *id)
{
    (void)id;
    m_discard(be);
    return CV_OK;
}

static cv_status m_list(void *be, int (*fn)(const char *id, int in_flight, void *arg), void *arg)
{
    struct membe *m = be;
    if (m->published)
        fn(m->id, 0, arg);
    return CV_OK;
}

static void m_free(void *be)
{
    struct membe *m = be;
    free(m->data);
    free(m);
}

static const struct cv_blobstore_ops mem_ops = {
    .name = "memory",
    .stage_open = m_stage_open,
    .stage_write = m_stage_write,
    .stage_sync = m_ok,
    .stage_publish = m_publish,
    .stage_discard = m_discard,
    .stage_release = m_release,
    .open = m_open,
    .read = m_read,
    .close = m_close,
    .stat = m_stat,
    .remove = m_remove,
    .list = m_list,
    .free = m_free,
};

static void test_other_backend_and_write_errors(void **state)
{
    struct fx *f = *state;
    struct cv_blobstore *bs = NULL;
    struct membe *m = calloc(1, sizeof *m);
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    uint8_t *buf = malloc(1 << 20);
    fill(buf, 0, 1 << 20);
    assert_int_equal(cv_blobstore_new(&mem_ops, m, f->dd->db, f->dd->kr, &bs), CV_OK);
    /* A round trip through the same encryption layer. */
    assert_int_equal(cv_blob_put_begin(bs, &w), CV_OK);
    assert_int_equal(cv_blob_put_write(w, buf, 1 << 20), CV_OK);
    assert_int_equal(cv_blob_put_finish(w, &info), CV_OK);
    assert_int_equal(cv_blob_put_commit(w), CV_OK);
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_blob_record(bs, &info), CV_OK);
    assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
    cv_blob_put_done(w);
    assert_int_equal(m->len, cv_blob_stored_size(1 << 20, CV_BLOB_CHUNK));
    assert_int_equal(get_check(bs, info.id, 1 << 20, 4096), CV_OK);
    /* A write failing before, at and after the helper thread starts: the
     * error surfaces from write or finish, and abort cleans up. 32 chunks
     * make 5 backend writes: the header, then one per slot of 8 chunks
     * (SLOT_CHUNKS in storage/blobstore.c). */
    for (int at = 1; at <= 5; at++) {
        m->writes = 0;
        m->fail_at = at;
        cv_status rc = cv_blob_put_begin(bs, &w);
        if (at == 1) {
            assert_int_equal(rc, CV_E_IO); /* the header write */
            continue;
        }
        assert_int_equal(rc, CV_OK);
        for (int i = 0; i < 32 && rc == CV_OK; i++)
            rc = cv_blob_put_write(w, buf, 65536);
        if (rc == CV_OK)
            rc = cv_blob_put_finish(w, &info);
        assert_int_equal(rc, CV_E_IO);
        assert_int_equal(cv_blob_put_write(w, buf, 1), CV_E_ARG);
        assert_int_equal(cv_blob_put_commit(w), CV_E_ARG);
        cv_blob_put_abort(w);
        assert_int_equal(m->len, 0);
    }
    cv_blobstore_free(bs);
    cv_blobstore_free(NULL);
    free(buf);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_100mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_tmp_after_puts_and_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_plaintext_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_under_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_backend_and_write_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
