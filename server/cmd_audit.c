/*
 * server/cmd_audit: `casevault audit verify|checkpoint`. verify recomputes
 * the whole log from the stored entries (leaf hashes, subtree hashes,
 * every stored checkpoint's signature and root) and names the first bad
 * index; checkpoint prints the latest signed note (signing one for the
 * current tree first if the tree grew). Results go to stdout, diagnostics
 * to stderr.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/keyring.h"
#include "casevault/util.h"
#include "cli.h"

static int audit_verify(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0;
    struct cv_datadir *dd = NULL;
    struct cv_audit_report rep;
    char vkey[CV_NOTE_VKEY_MAX], path[PATH_MAX];
    char *file = NULL;
    size_t flen = 0;
    uint8_t pk[CV_SIGN_PK_BYTES], keyid[CV_MINISIGN_KEYID];
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("audit verify", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if ((rc = cli_open_datadir("audit verify", data, &dd)) != CV_EXIT_OK)
        return rc;
    int64_t t0 = cv_mono_ms();
    cv_keyring_sign_pk(dd->kr, pk, keyid);
    cv_status st = cv_audit_verify(dd->db, pk, &rep);
    int64_t ms = cv_mono_ms() - t0;
    if (st == CV_E_AUDIT_MISMATCH) {
        if (rep.has_bad_index)
            fprintf(stderr, "casevault audit verify: FAILED at index %llu: %s\n",
                    (unsigned long long)rep.bad_index, rep.problem);
        else
            fprintf(stderr, "casevault audit verify: FAILED: %s\n", rep.problem);
        rc = CV_EXIT_FAIL;
        goto out;
    }
    if (st != CV_OK) {
        rc = cli_fail("audit verify", "cannot read the audit log", st);
        goto out;
    }
    /* The published verifier key must be the one that signs. */
    if ((st = cv_audit_vkey(dd->db, dd->kr, vkey)) != CV_OK) {
        rc = cli_fail("audit verify", "cannot compute the verifier key", st);
        goto out;
    }
    if (cv_path_join(path, sizeof path, dd->keys, "checkpoint.vkey") != CV_OK ||
        cv_file_read(path, 4096, &file, &flen) != CV_OK || flen != strlen(vkey) + 1 ||
        memcmp(file, vkey, strlen(vkey)) != 0 || file[flen - 1] != '\n') {
        fprintf(stderr,
                "casevault audit verify: FAILED: keys/checkpoint.vkey is missing or is not the "
                "verifier key of this log (%s)\n",
                vkey);
        rc = CV_EXIT_FAIL;
        goto out;
    }
    char root[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(root, sizeof root, rep.root, 32, sodium_base64_VARIANT_ORIGINAL);
    printf("audit log verified: %llu entries, %llu checkpoints, root %s (%lld ms)\n",
           (unsigned long long)rep.entries, (unsigned long long)rep.checkpoints, root,
           (long long)ms);
    rc = CV_EXIT_OK;
out:
    free(file);
    cv_datadir_free(dd);
    return rc;
}

static int audit_checkpoint(int argc, char **argv)
{
    const char *data = NULL, *size_s = NULL;
    const char *pos[1];
    int npos = 0;
    uint64_t size = 0;
    struct cv_datadir *dd = NULL;
    char *note = NULL;
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {"size", 1, &size_s, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("audit checkpoint", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (size_s != NULL && (cv_parse_u64(size_s, &size) != CV_OK || size > CV_MERKLE_MAX_SIZE))
        return cli_usage("audit checkpoint", "--size must be a non-negative decimal integer");
    if ((rc = cli_open_datadir("audit checkpoint", data, &dd)) != CV_EXIT_OK)
        return rc;
    cv_status st;
    if (size_s != NULL) {
        st = cv_audit_checkpoint_at(dd->db, dd->kr, size, &note);
        if (st == CV_E_RANGE) {
            uint64_t cur = 0;
            cv_audit_size(dd->db, &cur);
            fprintf(stderr,
                    "casevault audit checkpoint: --size %llu is beyond the tree, which has %llu "
                    "entries\n",
                    (unsigned long long)size, (unsigned long long)cur);
            rc = CV_EXIT_FAIL;
            goto out;
        }
    } else {
        st = cv_audit_checkpoint_tick(dd->db, dd->kr, 0, NULL);
        if (st == CV_OK)
            st = cv_audit_checkpoint_latest(dd->db, &note, NULL);
    }
    if (st != CV_OK) {
        rc = cli_fail("audit checkpoint", "cannot sign or read the checkpoint", st);
        goto out;
    }
    fputs(note, stdout);
    fflush(stdout);
    rc = CV_EXIT_OK;
out:
    free(note);
    cv_datadir_free(dd);
    return rc;
}

int cv_cmd_audit(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("audit", "expected a subcommand: verify or checkpoint");
    if (strcmp(argv[1], "verify") == 0)
        return audit_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "checkpoint") == 0)
        return audit_checkpoint(argc - 1, argv + 1);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown subcommand '%.60s' (expected verify or checkpoint)",
             argv[1]);
    return cli_usage("audit", msg);
}
