/*
 * server/cmd_keys: `casevault keys rotate --data DIR [--batch N]` and
 * `casevault keys rotate --data DIR --retire KEYID`. Rotation runs online:
 * a server on the same data dir keeps serving and follows the new key.
 * stdout: the new key id (rotate) or the retired one; progress and counts
 * on stderr. `keys export|import` (the key backup) are in cmd_keys_backup.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/keyring.h"
#include "cli.h"

static void progress(uint64_t done, uint64_t total, void *arg)
{
    int64_t *last = arg;
    int64_t now = cv_mono_ms();
    if (done == total || now - *last >= 1000) {
        fprintf(stderr, "keys rotate: re-wrapped %llu/%llu data keys\n", (unsigned long long)done,
                (unsigned long long)total);
        *last = now;
    }
}

static int keys_rotate(int argc, char **argv)
{
    const char *data = NULL, *retire = NULL, *batch_s = NULL;
    const char *pos[1];
    int npos = 0;
    unsigned long batch = 200;
    struct cv_datadir *dd = NULL;
    struct cv_rotate_stats s;
    struct cv_audit_event who = {.actor_id = "cli", .actor_role = "operator", .client = "cli"};
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"retire", 1, &retire, NULL, NULL, NULL},
        {"batch", 1, &batch_s, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("keys rotate", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (batch_s != NULL) {
        char *end = NULL;
        batch = strtoul(batch_s, &end, 10);
        if (*batch_s == '\0' || *end != '\0' || batch == 0 || batch > 10000)
            return cli_usage("keys rotate", "--batch must be a number from 1 to 10000");
    }
    if (retire != NULL &&
        (strlen(retire) != CV_KEY_ID_LEN || strspn(retire, "0123456789abcdef") != CV_KEY_ID_LEN))
        return cli_usage("keys rotate", "--retire must be a key id (16 lowercase hex characters)");
    if (data == NULL)
        return cli_usage("keys rotate", "--data DIR is required");
    cv_status st = cv_datadir_open(data, 1, &dd);
    if (st == CV_E_NOT_INITIALIZED) {
        fprintf(stderr, "casevault keys rotate: %s is not an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("keys rotate", data, st);
    rc = CV_EXIT_FAIL;
    if (retire != NULL) {
        uint64_t refs = 0;
        st = cv_keyring_retire(dd->kr, retire, &who, &refs);
        if (st == CV_E_ARG)
            fprintf(stderr, "casevault keys rotate: %s is the active key; rotate first\n", retire);
        else if (st == CV_E_NOT_FOUND)
            fprintf(stderr, "casevault keys rotate: no key file for %s\n", retire);
        else if (st == CV_E_NOT_EMPTY)
            fprintf(stderr,
                    "casevault keys rotate: key %s is still referenced by %llu rows; run "
                    "`casevault keys rotate` first\n",
                    retire, (unsigned long long)refs);
        else if (st != CV_OK)
            cli_fail("keys rotate", "cannot retire the key", st);
        else {
            printf("%s\n", retire);
            fprintf(stderr, "keys rotate: retired key %s (0 rows referenced it)\n", retire);
            rc = CV_EXIT_OK;
        }
        goto out;
    }
    int64_t last = cv_mono_ms();
    st = cv_keyring_rotate(dd->kr, (unsigned)batch, &who, progress, &last, &s);
    if (st != CV_OK) {
        cli_fail("keys rotate", "rotation stopped (rerun it to finish)", st);
        goto out;
    }
    printf("%s\n", s.new_kek);
    fprintf(stderr,
            "keys rotate: active key %s (was %s); re-wrapped %llu root keys and %llu data keys "
            "in %llu transactions\n",
            s.new_kek, s.old_kek, (unsigned long long)s.root_keys, (unsigned long long)s.blobs,
            (unsigned long long)s.batches);
    rc = CV_EXIT_OK;
out:
    cv_datadir_free(dd);
    return rc;
}

int cv_cmd_keys(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("keys", "expected a subcommand: rotate, export or import");
    if (strcmp(argv[1], "rotate") == 0)
        return keys_rotate(argc - 1, argv + 1);
    /* the separate key backup: server/cmd_keys_backup.c */
    if (strcmp(argv[1], "export") == 0)
        return cv_cmd_keys_export(argc - 1, argv + 1);
    if (strcmp(argv[1], "import") == 0)
        return cv_cmd_keys_import(argc - 1, argv + 1);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown subcommand '%.60s' (expected rotate, export or import)",
             argv[1]);
    return cli_usage("keys", msg);
}
