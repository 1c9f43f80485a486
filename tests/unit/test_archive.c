/* Unit tests: storage/archive. Deterministic tar and zip, UTF-8 names with
 * the zip EFS flag (case C26), Zip64 past 4 GiB (case C28, checked with
 * ../shared/cases/tools/check_export.py, unzip -t and Python's zipfile),
 * and the reader's refusal of unsafe entries. */
#include <fcntl.h>
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <sodium.h>

#include "casevault/archive.h"

static const char *names[] = {
    "case.json",
    "documents/01JABCDEFGHJKMNPQRSTVWXYZ0-id_in_hand.jpg",
    "originals/01JABCDEFGHJKMNPQRSTVWXYZ1-Führerschein_überprüft.jpg",
    "originals/01JABCDEFGHJKMNPQRSTVWXYZ2-营业执照_正本.jpg",
    "originals/01JABCDEFGHJKMNPQRSTVWXYZ3-Свидетельство.jpg",
    "originals/01JABCDEFGHJKMNPQRSTVWXYZ4-selfie-ID ✓.jpg",
    "originals/01JABCDEFGHJKMNPQRSTVWXYZ5-scan_business_license_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.jpg",
};
#define NNAMES (sizeof names / sizeof names[0])

struct mem {
    uint8_t *p;
    size_t len, cap;
};

static cv_status to_mem(void *arg, const uint8_t *data, size_t len)
{
    struct mem *m = arg;
    if (m->len + len > m->cap) {
        size_t nc = (m->cap + len) * 2;
        uint8_t *np = realloc(m->p, nc);
        if (np == NULL)
            return CV_E_NOMEM;
        m->p = np;
        m->cap = nc;
    }
    memcpy(m->p + m->len, data, len);
    m->len += len;
    return CV_OK;
}

static void build(enum cv_archive_format fmt, struct mem *m)
{
    struct cv_archive_writer *w = NULL;
    memset(m, 0, sizeof *m);
    assert_int_equal(cv_archive_writer_new(fmt, to_mem, m, &w), CV_OK);
    assert_int_equal(cv_archive_add_dir(w, "documents", 1795980000), CV_OK);
    for (size_t i = 0; i < NNAMES; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "content %zu\n", i);
        assert_int_equal(cv_archive_add_buffer(w, names[i], body, (size_t)n, 1795980000, i == 0),
                         CV_OK);
    }
    /* Declared sizes are enforced both ways. */
    assert_int_equal(cv_archive_begin_file(w, "short.bin", 10, 1795980000, 0), CV_OK);
    assert_int_equal(cv_archive_write(w, "12345678901", 11), CV_E_ARCHIVE_FORMAT);
    assert_int_equal(cv_archive_write(w, "12345", 5), CV_OK);
    assert_int_equal(cv_archive_end_file(w), CV_E_ARCHIVE_FORMAT);
    assert_int_equal(cv_archive_write(w, "67890", 5), CV_OK);
    assert_int_equal(cv_archive_end_file(w), CV_OK);
    assert_int_equal(cv_archive_writer_finish(w), CV_OK);
    cv_archive_writer_free(w);
}

static void read_back(struct mem *m, int seekable)
{
    char path[] = "/tmp/cv-arch-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, m->p, m->len), (ssize_t)m->len);
    lseek(fd, 0, SEEK_SET);
    struct cv_archive_reader *r = NULL;
    assert_int_equal(cv_archive_reader_open_fd(fd, seekable, 1 << 20, &r), CV_OK);
    const char *name;
    uint64_t size;
    size_t i = 0;
    while (cv_archive_next(r, &name, &size) == CV_OK) {
        char buf[64];
        size_t got = 0;
        if (i < NNAMES) {
            assert_string_equal(name, names[i]);
            assert_int_equal(cv_archive_read(r, buf, sizeof buf, &got), CV_OK);
            char want[64];
            snprintf(want, sizeof want, "content %zu\n", i);
            assert_int_equal(got, strlen(want));
            assert_memory_equal(buf, want, got);
        }
        i++;
    }
    assert_int_equal(i, NNAMES + 1);
    cv_archive_reader_free(r);
    close(fd);
    unlink(path);
}

static void test_deterministic_tar_and_zip(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct mem a, b;
        build(f ? CV_ARCHIVE_ZIP : CV_ARCHIVE_TAR, &a);
        sleep(f == 0 ? 1 : 0); /* a second later: still the same bytes */
        build(f ? CV_ARCHIVE_ZIP : CV_ARCHIVE_TAR, &b);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.p, b.p, a.len);
        read_back(&a, 1);
        if (f == 0)
            read_back(&a, 0);
        free(a.p);
        free(b.p);
    }
}

static void test_zip_utf8_flag(void **state)
{
    (void)state;
    struct mem m;
    build(CV_ARCHIVE_ZIP, &m);
    /* Every header naming a non-ASCII file has bit 11 (EFS) set. */
    int checked = 0;
    for (size_t i = 0; i + 46 < m.len; i++) {
        int local = memcmp(m.p + i, "PK\x03\x04", 4) == 0;
        int central = memcmp(m.p + i, "PK\x01\x02", 4) == 0;
        if (!local && !central)
            continue;
        uint16_t flags = (uint16_t)(m.p[i + (local ? 6 : 8)] | m.p[i + (local ? 7 : 9)] << 8);
        size_t noff = i + (local ? 30 : 46);
        uint16_t nlen = (uint16_t)(m.p[i + (local ? 26 : 28)] | m.p[i + (local ? 27 : 29)] << 8);
        int ascii = 1;
        for (size_t k = 0; k < nlen && noff + k < m.len; k++)
            if (m.p[noff + k] >= 0x80)
                ascii = 0;
        if (!ascii) {
            assert_true(flags & 0x0800);
            checked++;
        }
    }
    assert_int_equal(checked, 2 * 4);
    char path[] = "/tmp/cv-zip-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, m.p, m.len), (ssize_t)m.len);
    close(fd);
    const char *shared = getenv("CASEVAULT_SHARED");
    char cmd[600];
    if (shared && access(shared, R_OK) == 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/cases/tools/check_export.py %s >&2" /* stdout is TAP */,
                 shared, path);
        assert_int_equal(system(cmd), 0);
    } else {
        printf("# SKIP check_export.py: ../shared is absent\n");
    }
    snprintf(cmd, sizeof cmd, "unzip -tq %s >/dev/null", path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    free(m.p);
}

struct fdsink {
    int fd;
    uint64_t n;
};

static cv_status to_fd(void *arg, const uint8_t *data, size_t len)
{
    struct fdsink *s = arg;
    while (len > 0) {
        ssize_t w = write(s->fd, data, len);
        if (w <= 0)
            return CV_E_IO;
        data += w;
        len -= (size_t)w;
        s->n += (uint64_t)w;
    }
    return CV_OK;
}

static void test_zip64_past_4gib(void **state)
{
    (void)state;
    const char *shared = getenv("CASEVAULT_SHARED");
    if (shared == NULL || access(shared, R_OK) != 0) {
        printf("# SKIP C28 Zip64: ../shared is absent\n");
        return;
    }
    /* C28: 5 entries x 900 MiB of incompressible data, stored. */
    char path[] = "/var/tmp/cv-zip64-XXXXXX";
    struct fdsink s = {mkstemp(path), 0};
    assert_true(s.fd >= 0);
    uint8_t *buf = malloc(1 << 20);
    randombytes_buf(buf, 1 << 20);
    struct cv_archive_writer *w = NULL;
    assert_int_equal(cv_archive_writer_new(CV_ARCHIVE_ZIP, to_fd, &s, &w), CV_OK);
    for (int e = 0; e < 5; e++) {
        char name[64];
        snprintf(name, sizeof name, "originals/part-%d.bin", e);
        assert_int_equal(cv_archive_begin_file(w, name, 900ull << 20, 1795980000, 0), CV_OK);
        for (int k = 0; k < 900; k++) {
            buf[0] = (uint8_t)k;
            buf[1] = (uint8_t)e;
            assert_int_equal(cv_archive_write(w, buf, 1 << 20), CV_OK);
        }
        assert_int_equal(cv_archive_end_file(w), CV_OK);
    }
    assert_int_equal(cv_archive_add_buffer(w, "MANIFEST.sha256", "x\n", 2, 1795980000, 1), CV_OK);
    assert_int_equal(cv_archive_writer_finish(w), CV_OK);
    cv_archive_writer_free(w);
    close(s.fd);
    assert_true(s.n > (4ull << 30));
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/cases/tools/check_export.py %s >&2" /* stdout is TAP */, shared,
             path);
    int r1 = system(cmd);
    snprintf(cmd, sizeof cmd, "unzip -tq %s >/dev/null", path);
    int r2 = system(cmd);
    /* The entry after the 4 GiB mark extracts byte-identical (its last MiB). */
    char want[64];
    snprintf(want, sizeof want, "%s.want", path);
    buf[0] = (uint8_t)899;
    buf[1] = 4;
    FILE *wf = fopen(want, "wb");
    assert_non_null(wf);
    assert_int_equal(fwrite(buf, 1, 1 << 20, wf), 1 << 20);
    fclose(wf);
    snprintf(cmd, sizeof cmd, "unzip -p %s originals/part-4.bin | tail -c 1048576 | cmp -s - %s",
             path, want);
    int r3 = system(cmd);
    unlink(want);
    unlink(path);
    assert_int_equal(r3, 0);
    free(buf);
    assert_int_equal(r1, 0);
    assert_int_equal(r2, 0);
}

static void hostile(const char *what, void (*fill)(struct archive_entry *), const char *name)
{
    char path[] = "/tmp/cv-hostile-XXXXXX";
    int fd = mkstemp(path);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_fd(a, fd);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 0);
    if (fill)
        fill(e);
    archive_write_header(a, e);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    lseek(fd, 0, SEEK_SET);
    struct cv_archive_reader *r = NULL;
    assert_int_equal(cv_archive_reader_open_fd(fd, 1, 1 << 20, &r), CV_OK);
    const char *n;
    uint64_t size;
    cv_status st = cv_archive_next(r, &n, &size);
    if (st != CV_E_UNSAFE_ARCHIVE_ENTRY)
        fail_msg("%s: expected unsafe entry, got %d", what, st);
    cv_archive_reader_free(r);
    close(fd);
    unlink(path);
}

static void as_symlink(struct archive_entry *e)
{
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, "../../../../tmp");
}

static void as_hardlink(struct archive_entry *e)
{
    archive_entry_set_hardlink(e, "/etc/passwd");
}

static void as_fifo(struct archive_entry *e)
{
    archive_entry_set_filetype(e, AE_IFIFO);
}

static void as_huge(struct archive_entry *e)
{
    archive_entry_set_size(e, 2 << 20);
}

static void test_reader_refuses_unsafe_entries(void **state)
{
    (void)state;
    hostile("dotdot", NULL, "restore/../../escape.txt");
    hostile("absolute", NULL, "/tmp/escape.txt");
    hostile("backslash", NULL, "restore\\..\\..\\x.txt");
    hostile("drive", NULL, "C:/x.txt");
    hostile("dot", NULL, "./a/./b");
    hostile("symlink", as_symlink, "restore/escape");
    hostile("hardlink", as_hardlink, "restore/passwd-link");
    hostile("fifo", as_fifo, "restore/fifo");
    hostile("oversize", as_huge, "blobs/big");
    assert_true(cv_archive_name_safe("db/casevault.db"));
    assert_true(cv_archive_name_safe("documents/"));
    assert_false(cv_archive_name_safe(""));
    assert_false(cv_archive_name_safe("a//b"));
    assert_false(cv_archive_name_safe("a\nb"));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    /* As casevault's main() does; without it the writer refuses (see below). */
    setlocale(LC_ALL, "C");
    struct cv_archive_writer *w = NULL;
    struct mem m = {0};
    if (cv_archive_writer_new(CV_ARCHIVE_TAR, to_mem, &m, &w) != CV_E_ARCHIVE_FORMAT)
        return 1;
    setlocale(LC_CTYPE, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_tar_and_zip),
        cmocka_unit_test(test_zip_utf8_flag),
        cmocka_unit_test(test_reader_refuses_unsafe_entries),
        cmocka_unit_test(test_zip64_past_4gib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
