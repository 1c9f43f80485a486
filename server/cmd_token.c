/*
 * server/cmd_token: `casevault token create|list|revoke`. create prints the
 * secret alone on stdout, once; everything else goes to stderr.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/token.h"
#include "cli.h"

static int token_create(int argc, char **argv)
{
    const char *data = NULL, *role_s = NULL, *name = NULL;
    const char *pos[1];
    int npos = 0;
    enum cv_role role;
    struct cv_datadir *dd = NULL;
    char text[CV_TOKEN_TEXT_LEN + 1];
    char id[CV_ULID_LEN + 1];
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"role", 1, &role_s, NULL, NULL, NULL},
        {"name", 1, &name, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("token create", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (role_s == NULL || cv_role_parse(role_s, &role) != CV_OK || (role & CV_ROLE_STAFF) == 0)
        return cli_usage("token create", "--role must be admin, reviewer, auditor or backup");
    if (name == NULL)
        return cli_usage("token create", "--name NAME is required");
    if ((rc = cli_open_datadir("token create", data, &dd)) != CV_EXIT_OK)
        return rc;
    cv_status st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cv_token_create(dd->db, dd->kr, role, name, NULL, 0, text, id);
        st = cli_audit_commit(dd, st, "token.create", NULL, id, json_pack("{s:s}", "role", role_s));
    }
    if (st == CV_E_ARG) {
        rc = cli_usage("token create", "--name must be 1-64 characters of A-Z a-z 0-9 . _ - @");
    } else if (st != CV_OK) {
        rc = cli_fail("token create", "cannot create the token", st);
    } else {
        printf("%s\n", text);
        fflush(stdout);
        fprintf(stderr, "created %s token %s (id %s); it is shown only once\n", role_s, name, id);
        rc = CV_EXIT_OK;
    }
    sodium_memzero(text, sizeof text);
    cv_datadir_free(dd);
    return rc;
}

static int print_row(const struct cv_token_info *t, void *arg)
{
    (void)arg;
    printf("%-26s  %-9s  %-24s  %-24s  %s\n", t->id, t->role, t->name, t->created_at,
           t->revoked_at ? t->revoked_at : "active");
    return 0;
}

static int token_list(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0, all = 0;
    struct cv_datadir *dd = NULL;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"all", 0, NULL, &all, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("token list", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if ((rc = cli_open_datadir("token list", data, &dd)) != CV_EXIT_OK)
        return rc;
    printf("%-26s  %-9s  %-24s  %-24s  %s\n", "ID", "ROLE", "NAME", "CREATED", "REVOKED");
    cv_status st = cv_token_list(dd->db, all, print_row, NULL);
    cv_datadir_free(dd);
    return st == CV_OK ? CV_EXIT_OK : cli_fail("token list", "cannot list tokens", st);
}

static int token_revoke(int argc, char **argv)
{
    const char *data = NULL, *id = NULL;
    const char *pos[1];
    int npos = 0;
    struct cv_datadir *dd = NULL;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"id", 1, &id, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("token revoke", argc, argv, opts, pos, 1, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (id == NULL && npos == 1)
        id = pos[0];
    if (id == NULL)
        return cli_usage("token revoke", "--id TOKEN_ID is required");
    if (!cv_ulid_valid(id))
        return cli_usage("token revoke", "--id must be a token id (26-character ULID)");
    if ((rc = cli_open_datadir("token revoke", data, &dd)) != CV_EXIT_OK)
        return rc;
    cv_status st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cli_audit_commit(dd, cv_token_revoke(dd->db, id), "token.revoke", NULL, id, NULL);
    }
    cv_datadir_free(dd);
    if (st == CV_E_NOT_FOUND) {
        fprintf(stderr, "casevault token revoke: no active token with id %s\n", id);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("token revoke", "cannot revoke", st);
    fprintf(stderr, "revoked token %s\n", id);
    return CV_EXIT_OK;
}

int cv_cmd_token(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("token", "expected a subcommand: create, list or revoke");
    if (strcmp(argv[1], "create") == 0)
        return token_create(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return token_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0)
        return token_revoke(argc - 1, argv + 1);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown subcommand '%.60s' (expected create, list or revoke)",
             argv[1]);
    return cli_usage("token", msg);
}
