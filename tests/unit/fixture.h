/*
 * Shared cmocka fixture of the unit tests: a fresh, initialized data dir in
 * a private temporary folder, opened with two reader connections, and
 * removed again after each test. Header-only (static functions) so every
 * test executable gets its own copy without a library.
 */
#ifndef CASEVAULT_TEST_FIXTURE_H
#define CASEVAULT_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "casevault/datadir.h"

struct fx {
    char dir[64];
    char root[128];
    struct cv_datadir *dd;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cv-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->root, sizeof f->root, "%s/data", f->dir);
    if (cv_datadir_init(f->root) != CV_OK || cv_datadir_open(f->root, 2, &f->dd) != CV_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[200];
    cv_datadir_free(f->dd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int r = system(cmd);
    free(f);
    return r == 0 ? 0 : -1;
}

#endif
