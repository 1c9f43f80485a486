/*
 * bench/blobstore: figures for the encrypted blob store, all in one run on
 * the same filesystem: put and get MB/s of a 100 MB blob, beside the
 * in-memory secretstream and SHA-256 rates and `dd ... conv=fsync` to the
 * same directory; and the peak RSS of a 10 MB and a 1 GB put, each in a
 * fresh process. Medians of --runs runs. MB = 10^6 bytes.
 *
 * Usage: bench_blobstore [--dir DIR] [--runs N] [--no-1g]
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"

extern char **environ;

#define MB         1000000.0
#define BLOB_BYTES (100ull * 1000 * 1000)
#define PIECE      65536
#define MAXRUNS    15

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double load_avg(void)
{
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint8_t src[1 << 20];
static double ph[4]; /* last put: stream, finish (fsync), commit (rename), row */

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int put_blob(struct cv_datadir *dd, uint64_t size, struct cv_blob_info *info)
{
    struct cv_blob_writer *w = NULL;
    double t0 = now_s(), t1, t2, t3;
    if (cv_blob_put_begin(dd->bs, &w) != CV_OK)
        return -1;
    for (uint64_t off = 0; off < size; off += PIECE) {
        size_t n = size - off < PIECE ? (size_t)(size - off) : PIECE;
        if (cv_blob_put_write(w, src + (off % sizeof src), n) != CV_OK)
            goto fail;
    }
    t1 = now_s();
    if (cv_blob_put_finish(w, info) != CV_OK)
        goto fail;
    t2 = now_s();
    if (cv_blob_put_commit(w) != CV_OK)
        goto fail;
    t3 = now_s();
    if (cv_db_begin(dd->db) != CV_OK)
        goto fail;
    if (cv_blob_record(dd->bs, info) != CV_OK) {
        cv_db_rollback(dd->db);
        goto fail;
    }
    if (cv_db_commit(dd->db) != CV_OK)
        goto fail;
    cv_blob_put_done(w);
    ph[0] = t1 - t0;
    ph[1] = t2 - t1;
    ph[2] = t3 - t2;
    ph[3] = now_s() - t3;
    return 0;
fail:
    cv_blob_put_abort(w);
    return -1;
}

static int get_blob(struct cv_datadir *dd, const char *id, uint64_t *total)
{
    static uint8_t buf[PIECE];
    struct cv_blob_reader *r = NULL;
    size_t got = 1;
    *total = 0;
    if (cv_blob_get_open(dd->bs, id, &r) != CV_OK)
        return -1;
    while (got > 0) {
        if (cv_blob_get_read(r, buf, sizeof buf, &got) != CV_OK) {
            cv_blob_get_close(r);
            return -1;
        }
        *total += got;
    }
    cv_blob_get_close(r);
    return 0;
}

/* Child mode: put `size` bytes into data dir `root`, print peak RSS in KiB. */
static int rss_child(const char *root, uint64_t size)
{
    struct cv_datadir *dd = NULL;
    struct cv_blob_info info;
    struct rusage ru;
    if (cv_datadir_open(root, 1, &dd) != CV_OK)
        return 1;
    randombytes_buf(src, sizeof src);
    if (put_blob(dd, size, &info) != 0)
        return 1;
    cv_datadir_free(dd);
    getrusage(RUSAGE_SELF, &ru);
    printf("%ld\n", ru.ru_maxrss);
    return 0;
}

static long spawn_rss(const char *self, const char *root, uint64_t size)
{
    char sz[32], out[PATH_MAX + 16];
    long kib = -1;
    pid_t pid;
    int st = 0;
    snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
    snprintf(out, sizeof out, "%s.rss", root);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char a0[PATH_MAX], a1[] = "--rss-child", a2[PATH_MAX];
    snprintf(a0, sizeof a0, "%s", self);
    snprintf(a2, sizeof a2, "%s", root);
    char *argv[] = {a0, a1, a2, sz, NULL};
    if (posix_spawn(&pid, self, &fa, NULL, argv, environ) == 0 && waitpid(pid, &st, 0) == pid &&
        WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        FILE *f = fopen(out, "r");
        if (f != NULL) {
            if (fscanf(f, "%ld", &kib) != 1)
                kib = -1;
            fclose(f);
        }
    }
    posix_spawn_file_actions_destroy(&fa);
    unlink(out);
    return kib;
}

static double dd_rate(const char *dir)
{
    char cmd[PATH_MAX * 2 + 128];
    snprintf(cmd, sizeof cmd,
             "dd if=/dev/zero of='%s/dd.bin' bs=1M count=100 conv=fsync 2>/dev/null", dir);
    double t0 = now_s();
    int r = system(cmd);
    double t = now_s() - t0;
    snprintf(cmd, sizeof cmd, "%s/dd.bin", dir);
    unlink(cmd);
    return r == 0 ? 104857600.0 / MB / t : -1;
}

static double crypto_rate(void)
{
    static uint8_t out[PIECE + crypto_secretstream_xchacha20poly1305_ABYTES];
    crypto_secretstream_xchacha20poly1305_state st;
    uint8_t key[32], hdr[24];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    crypto_secretstream_xchacha20poly1305_init_push(&st, hdr, key);
    double t0 = now_s();
    for (uint64_t off = 0; off < BLOB_BYTES; off += PIECE)
        crypto_secretstream_xchacha20poly1305_push(&st, out, NULL, src + (off % sizeof src), PIECE,
                                                   NULL, 0, 0);
    double t = now_s() - t0;
    sodium_memzero(key, sizeof key);
    return (double)BLOB_BYTES / MB / t;
}

static double sha_rate(void)
{
    uint8_t d[32];
    struct cv_sha256 *h = cv_sha256_new();
    double t0 = now_s();
    for (uint64_t off = 0; off < BLOB_BYTES; off += PIECE)
        cv_sha256_update(h, src + (off % sizeof src), PIECE);
    cv_sha256_final(h, d);
    return (double)BLOB_BYTES / MB / (now_s() - t0);
}

int main(int argc, char **argv)
{
    const char *base = "/tmp";
    int runs = 5, big = 1;
    char work[PATH_MAX], root[PATH_MAX + 16], cmd[PATH_MAX + 32], self[PATH_MAX];
    double put_cpu[MAXRUNS], put_v[MAXRUNS], get_v[MAXRUNS], dd_v[MAXRUNS], cr_v[MAXRUNS],
        sh_v[MAXRUNS];
    struct cv_datadir *dd = NULL;
    if (sodium_init() < 0)
        return 1;
    if (argc == 4 && strcmp(argv[1], "--rss-child") == 0)
        return rss_child(argv[2], strtoull(argv[3], NULL, 10));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-1g") == 0)
            big = 0;
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--runs N] [--no-1g]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAXRUNS)
        runs = 5;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';
    snprintf(work, sizeof work, "%s/cv-bench-blob-XXXXXX", base);
    if (mkdtemp(work) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(root, sizeof root, "%s/data", work);
    if (cv_datadir_init(root) != CV_OK || cv_datadir_open(root, 1, &dd) != CV_OK) {
        fprintf(stderr, "cannot create a data dir under %s\n", work);
        return 1;
    }
    randombytes_buf(src, sizeof src);
    for (int i = 0; i < runs; i++) {
        struct cv_blob_info info;
        uint64_t total = 0;
        dd_v[i] = dd_rate(work);
        cr_v[i] = crypto_rate();
        sh_v[i] = sha_rate();
        double t0 = now_s(), c0 = cpu_s();
        if (put_blob(dd, BLOB_BYTES, &info) != 0) {
            fprintf(stderr, "put failed\n");
            return 1;
        }
        put_v[i] = (double)BLOB_BYTES / MB / (now_s() - t0);
        put_cpu[i] = cpu_s() - c0;
        t0 = now_s();
        if (get_blob(dd, info.id, &total) != 0 || total != BLOB_BYTES) {
            fprintf(stderr, "get failed\n");
            return 1;
        }
        get_v[i] = (double)BLOB_BYTES / MB / (now_s() - t0);
        cv_blob_delete(dd->bs, info.id);
        if (cv_db_begin(dd->db) == CV_OK) {
            cv_blob_forget(dd->bs, info.id);
            cv_db_commit(dd->db);
        }
    }
    cv_datadir_free(dd);
    double disk = median(dd_v, runs), cr = median(cr_v, runs), sh = median(sh_v, runs);
    double put = median(put_v, runs), get = median(get_v, runs);
    double bound = disk < cr ? disk : cr;
    printf("bench/blobstore: 100 MB blob, %d KiB pieces, 64 KiB chunks, median of %d runs, "
           "dir %s\n",
           PIECE / 1024, runs, base);
    printf("  disk    dd bs=1M count=100 conv=fsync       %8.0f MB/s\n", disk);
    printf("  crypto  secretstream push, in memory          %8.0f MB/s\n", cr);
    printf("  hash    SHA-256 (OpenSSL), in memory          %8.0f MB/s\n", sh);
    printf("  put     hash+encrypt+write+fsync+rename+row   %8.0f MB/s  = %.0f%% of "
           "min(disk, crypto) (target >= 80%%)\n",
           put, 100.0 * put / bound);
    double pcpu = median(put_cpu, runs);
    printf("          CPU time of a put: %.0f ms (user+sys, all threads) = %.0f MB per CPU "
           "second; load average now %.1f\n",
           pcpu * 1e3, (double)BLOB_BYTES / MB / pcpu, load_avg());
    double serial = 1.0 / (1.0 / cr + 1.0 / sh + 1.0 / disk);
    printf("          work bound: serial 1/(1/crypto+1/hash+1/disk) = %.0f MB/s, spread over "
           "%ld cores = %.0f MB/s\n",
           serial, sysconf(_SC_NPROCESSORS_ONLN),
           serial * (double)(sysconf(_SC_NPROCESSORS_ONLN) < 2 ? 1 : 2));
    printf("          (last put: stream %.0f ms, finish+fsync %.0f ms, rename+dir fsync %.0f ms, "
           "row %.0f ms)\n",
           ph[0] * 1e3, ph[1] * 1e3, ph[2] * 1e3, ph[3] * 1e3);
    printf("  get     read+decrypt+hash check (page cache)  %8.0f MB/s\n", get);
    long r10 = spawn_rss(self, root, 10ull * 1000 * 1000);
    long r1g = big ? spawn_rss(self, root, 1000ull * 1000 * 1000) : -1;
    printf("  peak RSS of a put (fresh process): 10 MB %ld KiB", r10);
    if (big)
        printf(", 1 GB %ld KiB, difference %ld KiB (target <= 2048 KiB)\n", r1g, r1g - r10);
    else
        printf("\n");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    return system(cmd) == 0 ? 0 : 1;
}
