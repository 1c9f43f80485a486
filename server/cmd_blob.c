/*
 * server/cmd_blob: `casevault blob put|get`, maintenance commands that
 * drive the encrypted blob store directly (the HTTP upload path will use
 * the same storage calls). put prints the new blob id alone on stdout; get
 * writes the plaintext to stdout or --out FILE. Both are audited.
 *
 * Test hook: with CASEVAULT_TEST_CRASH_AT=begin|write|finish|commit|record
 * in the environment, `blob put` kills itself with SIGKILL right after that
 * step, so the crash-safety tests can stop a put at every point.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "cli.h"

static void crash_point(const char *step)
{
#ifndef CV_TEST_HOOKS
    /* Release builds never kill themselves on an environment variable. */
    (void)step;
    return;
#endif
    const char *at = getenv("CASEVAULT_TEST_CRASH_AT");
    if (at != NULL && strcmp(at, step) == 0) {
        fprintf(stderr, "casevault blob put: crashing after %s (CASEVAULT_TEST_CRASH_AT)\n", step);
        fflush(stderr);
        raise(SIGKILL);
    }
}

static int blob_put(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0, fd = -1;
    struct cv_datadir *dd = NULL;
    struct cv_blob_writer *w = NULL;
    struct cv_blob_info info;
    char hex[2 * CV_SHA256_LEN + 1];
    uint8_t *buf = NULL;
    cv_status st = CV_OK;
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("blob put", argc, argv, opts, pos, 1, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (npos != 1)
        return cli_usage("blob put", "expected FILE (or - for standard input)");
    if ((rc = cli_open_datadir("blob put", data, &dd)) != CV_EXIT_OK)
        return rc;
    rc = CV_EXIT_FAIL;
    fd = strcmp(pos[0], "-") == 0 ? STDIN_FILENO : open(pos[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "casevault blob put: cannot open %s: %s\n", pos[0], strerror(errno));
        goto out;
    }
    if ((buf = malloc(CV_BLOB_CHUNK)) == NULL) {
        st = CV_E_NOMEM;
        goto fail;
    }
    if ((st = cv_blob_put_begin(dd->bs, &w)) != CV_OK)
        goto fail;
    crash_point("begin");
    for (;;) {
        ssize_t n = read(fd, buf, CV_BLOB_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = CV_E_IO;
            goto fail;
        }
        if (n == 0)
            break;
        if ((st = cv_blob_put_write(w, buf, (size_t)n)) != CV_OK)
            goto fail;
        crash_point("write");
    }
    if ((st = cv_blob_put_finish(w, &info)) != CV_OK)
        goto fail;
    crash_point("finish");
    if ((st = cv_blob_put_commit(w)) != CV_OK)
        goto fail;
    crash_point("commit");
    cv_hex_encode(info.sha256, CV_SHA256_LEN, hex);
    if ((st = cv_db_begin(dd->db)) != CV_OK)
        goto fail;
    json_t *details = json_pack("{s:I,s:s}", "size", (json_int_t)info.size, "sha256", hex);
    struct cv_audit_event ev = {.action = "blob.put",
                                .actor_id = "cli",
                                .actor_role = "operator",
                                .object_id = info.id,
                                .client = "cli",
                                .details = details};
    st = cv_blob_record(dd->bs, &info);
    if (st == CV_OK)
        st = cv_audit_append(dd->db, &ev, NULL);
    json_decref(details);
    if (st == CV_OK)
        crash_point("record");
    if (st == CV_OK)
        st = cv_db_commit(dd->db);
    else
        cv_db_rollback(dd->db);
    if (st != CV_OK)
        goto fail;
    cv_blob_put_done(w);
    w = NULL;
    printf("%s\n", info.id);
    fflush(stdout);
    fprintf(stderr, "stored blob %s: %llu bytes, sha256 %s\n", info.id,
            (unsigned long long)info.size, hex);
    rc = CV_EXIT_OK;
    goto out;
fail:
    rc = cli_fail("blob put", "cannot store the blob", st);
out:
    cv_blob_put_abort(w);
    free(buf);
    if (fd > STDIN_FILENO)
        close(fd);
    cv_datadir_free(dd);
    return rc;
}

static int blob_get(int argc, char **argv)
{
    const char *data = NULL, *outp = NULL;
    const char *pos[1];
    int npos = 0, fd = STDOUT_FILENO;
    struct cv_datadir *dd = NULL;
    struct cv_blob_reader *r = NULL;
    uint8_t *buf = NULL;
    size_t got = 1;
    cv_status st = CV_OK;
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {"out", 1, &outp, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("blob get", argc, argv, opts, pos, 1, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (npos != 1)
        return cli_usage("blob get", "expected a blob ID");
    if (!cv_ulid_valid(pos[0]))
        return cli_usage("blob get", "the blob ID must be a 26-character ULID");
    if ((rc = cli_open_datadir("blob get", data, &dd)) != CV_EXIT_OK)
        return rc;
    rc = CV_EXIT_FAIL;
    if ((st = cv_blob_get_open(dd->bs, pos[0], &r)) != CV_OK)
        goto fail;
    /* A plaintext read is audited before any byte leaves. */
    if ((st = cv_db_begin(dd->db)) != CV_OK)
        goto fail;
    if ((st = cli_audit_commit(dd, CV_OK, "blob.get", NULL, pos[0], NULL)) != CV_OK)
        goto fail;
    if (outp != NULL &&
        (fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
        fprintf(stderr, "casevault blob get: cannot create %s: %s\n", outp, strerror(errno));
        goto out;
    }
    if ((buf = malloc(CV_BLOB_CHUNK)) == NULL) {
        st = CV_E_NOMEM;
        goto fail;
    }
    while (got > 0) {
        if ((st = cv_blob_get_read(r, buf, CV_BLOB_CHUNK, &got)) != CV_OK)
            goto fail;
        if (got > 0 && cv_write_all(fd, buf, got) != CV_OK) {
            st = CV_E_IO;
            goto fail;
        }
    }
    rc = CV_EXIT_OK;
    goto out;
fail:
    if (st == CV_E_NOT_FOUND)
        fprintf(stderr, "casevault blob get: no blob %s\n", pos[0]);
    else
        rc = cli_fail("blob get", pos[0], st);
    rc = CV_EXIT_FAIL;
out:
    if (buf != NULL) {
        sodium_memzero(buf, CV_BLOB_CHUNK);
        free(buf);
    }
    if (fd > STDOUT_FILENO) {
        close(fd);
        if (rc != CV_EXIT_OK)
            unlink(outp); /* never leave a partial plaintext file */
    }
    cv_blob_get_close(r);
    cv_datadir_free(dd);
    return rc;
}

int cv_cmd_blob(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("blob", "expected a subcommand: put or get");
    if (strcmp(argv[1], "put") == 0)
        return blob_put(argc - 1, argv + 1);
    if (strcmp(argv[1], "get") == 0)
        return blob_get(argc - 1, argv + 1);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown subcommand '%.60s' (expected put or get)", argv[1]);
    return cli_usage("blob", msg);
}
