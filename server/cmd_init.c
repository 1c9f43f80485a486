/*
 * server/cmd_init: `casevault init --data DIR`.
 */
#include <stdio.h>

#include "casevault/datadir.h"
#include "cli.h"

int cv_cmd_init(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0;
    const struct cli_opt opts[] = {{"data", 1, &data, NULL, NULL, NULL},
                                   {NULL, 0, NULL, NULL, NULL, NULL}};
    int rc = cli_parse("init", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (data == NULL)
        return cli_usage("init", "--data DIR is required");
    cv_status st = cv_datadir_init(data);
    if (st == CV_E_EXISTS) {
        fprintf(stderr, "casevault init: %s is already an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (st == CV_E_NOT_EMPTY) {
        fprintf(stderr, "casevault init: %s is not empty and not a casevault data directory\n",
                data);
        return CV_EXIT_FAIL;
    }
    if (st != CV_OK)
        return cli_fail("init", data, st);
    fprintf(stderr, "initialized %s (keys in %s/keys)\n", data, data);
    return CV_EXIT_OK;
}
