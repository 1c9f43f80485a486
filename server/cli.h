/*
 * Private to server/: the command-line interface. Each subcommand is one
 * function `int cv_cmd_<name>(int argc, char **argv)` returning the process
 * exit status: 0 success, 1 failure, 2 usage error (unknown option, missing
 * or unexpected argument; the message names it).
 */
#ifndef CASEVAULT_SERVER_CLI_H
#define CASEVAULT_SERVER_CLI_H

#include <stddef.h>

#include "casevault/status.h"

#define CV_EXIT_OK    0
#define CV_EXIT_FAIL  1
#define CV_EXIT_USAGE 2

struct cli_opt {
    const char *name;   /* long name without "--" */
    int has_arg;        /* 1: takes a value (--name V or --name=V); 0: a flag */
    const char **value; /* where the (last) value goes, for has_arg */
    int *flag;          /* set to 1 when given, for !has_arg */
    void (*each)(const char *value, void *arg); /* optional: called for every occurrence */
    void *arg;
};

/*
 * cli_parse - parse argv[1..argc-1] (argv[0] is the subcommand name used in
 * messages) against opts (terminated by a {NULL} entry). Positional
 * arguments are collected into pos[maxpos]; *npos receives their count.
 * Returns CV_EXIT_OK or CV_EXIT_USAGE (message on stderr naming the option).
 */
int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, const char **pos,
              int maxpos, int *npos);

/* cli_fail - print "casevault CMD: WHAT: <status message>" on stderr; returns CV_EXIT_FAIL. */
int cli_fail(const char *cmd, const char *what, cv_status st);

/* cli_usage - print "casevault CMD: MSG" and a hint on stderr; returns CV_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *msg);

struct cv_datadir;
struct json_t;

/*
 * cli_open_datadir - open the data dir named by --data (one reader
 * connection) for subcommand cmd. Out: *dd (free with cv_datadir_free).
 * Returns CV_EXIT_OK, CV_EXIT_USAGE when data is NULL, or CV_EXIT_FAIL with
 * a message (not initialized, or the status of cv_datadir_open).
 */
int cli_open_datadir(const char *cmd, const char *data, struct cv_datadir **dd);

/*
 * cli_stdout_stream - prepare stdout for a command that streams an archive
 * to `--out -`: refuses a terminal (message naming cmd, returns -1), makes
 * a reader that leaves an error the command reports instead of a silent
 * SIGPIPE death (SIGPIPE ignored: the write fails with EPIPE), and widens a
 * pipe to 1 MiB (a quarter of the wake-ups of 64 KiB; ignored where stdout
 * is not a pipe or the size is refused). Returns STDOUT_FILENO.
 */
int cli_stdout_stream(const char *cmd);

/*
 * cli_audit_commit - end the write transaction a subcommand opened with
 * cv_db_begin on dd: when st is CV_OK, append the audit entry `action` by
 * the operator (actor "cli", role "operator", client "cli") about case_id
 * (NULL: none) and object_id, and commit; otherwise, or when either fails,
 * roll back. details (may be NULL) is consumed. Returns st, else the first
 * error of the append or the commit.
 */
cv_status cli_audit_commit(struct cv_datadir *dd, cv_status st, const char *action,
                           const char *case_id, const char *object_id, struct json_t *details);

int cv_cmd_init(int argc, char **argv);
int cv_cmd_serve(int argc, char **argv);
int cv_cmd_token(int argc, char **argv);
int cv_cmd_accounts(int argc, char **argv);
int cv_cmd_export(int argc, char **argv);
int cv_cmd_verify_export(int argc, char **argv);
#ifdef CV_TEST_HOOKS
int cv_cmd_test_document_add(int argc, char **argv);
#endif

int cv_cmd_audit(int argc, char **argv);

int cv_cmd_blob(int argc, char **argv);
int cv_cmd_keys(int argc, char **argv);
int cv_cmd_fsck(int argc, char **argv);

int cv_cmd_normalize(int argc, char **argv);
int cv_cmd_help(int argc, char **argv);
int cv_cmd_version(int argc, char **argv);
int cv_cmd_backup(int argc, char **argv);
int cv_cmd_restore(int argc, char **argv);
int cv_cmd_testhook_blobs(int argc, char **argv);
int cv_cmd_testhook_verify_blobs(int argc, char **argv);
int cv_cmd_keys_export(int argc, char **argv);
int cv_cmd_keys_import(int argc, char **argv);

#endif
