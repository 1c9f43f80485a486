/*
 * server/cmd_backup: `casevault backup`, `casevault restore`, and the test
 * hook `casevault testhook-blobs` (bounded blob puts with rows, standing
 * in for uploads until they exist over HTTP; used by the backup tests and
 * bench/backup).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "casevault/audit.h"
#include "casevault/backup.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "cli.h"

struct progress {
    const char *what;
    int64_t last_ms;
    int64_t start_ms;
};

static void on_progress(uint64_t done, uint64_t total, void *arg)
{
    struct progress *p = arg;
    int64_t now = cv_mono_ms();
    if (done < total && now - p->last_ms < 1000)
        return;
    p->last_ms = now;
    double s = (double)(now - p->start_ms) / 1000.0;
    fprintf(stderr, "%s: %.1f / %.1f MB (%.0f%%), %.1f MB/s\n", p->what, (double)done / 1e6,
            (double)total / 1e6, total ? 100.0 * (double)done / (double)total : 100.0,
            s > 0 ? (double)done / 1e6 / s : 0.0);
}

int cv_cmd_backup(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *since = NULL;
    const char *pos[1];
    int npos = 0, fd = -1, rc;
    struct cv_datadir *dd = NULL;
    struct cv_backup_job *job = NULL;
    struct cv_backup_info info;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"out", 1, &out, NULL, NULL, NULL},
        {"since", 1, &since, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("backup", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    if (data == NULL)
        return cli_usage("backup", "--data DIR is required");
    if (out == NULL)
        return cli_usage("backup", "--out FILE (or - for stdout) is required");
    if (since && !cv_ulid_valid(since))
        return cli_usage("backup", "--since must be a backup id (26-character ULID)");
    int to_stdout = strcmp(out, "-") == 0;
    if (to_stdout && cli_stdout_stream("backup") < 0)
        return CV_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN); /* --out naming a FIFO whose reader leaves: an error too */
    cv_status st = cv_datadir_open(data, 1, &dd);
    if (st == CV_E_NOT_INITIALIZED) {
        fprintf(stderr, "casevault backup: %s is not an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("backup", data, st);
    if (to_stdout) {
        fd = 1;
    } else if ((fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "casevault backup: cannot create %s: %s\n", out,
                errno == EEXIST ? "it exists" : "I/O error");
        rc = CV_EXIT_FAIL;
        goto out;
    }
    struct cv_backup_actor who = {"cli", "operator", NULL, "cli"};
    if ((st = cv_backup_prepare(dd, since, &who, &job, &info)) != CV_OK) {
        if (st == CV_E_NOT_FOUND)
            fprintf(stderr, "casevault backup: no backup with id %s\n", since);
        else
            cli_fail("backup", "cannot take the snapshot", st);
        rc = CV_EXIT_FAIL;
        goto out;
    }
    fprintf(stderr, "backup %s%s%s: snapshot at audit size %llu, %llu blobs, %.1f MB\n", info.id,
            since ? " since " : " (full)", since ? since : "", (unsigned long long)info.audit_size,
            (unsigned long long)info.blobs, (double)(info.blob_bytes + info.db_bytes) / 1e6);
    struct progress pr = {"backup", cv_mono_ms(), cv_mono_ms()};
    st = cv_backup_stream(job, fd, on_progress, &pr);
    if (st == CV_OK && !to_stdout && fsync(fd) != 0)
        st = CV_E_IO;
    if (st != CV_OK) {
        rc = cli_fail("backup", "stream failed", st);
        goto out;
    }
    fprintf(stderr, "backup %s complete\n", info.id);
    printf("%s\n", info.id);
    fflush(stdout);
    rc = CV_EXIT_OK;
out:
    if (fd > 1) {
        close(fd);
        if (rc != CV_EXIT_OK)
            unlink(out);
    }
    cv_backup_job_free(job);
    cv_datadir_free(dd);
    return rc;
}

struct from_list {
    const char *v[256];
    size_t n;
    int over;
};

static void add_from(const char *value, void *arg)
{
    struct from_list *l = arg;
    if (l->n < sizeof l->v / sizeof l->v[0])
        l->v[l->n++] = value;
    else
        l->over = 1;
}

int cv_cmd_restore(int argc, char **argv)
{
    const char *data = NULL, *keys = NULL, *from_last = NULL;
    const char *pos[1];
    int npos = 0, rc;
    struct from_list fl = {{0}, 0, 0};
    char detail[300];
    struct cv_restore_result res;
    const struct cli_opt opts[] = {
        {"from", 1, &from_last, NULL, add_from, &fl},
        {"keys", 1, &keys, NULL, NULL, NULL},
        {"data", 1, &data, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("restore", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    if (fl.n == 0)
        return cli_usage("restore", "--from FILE is required (a full backup, then incrementals)");
    if (fl.over)
        return cli_usage("restore", "--from given too many times (256 at most)");
    if (keys == NULL)
        return cli_usage("restore", "--keys DIR is required (the key files, kept apart)");
    if (data == NULL)
        return cli_usage("restore", "--data NEWDIR is required");
    fprintf(stderr, "restore: reading %zu backup(s) into %s\n", fl.n, data);
    cv_status st = cv_restore(fl.v, fl.n, keys, data, 0, &res, detail, sizeof detail);
    if (st != CV_OK) {
        fprintf(stderr, "casevault restore: refused: %s%s%s; nothing was restored\n",
                cv_status_str(st), detail[0] ? ": " : "", detail);
        return CV_EXIT_FAIL;
    }
    fprintf(stderr,
            "restore: %u backup(s) applied up to %s: %llu blobs, audit tree size %llu, schema %d\n",
            res.archives, res.last_id, (unsigned long long)res.blobs,
            (unsigned long long)res.audit_size, res.schema_version);
    printf("%s %llu\n", res.last_id, (unsigned long long)res.audit_size);
    return CV_EXIT_OK;
}

/*
 * Test hook: put `count` blobs of `size` bytes whose plaintext repeats
 * `marker`, each with its `blobs` row and a "testhook.blob_put" audit entry
 * in one transaction (what an upload will do), pausing interval_ms between
 * puts. Prints one line per blob: "<id> <sha256-hex>". Bounded: count
 * <= 100000, size <= 64 MiB.
 */
int cv_cmd_testhook_blobs(int argc, char **argv)
{
    const char *data = NULL, *count_s = "1", *size_s = "4096", *marker = "casevault-test",
               *interval_s = "0", *batch_s = "1";
    const char *pos[1];
    int npos = 0, rc, quiet = 0;
    struct cv_datadir *dd = NULL;
    uint8_t *buf = NULL;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"count", 1, &count_s, NULL, NULL, NULL},
        {"size", 1, &size_s, NULL, NULL, NULL},
        {"marker", 1, &marker, NULL, NULL, NULL},
        {"interval-ms", 1, &interval_s, NULL, NULL, NULL},
        {"batch", 1, &batch_s, NULL, NULL, NULL},
        {"quiet", 0, NULL, &quiet, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("testhook-blobs", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    long count = strtol(count_s, NULL, 10), size = strtol(size_s, NULL, 10),
         interval = strtol(interval_s, NULL, 10), batch = strtol(batch_s, NULL, 10);
    if (data == NULL || count < 1 || count > 100000 || size < 0 || size > (64L << 20) ||
        interval < 0 || interval > 10000 || batch < 1 || batch > 1000 || marker[0] == '\0')
        return cli_usage("testhook-blobs", "needs --data DIR, --count 1..100000, --size "
                                           "0..67108864, --interval-ms 0..10000, --batch 1..1000");
    cv_status st = cv_datadir_open(data, 1, &dd);
    if (st != CV_OK)
        return cli_fail("testhook-blobs", data, st);
    rc = CV_EXIT_FAIL;
    if ((buf = malloc((size_t)size + 1)) == NULL)
        goto out;
    size_t ml = strlen(marker);
    for (long i = 0; i < size; i++)
        buf[i] = (uint8_t)marker[(size_t)i % ml];
    struct cv_blob_writer **ws = calloc((size_t)batch, sizeof *ws);
    struct cv_blob_info *infos = calloc((size_t)batch, sizeof *infos);
    if (ws == NULL || infos == NULL) {
        free(ws);
        free(infos);
        goto out;
    }
    for (long done = 0; done < count;) {
        long nb = count - done < batch ? count - done : batch, k = 0;
        for (; k < nb; k++) {
            /* vary the first bytes so that every blob differs */
            char head[32];
            int hl = snprintf(head, sizeof head, "%08ld ", done + k);
            if ((st = cv_blob_put_begin(dd->bs, &ws[k])) != CV_OK ||
                (st = cv_blob_put_write(ws[k], head, (size_t)hl)) != CV_OK ||
                (st = cv_blob_put_write(ws[k], buf, (size_t)size)) != CV_OK ||
                (st = cv_blob_put_finish(ws[k], &infos[k])) != CV_OK ||
                (st = cv_blob_put_commit(ws[k])) != CV_OK) {
                k++;
                break;
            }
        }
        if (st == CV_OK && (st = cv_db_begin(dd->db)) == CV_OK) {
            for (long j = 0; j < nb && st == CV_OK; j++) {
                char hex[2 * CV_SHA256_LEN + 1];
                cv_hex_encode(infos[j].sha256, CV_SHA256_LEN, hex);
                json_t *det =
                    json_pack("{s:s,s:I}", "sha256", hex, "size", (json_int_t)infos[j].size);
                struct cv_audit_event ev = {.action = "testhook.blob_put",
                                            .actor_id = "cli",
                                            .actor_role = "operator",
                                            .object_id = infos[j].id,
                                            .client = "cli",
                                            .details = det};
                st = cv_blob_record(dd->bs, &infos[j]);
                if (st == CV_OK)
                    st = cv_audit_append(dd->db, &ev, NULL);
                json_decref(det);
            }
            if (st == CV_OK)
                st = cv_db_commit(dd->db);
            else
                cv_db_rollback(dd->db);
        }
        for (long j = 0; j < k; j++) {
            if (st == CV_OK) {
                cv_blob_put_done(ws[j]);
                if (!quiet) {
                    char hex[2 * CV_SHA256_LEN + 1];
                    cv_hex_encode(infos[j].sha256, CV_SHA256_LEN, hex);
                    printf("%s %s\n", infos[j].id, hex);
                }
            } else {
                cv_blob_put_abort(ws[j]);
            }
            ws[j] = NULL;
        }
        fflush(stdout);
        if (st != CV_OK)
            break;
        done += nb;
        if (interval)
            usleep((useconds_t)interval * 1000);
    }
    free(ws);
    free(infos);
    rc = st == CV_OK ? CV_EXIT_OK : cli_fail("testhook-blobs", "put failed", st);
out:
    free(buf);
    cv_datadir_free(dd);
    return rc;
}

struct verify_ctx {
    struct cv_blobstore *bs;
    cv_status st;
    char bad[CV_ULID_LEN + 1];
    uint64_t n;
};

static int verify_one(const struct cv_blob_info *info, void *arg)
{
    struct verify_ctx *v = arg;
    char hex[2 * CV_SHA256_LEN + 1];
    cv_status st = cv_blob_verify(v->bs, info);
    if (st != CV_OK) {
        v->st = st;
        memcpy(v->bad, info->id, sizeof v->bad);
        return 1;
    }
    cv_hex_encode(info->sha256, CV_SHA256_LEN, hex);
    printf("%s %s\n", info->id, hex);
    v->n++;
    return 0;
}

/*
 * Test hook standing in for `casevault fsck` (being written elsewhere):
 * decrypt every blob row's file to the end and check size and SHA-256;
 * prints "<id> <sha256-hex>" per blob, exit 1 naming the first bad blob.
 */
int cv_cmd_testhook_verify_blobs(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0, rc;
    struct cv_datadir *dd = NULL;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("testhook-verify-blobs", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    if (data == NULL)
        return cli_usage("testhook-verify-blobs", "--data DIR is required");
    cv_status st = cv_datadir_open(data, 1, &dd);
    if (st != CV_OK)
        return cli_fail("testhook-verify-blobs", data, st);
    struct verify_ctx v = {dd->bs, CV_OK, "", 0};
    st = cv_blob_each_row(dd->bs, verify_one, &v);
    fflush(stdout);
    if (st == CV_OK && v.st != CV_OK) {
        fprintf(stderr, "casevault testhook-verify-blobs: blob %s: %s\n", v.bad,
                cv_status_str(v.st));
        rc = CV_EXIT_FAIL;
    } else if (st != CV_OK) {
        rc = cli_fail("testhook-verify-blobs", "cannot list blobs", st);
    } else {
        fprintf(stderr, "verified %llu blobs\n", (unsigned long long)v.n);
        rc = CV_EXIT_OK;
    }
    cv_datadir_free(dd);
    return rc;
}
