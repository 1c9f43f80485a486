/*
 * server/cli: option parsing shared by every subcommand. getopt_long is
 * not used because its messages cannot name the subcommand and it permutes
 * argv; this parser is 60 lines and strict.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "cli.h"

int cli_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "casevault %s: %s\nRun 'casevault help' for usage.\n", cmd, msg);
    return CV_EXIT_USAGE;
}

int cli_fail(const char *cmd, const char *what, cv_status st)
{
    fprintf(stderr, "casevault %s: %s: %s\n", cmd, what, cv_status_str(st));
    return CV_EXIT_FAIL;
}

int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, const char **pos,
              int maxpos, int *npos)
{
    char msg[300];
    int np = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (np >= maxpos) {
                snprintf(msg, sizeof msg, "unexpected argument '%.200s'", a);
                return cli_usage(cmd, msg);
            }
            pos[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(msg, sizeof msg, "unknown option '%.200s'", a);
            return cli_usage(cmd, msg);
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct cli_opt *o = NULL;
        for (const struct cli_opt *p = opts; p->name; p++)
            if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0)
                o = p;
        if (o == NULL) {
            snprintf(msg, sizeof msg, "unknown option '--%.*s'", (int)(nlen > 200 ? 200 : nlen),
                     name);
            return cli_usage(cmd, msg);
        }
        if (!o->has_arg) {
            if (eq) {
                snprintf(msg, sizeof msg, "option '--%s' takes no value", o->name);
                return cli_usage(cmd, msg);
            }
            if (o->flag)
                *o->flag = 1;
            if (o->each)
                o->each(NULL, o->arg);
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (v == NULL) {
            snprintf(msg, sizeof msg, "option '--%s' needs a value", o->name);
            return cli_usage(cmd, msg);
        }
        if (o->value)
            *o->value = v;
        if (o->each)
            o->each(v, o->arg);
    }
    *npos = np;
    return CV_EXIT_OK;
}

int cli_open_datadir(const char *cmd, const char *data, struct cv_datadir **dd)
{
    if (data == NULL)
        return cli_usage(cmd, "--data DIR is required");
    cv_status st = cv_datadir_open(data, 1, dd);
    if (st == CV_E_NOT_INITIALIZED) {
        fprintf(stderr, "casevault %s: %s is not an initialized data directory\n", cmd, data);
        return CV_EXIT_FAIL;
    }
    return st == CV_OK ? CV_EXIT_OK : cli_fail(cmd, data, st);
}

cv_status cli_audit_commit(struct cv_datadir *dd, cv_status st, const char *action,
                           const char *case_id, const char *object_id, json_t *details)
{
    struct cv_audit_event ev = {.action = action,
                                .actor_id = "cli",
                                .actor_role = "operator",
                                .case_id = case_id,
                                .object_id = object_id,
                                .client = "cli",
                                .details = details};
    if (st == CV_OK)
        st = cv_audit_append(dd->db, &ev, NULL);
    json_decref(details);
    if (st == CV_OK)
        return cv_db_commit(dd->db);
    cv_db_rollback(dd->db);
    return st;
}

int cli_stdout_stream(const char *cmd)
{
    if (isatty(STDOUT_FILENO)) {
        cli_usage(cmd, "--out - would write a binary stream to a terminal");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    (void)fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
    return STDOUT_FILENO;
}
