/*
 * server/cmd_keys: `casevault keys SUBCOMMAND`. export/import (the separate,
 * passphrase-encrypted key backup) live in cmd_keys_backup.c; `keys rotate`
 * (blob store branch) is to be added to this table.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cv_cmd_keys(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } sub[] = {
        {"export", cv_cmd_keys_export},
        {"import", cv_cmd_keys_import},
    };
    if (argc < 2)
        return cli_usage("keys", "needs a subcommand: export or import");
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        if (strcmp(argv[1], sub[i].name) == 0)
            return sub[i].fn(argc - 1, argv + 1);
    return cli_usage("keys", "unknown subcommand (export or import)");
}
