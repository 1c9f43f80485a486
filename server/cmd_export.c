/*
 * server/cmd_export: `casevault export` (a case archive to a file or
 * stdout, audited as export.create by the operator before the first byte)
 * and `casevault verify-export` (the auditor's offline check, which needs
 * only the archive and the two public keys). verify-export prints one line
 * per check ("ok CHECK: ..." / "FAIL CHECK: ...") and exits 0 only when
 * every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casevault/age.h"
#include "casevault/datadir.h"
#include "casevault/export.h"
#include "casevault/util.h"
#include "cli.h"

#define KEY_FILE_MAX 4096

int cv_cmd_export(int argc, char **argv)
{
    const char *data = NULL, *case_id = NULL, *format = NULL, *recipient = NULL, *as_of = NULL,
               *out_path = NULL;
    const char *pos[1];
    int npos = 0;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},     {"case", 1, &case_id, NULL, NULL, NULL},
        {"format", 1, &format, NULL, NULL, NULL}, {"recipient", 1, &recipient, NULL, NULL, NULL},
        {"as-of", 1, &as_of, NULL, NULL, NULL},   {"out", 1, &out_path, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("export", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (data == NULL)
        return cli_usage("export", "--data DIR is required");
    if (case_id == NULL)
        return cli_usage("export", "--case ID is required");
    if (out_path == NULL)
        return cli_usage("export", "--out FILE|- is required");
    struct cv_export_params p = {.case_id = case_id, .format = CV_ARCHIVE_TAR};
    if (format == NULL || strcmp(format, "tar") == 0)
        p.format = CV_ARCHIVE_TAR;
    else if (strcmp(format, "zip") == 0)
        p.format = CV_ARCHIVE_ZIP;
    else
        return cli_usage("export", "--format must be tar or zip");
    uint8_t pk[32];
    if (recipient != NULL) {
        if (cv_age_recipient_parse(recipient, pk) != CV_OK)
            return cli_usage("export", "--recipient is not an age1... X25519 recipient");
        p.recipient = pk;
    }
    if (as_of != NULL && (cv_parse_u64(as_of, &p.as_of) != CV_OK || p.as_of == 0))
        return cli_usage("export", "--as-of must be a tree size of at least 1");
    struct cv_case_actor actor = {.id = "cli", .role = "operator", .client = "cli"};
    p.actor = &actor;

    struct cv_datadir *dd = NULL;
    struct cv_export *x = NULL;
    int fd = -1, to_stdout = strcmp(out_path, "-") == 0;
    if (to_stdout && cli_stdout_stream("export") < 0)
        return CV_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN); /* --out naming a FIFO whose reader leaves: an error too */
    cv_status st = cv_datadir_open(data, 1, &dd);
    if (st == CV_E_NOT_INITIALIZED) {
        fprintf(stderr, "casevault export: %s is not an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("export", data, st);
    rc = CV_EXIT_FAIL;
    st = cv_export_prepare(dd, &p, &x);
    if (st == CV_E_RANGE) {
        fprintf(stderr,
                "casevault export: --as-of is beyond the audit log or before the case existed\n");
        goto out;
    }
    if (st != CV_OK) {
        cli_fail("export", st == CV_E_NOT_FOUND ? "no such case" : "cannot prepare the export", st);
        goto out;
    }
    if (to_stdout)
        fd = STDOUT_FILENO;
    else if ((fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "casevault export: cannot create %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    st = cv_export_write_fd(x, fd);
    struct stat sb;
    if (st == CV_OK && !to_stdout && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && fsync(fd) != 0)
        st = CV_E_IO;
    if (st != CV_OK) {
        cli_fail("export", "the export stream was cut", st);
        if (!to_stdout)
            unlink(out_path);
        goto out;
    }
    fprintf(stderr, "casevault export: case %s as of tree size %llu\n", case_id,
            (unsigned long long)cv_export_as_of(x));
    rc = CV_EXIT_OK;
out:
    if (fd >= 0 && !to_stdout)
        close(fd);
    cv_export_free(x);
    cv_datadir_free(dd);
    return rc;
}

static void print_check(void *arg, const char *check, int ok, const char *msg)
{
    (void)arg;
    printf("%s %s: %s\n", ok ? "ok" : "FAIL", check, msg);
}

int cv_cmd_verify_export(int argc, char **argv)
{
    const char *pubkey = NULL, *vkey = NULL, *data = NULL;
    const char *pos[1];
    int npos = 0;
    char pub_path[4200], vkey_path[4200];
    char *pub_text = NULL, *vkey_text = NULL;
    size_t len = 0;
    const struct cli_opt opts[] = {
        {"pubkey", 1, &pubkey, NULL, NULL, NULL},
        {"vkey", 1, &vkey, NULL, NULL, NULL},
        {"data", 1, &data, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("verify-export", argc, argv, opts, pos, 1, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (npos != 1)
        return cli_usage("verify-export", "expected one ARCHIVE (or - for stdin)");
    if (pubkey == NULL && data != NULL) {
        snprintf(pub_path, sizeof pub_path, "%s/keys/casevault.pub", data);
        pubkey = pub_path;
    }
    if (vkey == NULL && data != NULL) {
        snprintf(vkey_path, sizeof vkey_path, "%s/keys/checkpoint.vkey", data);
        vkey = vkey_path;
    }
    if (pubkey == NULL)
        return cli_usage("verify-export", "--pubkey FILE (minisign public key) is required");
    if (vkey == NULL)
        return cli_usage("verify-export", "--vkey FILE (checkpoint verifier key) is required");
    cv_status st = cv_file_read(pubkey, KEY_FILE_MAX, &pub_text, &len);
    if (st != CV_OK) {
        fprintf(stderr, "casevault verify-export: cannot read --pubkey %s\n", pubkey);
        return CV_EXIT_FAIL;
    }
    if ((st = cv_file_read(vkey, KEY_FILE_MAX, &vkey_text, &len)) != CV_OK) {
        fprintf(stderr, "casevault verify-export: cannot read --vkey %s\n", vkey);
        free(pub_text);
        return CV_EXIT_FAIL;
    }
    int fd = STDIN_FILENO, seekable = 0;
    if (strcmp(pos[0], "-") != 0) {
        if ((fd = open(pos[0], O_RDONLY | O_CLOEXEC)) < 0) {
            fprintf(stderr, "casevault verify-export: cannot open %s: %s\n", pos[0],
                    strerror(errno));
            free(pub_text);
            free(vkey_text);
            return CV_EXIT_FAIL;
        }
        struct stat sb;
        seekable = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    }
    st = cv_export_verify_fd(fd, seekable, pub_text, vkey_text, print_check, NULL);
    if (fd != STDIN_FILENO)
        close(fd);
    free(pub_text);
    free(vkey_text);
    if (st != CV_OK) {
        printf("FAILED\n");
        return CV_EXIT_FAIL;
    }
    printf("OK\n");
    return CV_EXIT_OK;
}
