/*
 * casevault: one binary, many subcommands. main() hardens the process
 * (umask 077, no core dumps, not dumpable, libsodium initialised before any
 * thread) and dispatches.
 */
#include <locale.h>
#include <malloc.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "casevault/config.h"
#include "cli.h"
#include "cv_build.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
} commands[] = {
    {"init", cv_cmd_init, "init --data DIR\n      create a data dir with fresh keys"},
    {"serve", cv_cmd_serve,
     "serve --data DIR [--listen ADDR:PORT] [--config FILE] [--tls-cert PEM --tls-key PEM]\n"
     "        [--set SECTION.KEY=VALUE]...\n"
     "      serve HTTP(S); an empty or missing DIR is initialized first"},
    {"token", cv_cmd_token,
     "token create --data DIR --role admin|reviewer|auditor|backup --name NAME\n"
     "      print a new operator token on stdout (shown once)\n"
     "  casevault token list --data DIR [--all]\n"
     "  casevault token revoke --data DIR --id TOKEN_ID"},
    {"accounts", cv_cmd_accounts,
     "accounts import --data DIR FILE.jsonl|-\n"
     "      upsert real-name records, one JSON object per line (idempotent)"},
#ifdef CV_TEST_HOOKS
    /* TEST-ONLY (debug builds): insert a document row without an upload. */
    {"_test-document-add", cv_cmd_test_document_add,
     "_test-document-add --data DIR --case ID --kind KIND [--file-name NAME]\n"
     "      [--original FILE --normalized FILE]\n"
     "      TEST-ONLY (debug builds): add a document row as an upload would"},
#endif
    {"audit", cv_cmd_audit,
     "audit verify --data DIR\n"
     "      recompute every leaf and node of the audit log and check every signed checkpoint;\n"
     "      exit 1 naming the first bad index\n"
     "  casevault audit checkpoint --data DIR [--size N]\n"
     "      print the latest signed checkpoint (signing one for the current tree if it grew),\n"
     "      or the one for tree size N"},
    {"keys", cv_cmd_keys,
     "keys rotate --data DIR [--batch N]\n"
     "      new active master key; re-wrap every data key online (new key id on stdout)\n"
     "  casevault keys rotate --data DIR --retire KEYID\n"
     "      delete an old master key file once no row references it\n"
     "  casevault keys export --data DIR --out FILE [--passphrase-file F]\n"
     "      write the key files encrypted under a passphrase (Argon2id), for the key backup\n"
     "  casevault keys import --in FILE --keys DIR [--passphrase-file F]\n"
     "      write the key files of an export into DIR (never overwrites)"},
    {"fsck", cv_cmd_fsck,
     "fsck --data DIR\n"
     "      decrypt every blob, check size and SHA-256, list missing and orphan files"},
    {"blob", cv_cmd_blob,
     "blob put --data DIR FILE|-\n"
     "      store a file as an encrypted blob (id on stdout)\n"
     "  casevault blob get --data DIR [--out FILE] ID\n"
     "      write a blob's plaintext to stdout or FILE (audited)"},
    {"normalize", cv_cmd_normalize,
     "normalize --kind id_in_hand|business_license [--set intake.KEY=VALUE]... IN OUT\n"
     "      run one image through the sandboxed decoder pool; one JSON line on stdout"},
    {"backup", cv_cmd_backup,
     "backup --data DIR --out FILE|- [--since BACKUP_ID]\n"
     "      stream a signed, still-encrypted backup (tar); prints the backup id"},
    {"restore", cv_cmd_restore,
     "restore --from FULL [--from INCREMENTAL]... --keys DIR --data NEWDIR\n"
     "      restore a full backup then its incrementals into an empty NEWDIR"},
    {"testhook-blobs", cv_cmd_testhook_blobs,
     "testhook-blobs --data DIR [--count N] [--size BYTES] [--marker TEXT] [--interval-ms MS]\n"
     "        [--batch N] [--quiet]\n"
     "      TEST HOOK: put N blobs with rows (stand-in for uploads)"},
    {"testhook-verify-blobs", cv_cmd_testhook_verify_blobs,
     "testhook-verify-blobs --data DIR\n"
     "      TEST HOOK: decrypt and check every blob (stand-in for fsck)"},
    {"export", cv_cmd_export,
     "export --data DIR --case ID --format tar|zip [--recipient age1...] [--as-of N] --out FILE|-\n"
     "      write a case archive (audited as export.create), age-encrypted with --recipient"},
    {"verify-export", cv_cmd_verify_export,
     "verify-export [--pubkey FILE] [--vkey FILE] [--data DIR] ARCHIVE|-\n"
     "      check a case archive offline: manifest hashes, unlisted files, minisign\n"
     "      signature, checkpoint signature, every inclusion proof; exit 0 only if all pass"},
    {"version", cv_cmd_version, "version\n      print the version"},
    {"help", cv_cmd_help, "help\n      this text"},
};

static void cv_help_print(void)
{
    printf("casevault %s: secure document intake and case archive server\n\nUsage:\n", CV_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strncmp(commands[i].name, "testhook-", 9) != 0) /* test and bench hooks */
            printf("  casevault %s\n", commands[i].usage);
    printf("\nConfiguration keys (INI file sections; --set SECTION.KEY=VALUE overrides):\n");
    cv_config_help(stdout);
    printf("\nExit status: 0 success, 1 failure, 2 usage error.\n");
}

int cv_cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cv_help_print();
    return CV_EXIT_OK;
}

int cv_cmd_version(int argc, char **argv)
{
    if (argc > 1)
        return cli_usage(argv[0], "takes no arguments");
    printf("casevault %s\n", CV_VERSION);
    return CV_EXIT_OK;
}

/* Names in archives and filenames are UTF-8 whatever the environment says:
 * LC_CTYPE is C.UTF-8 (built into glibc >= 2.35); everything else stays "C". */
static void set_locale(void)
{
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
        setlocale(LC_CTYPE, "C.utf8");
}

/* jansson holds copies of request bodies (real-name records, case
 * applications): wipe every block it frees. */
static void *json_alloc(size_t n)
{
    return malloc(n);
}

static void json_wipe_free(void *p)
{
    if (p != NULL) {
        sodium_memzero(p, malloc_usable_size(p));
        free(p);
    }
}

static void harden(void)
{
    struct rlimit rl = {0, 0};
    umask(077);
    setrlimit(RLIMIT_CORE, &rl);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int main(int argc, char **argv)
{
    harden();
    set_locale();
    /* Zip DOS times go through localtime(): exports must not depend on TZ. */
    setenv("TZ", "UTC", 1);
    tzset();
    json_set_alloc_funcs(json_alloc, json_wipe_free);
    if (sodium_init() < 0) {
        fprintf(stderr, "casevault: libsodium failed to initialise\n");
        return CV_EXIT_FAIL;
    }
    if (argc < 2) {
        cv_help_print();
        return CV_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cv_cmd_help(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0)
        return cv_cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "casevault: unknown command '%.100s'\nRun 'casevault help' for usage.\n",
            argv[1]);
    return CV_EXIT_USAGE;
}
