/*
 * casevault: one binary, many subcommands. main() hardens the process
 * (umask 077, no core dumps, not dumpable, libsodium initialised before any
 * thread) and dispatches.
 */
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

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
    {"backup", cv_cmd_backup,
     "backup --data DIR --out FILE|- [--since BACKUP_ID]\n"
     "      stream a signed, still-encrypted backup (tar); prints the backup id"},
    {"restore", cv_cmd_restore,
     "restore --from FILE [--from FILE]... --keys DIR --data NEWDIR\n"
     "      restore a full backup then its incrementals into an empty NEWDIR"},
    {"keys", cv_cmd_keys,
     "keys export --data DIR --out FILE [--passphrase-file F]\n"
     "      write the key files encrypted under a passphrase (Argon2id)\n"
     "  casevault keys import --in FILE --keys DIR [--passphrase-file F]"},
    {"testhook-blobs", cv_cmd_testhook_blobs,
     "testhook-blobs --data DIR [--count N] [--size BYTES] [--marker TEXT] [--interval-ms MS]\n"
     "        [--batch N] [--quiet]\n"
     "      TEST HOOK: put N blobs with rows (stand-in for uploads)"},
    {"testhook-verify-blobs", cv_cmd_testhook_verify_blobs,
     "testhook-verify-blobs --data DIR\n"
     "      TEST HOOK: decrypt and check every blob (stand-in for fsck)"},
    {"version", cv_cmd_version, "version\n      print the version"},
    {"help", cv_cmd_help, "help\n      this text"},
};

void cv_help_print(void)
{
    printf("casevault %s: secure document intake and case archive server\n\nUsage:\n", CV_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
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
