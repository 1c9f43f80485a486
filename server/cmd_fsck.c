/*
 * server/fsck: `casevault fsck --data DIR`. Decrypts every blob and checks
 * its length, authentication, size and SHA-256 against its row; lists rows
 * whose file is missing and files that have no row. One line per problem on
 * stdout ("<blob id> <problem>"), progress and totals on stderr. Exit 0 only
 * when there is no problem. Safe while a server runs: files of puts still in
 * flight are skipped, not reported.
 */
#include <stdio.h>
#include <string.h>

#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "cli.h"

struct fsck {
    struct cv_datadir *dd;
    uint64_t rows, ok, damaged, missing, orphans, in_flight, bytes;
    int64_t last;
    cv_status err;
};

static int check_row(const struct cv_blob_info *info, void *arg)
{
    struct fsck *f = arg;
    cv_status st = cv_blob_verify(f->dd->bs, info);
    f->rows++;
    if (st == CV_OK) {
        f->ok++;
        f->bytes += info->size;
    } else if (st == CV_E_NOT_FOUND) {
        f->missing++;
        printf("%s missing: the row has no blob file\n", info->id);
    } else {
        f->damaged++;
        printf("%s damaged: %s\n", info->id, cv_status_str(st));
    }
    fflush(stdout);
    int64_t now = cv_mono_ms();
    if (now - f->last >= 1000) {
        fprintf(stderr, "fsck: checked %llu blobs (%llu bytes)\n", (unsigned long long)f->rows,
                (unsigned long long)f->bytes);
        f->last = now;
    }
    return 0;
}

static int check_file(const char *id, int in_flight, void *arg)
{
    struct fsck *f = arg;
    struct cv_blob_info info;
    if (in_flight) {
        f->in_flight++;
        return 0;
    }
    cv_status st = cv_blob_lookup(f->dd->bs, id, &info);
    if (st == CV_E_NOT_FOUND) {
        f->orphans++;
        printf("%s orphan: blob file without a row\n", id);
    } else if (st != CV_OK) {
        f->err = st;
        return 1;
    }
    return 0;
}

int cv_cmd_fsck(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0;
    struct fsck f;
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("fsck", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (data == NULL)
        return cli_usage("fsck", "--data DIR is required");
    memset(&f, 0, sizeof f);
    cv_status st = cv_datadir_open(data, 1, &f.dd);
    if (st == CV_E_NOT_INITIALIZED) {
        fprintf(stderr, "casevault fsck: %s is not an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("fsck", data, st);
    f.last = cv_mono_ms();
    fprintf(stderr, "fsck: decrypting every blob of %s\n", data);
    st = cv_blob_each_row(f.dd->bs, check_row, &f);
    if (st == CV_OK) {
        fprintf(stderr, "fsck: looking for blob files without a row\n");
        st = cv_blob_list(f.dd->bs, check_file, &f);
    }
    if (st == CV_OK)
        st = f.err;
    cv_datadir_free(f.dd);
    if (st != CV_OK)
        return cli_fail("fsck", "check stopped", st);
    fprintf(stderr,
            "fsck: %llu blobs, %llu ok (%llu bytes), %llu damaged, %llu missing, %llu orphan "
            "files, %llu puts in flight skipped\n",
            (unsigned long long)f.rows, (unsigned long long)f.ok, (unsigned long long)f.bytes,
            (unsigned long long)f.damaged, (unsigned long long)f.missing,
            (unsigned long long)f.orphans, (unsigned long long)f.in_flight);
    if (f.damaged || f.missing || f.orphans) {
        fprintf(stderr, "fsck: problems found\n");
        return CV_EXIT_FAIL;
    }
    fprintf(stderr, "fsck: clean\n");
    return CV_EXIT_OK;
}
