/*
 * bench/audit: figures for the audit log (storage/audit). Not a test.
 *
 *   bench_audit DIR [LEAVES]
 *
 * DIR must not exist; it becomes a fresh data dir. Prints:
 *   - appends/s with one transaction (and one fsync'd commit) per append,
 *   - the cost of one cv_audit_append inside an open transaction (batches
 *     of 1000 per commit), median of the batches,
 *   - grows the log to LEAVES entries (default 10^6) in such batches,
 *   - inclusion and consistency proof latency at that size (median, p99
 *     over 2000 random proofs each, generated from storage; each proof is
 *     verified so the figure includes nothing fake),
 *   - cv_audit_verify time over the whole log, median of 3 runs,
 *   - peak RSS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keyring.h"
#include "casevault/util.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p * (double)(n - 1));
    return v[i];
}

static void die(const char *what, cv_status st)
{
    fprintf(stderr, "bench_audit: %s: %s\n", what, cv_status_str(st));
    exit(1);
}

/* An entry shaped like a real one: a document upload with hashes. */
static cv_status append_one(struct cv_db *db, uint64_t i)
{
    char obj[32], h[65];
    uint8_t d[32];
    snprintf(obj, sizeof obj, "01J0000000000000000%07llu", (unsigned long long)(i % 10000000));
    cv_sha256(obj, strlen(obj), d);
    cv_hex_encode(d, 32, h);
    json_t *details = json_pack("{s:s, s:s, s:i}", "sha256", h, "kind", "id_in_hand", "bytes",
                                (int)(i % 4000000));
    struct cv_audit_event ev = {.action = "document.upload",
                                .actor_id = "01J00000000000000000000TOK",
                                .actor_role = "applicant",
                                .case_id = "01J00000000000000000000CAS",
                                .object_id = obj,
                                .request_id = "01J00000000000000000000REQ",
                                .client = "192.0.2.10",
                                .details = details};
    cv_status st = cv_audit_append(db, &ev, NULL);
    json_decref(details);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_audit DIR [LEAVES]\n");
        return 2;
    }
    uint64_t target = argc == 3 ? strtoull(argv[2], NULL, 10) : 1000000;
    if (sodium_init() < 0)
        return 1;
    struct cv_datadir *dd = NULL;
    cv_status st = cv_datadir_init(argv[1]);
    if (st != CV_OK)
        die("init", st);
    if ((st = cv_datadir_open(argv[1], 4, &dd)) != CV_OK)
        die("open", st);
    struct cv_db *db = dd->db;

    /* 1. One transaction (one durable commit) per append. */
    const int single = 500;
    double t0 = now_us();
    for (int i = 0; i < single; i++) {
        if ((st = cv_db_begin(db)) != CV_OK || (st = append_one(db, (uint64_t)i)) != CV_OK ||
            (st = cv_db_commit(db)) != CV_OK)
            die("append", st);
    }
    double t1 = now_us();
    printf("append, one transaction each:   %8.0f appends/s  (%d appends, %.1f us each, "
           "synchronous=FULL)\n",
           single / ((t1 - t0) / 1e6), single, (t1 - t0) / single);

    /* 2. Batched: 1000 appends per transaction, up to the target size. */
    uint64_t size = 0;
    cv_audit_size(db, &size);
    const int batch = 1000;
    size_t nb = (size_t)((target > size ? target - size : 0) + batch - 1) / batch;
    double *per = calloc(nb + 1, sizeof *per), *commit = calloc(nb + 1, sizeof *commit);
    size_t bi = 0;
    double g0 = now_us();
    while (size < target) {
        int n = (int)(target - size < (uint64_t)batch ? target - size : (uint64_t)batch);
        if ((st = cv_db_begin(db)) != CV_OK)
            die("begin", st);
        double a = now_us();
        for (int i = 0; i < n; i++)
            if ((st = append_one(db, size + (uint64_t)i)) != CV_OK)
                die("append", st);
        double c = now_us();
        if ((st = cv_db_commit(db)) != CV_OK)
            die("commit", st);
        double e = now_us();
        per[bi] = (c - a) / n;
        commit[bi] = e - c;
        bi++;
        size += (uint64_t)n;
    }
    double g1 = now_us();
    if (bi > 0) {
        double total_s = (g1 - g0) / 1e6;
        printf("append, batched %d per commit:  %8.0f appends/s  (%llu appends in %.1f s)\n", batch,
               (double)(target - single - 1) / total_s, (unsigned long long)(target - single - 1),
               total_s);
        double med = pct(per, bi, 0.5), p99 = pct(per, bi, 0.99);
        printf("append inside an open transaction: median %.1f us, p99 %.1f us per append "
               "(target < 50 us)\n",
               med, p99);
        printf("commit of a %d-append batch: median %.2f ms\n", batch, pct(commit, bi, 0.5) / 1e3);
    }
    free(per);
    free(commit);
    cv_audit_size(db, &size);
    printf("tree size: %llu leaves\n", (unsigned long long)size);

    /* 3. Proof latency at this size. */
    const int probes = 2000;
    double *lat = calloc(probes, sizeof *lat);
    struct cv_audit_proof *p = malloc(sizeof *p);
    for (int i = 0; i < probes; i++) {
        uint64_t idx = (uint64_t)randombytes_uniform(UINT32_MAX) % size;
        double a = now_us();
        if ((st = cv_audit_inclusion_proof(db, idx, size, p)) != CV_OK)
            die("inclusion", st);
        lat[i] = now_us() - a;
        if (cv_merkle_verify_inclusion(p->leaf, idx, size, &p->hashes[0][0], p->n, p->root) !=
            CV_OK)
            die("inclusion verify", CV_E_PROOF_INVALID);
    }
    printf("inclusion proof at %llu leaves: median %.3f ms, p99 %.3f ms (%zu hashes; target < 5 "
           "ms)\n",
           (unsigned long long)size, pct(lat, probes, 0.5) / 1e3, pct(lat, probes, 0.99) / 1e3,
           p->n);
    for (int i = 0; i < probes; i++) {
        uint64_t old = 1 + (uint64_t)randombytes_uniform(UINT32_MAX) % size;
        double a = now_us();
        if ((st = cv_audit_consistency_proof(db, old, size, p)) != CV_OK)
            die("consistency", st);
        lat[i] = now_us() - a;
        if (cv_merkle_verify_consistency(old, size, p->old_root, p->root, &p->hashes[0][0], p->n) !=
            CV_OK)
            die("consistency verify", CV_E_PROOF_INVALID);
    }
    printf("consistency proof to %llu leaves: median %.3f ms, p99 %.3f ms\n",
           (unsigned long long)size, pct(lat, probes, 0.5) / 1e3, pct(lat, probes, 0.99) / 1e3);
    free(lat);
    free(p);

    /* 4. A checkpoint, then full verification. */
    int did = 0;
    double s0 = now_us();
    if ((st = cv_audit_checkpoint_tick(db, dd->kr, 0, &did)) != CV_OK)
        die("checkpoint", st);
    printf("sign a checkpoint at %llu leaves: %.3f ms\n", (unsigned long long)size,
           (now_us() - s0) / 1e3);
    uint8_t pk[32], kid[8];
    cv_keyring_sign_pk(dd->kr, pk, kid);
    double vt[3];
    struct cv_audit_report rep;
    for (int r = 0; r < 3; r++) {
        double a = now_us();
        if ((st = cv_audit_verify(db, pk, &rep)) != CV_OK) {
            fprintf(stderr, "verify: %s\n", rep.problem);
            die("verify", st);
        }
        vt[r] = now_us() - a;
    }
    printf("audit verify of %llu leaves: median %.2f s (%.0f leaves/s)\n",
           (unsigned long long)rep.entries, pct(vt, 3, 0.5) / 1e6,
           (double)rep.entries / (pct(vt, 3, 0.5) / 1e6));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    cv_datadir_free(dd);
    return 0;
}
