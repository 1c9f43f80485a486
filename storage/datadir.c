/*
 * storage/datadir: creates and opens the data directory. Never deletes
 * anything outside DATA/tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keyring.h"

static cv_status fill_paths(struct cv_datadir *dd, const char *root)
{
    if (snprintf(dd->root, sizeof dd->root, "%s", root) >= (int)sizeof dd->root)
        return CV_E_LIMIT;
    if (cv_path_join(dd->db_path, sizeof dd->db_path, root, "casevault.db") != CV_OK ||
        cv_path_join(dd->blobs, sizeof dd->blobs, root, "blobs") != CV_OK ||
        cv_path_join(dd->tmp, sizeof dd->tmp, root, "tmp") != CV_OK ||
        cv_path_join(dd->keys, sizeof dd->keys, root, "keys") != CV_OK)
        return CV_E_LIMIT;
    return CV_OK;
}

int cv_datadir_initialized(const char *root)
{
    struct cv_datadir dd;
    char path[PATH_MAX];
    struct stat sb;
    if (fill_paths(&dd, root) != CV_OK)
        return 0;
    if (stat(dd.db_path, &sb) != 0)
        return 0;
    if (cv_path_join(path, sizeof path, dd.keys, "signing.key") != CV_OK)
        return 0;
    return stat(path, &sb) == 0;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int empty = 1;
    if (d == NULL)
        return errno == ENOENT;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    return empty;
}

static cv_status mkdir_0700(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return CV_E_IO;
    if (chmod(path, 0700) != 0)
        return CV_E_IO;
    return CV_OK;
}

/* mkdir -p for the data dir's parents (0700 each new one). */
static cv_status mkdir_parents(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return CV_E_LIMIT;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return CV_E_IO;
        *p = '/';
    }
    return CV_OK;
}

cv_status cv_datadir_init(const char *root)
{
    cv_status rc = CV_E_IO;
    struct cv_datadir dd;
    struct cv_db *db = NULL;
    struct cv_keyring *kr = NULL;
    char id[CV_ULID_LEN + 1];
    char now[CV_TIME_LEN + 1];
    int in_tx = 0;

    memset(&dd, 0, sizeof dd);
    if ((rc = fill_paths(&dd, root)) != CV_OK)
        return rc;
    if (cv_datadir_initialized(root))
        return CV_E_EXISTS;
    if (!dir_is_empty(root))
        return CV_E_NOT_EMPTY;
    if ((rc = mkdir_parents(dd.root)) != CV_OK || (rc = mkdir_0700(dd.root)) != CV_OK ||
        (rc = mkdir_0700(dd.blobs)) != CV_OK || (rc = mkdir_0700(dd.tmp)) != CV_OK ||
        (rc = mkdir_0700(dd.keys)) != CV_OK)
        goto out;
    if ((rc = cv_db_open(dd.db_path, 1, 1, &db)) != CV_OK)
        goto out;
    if ((rc = cv_db_begin(db)) != CV_OK)
        goto out;
    in_tx = 1;
    cv_ulid_new(id);
    cv_time_format(cv_now_ms(), now);
    if ((rc = cv_db_meta_set(db, "instance_id", id)) != CV_OK ||
        (rc = cv_db_meta_set(db, "created_at", now)) != CV_OK)
        goto out;
    if ((rc = cv_keyring_init_dir(dd.keys, db)) != CV_OK)
        goto out;
    struct cv_audit_event ev = {
        .action = "instance.init", .actor_id = "system", .actor_role = "system", .object_id = id};
    if ((rc = cv_audit_append(db, &ev, NULL)) != CV_OK)
        goto out;
    in_tx = 0;
    if ((rc = cv_db_commit(db)) != CV_OK)
        goto out;
    /* The log's origin (default casevault/<instance id>) and its verifier
     * key keys/checkpoint.vkey; the server re-sets it from audit.origin. */
    if ((rc = cv_keyring_open(dd.keys, db, &kr)) != CV_OK ||
        (rc = cv_audit_set_origin(db, kr, dd.keys, NULL, "system", "system", NULL)) != CV_OK)
        goto out;
    if ((rc = cv_fsync_dir(dd.root)) != CV_OK)
        goto out;
    rc = CV_OK;
out:
    if (in_tx)
        cv_db_rollback(db);
    cv_keyring_free(kr);
    cv_db_free(db);
    return rc;
}

cv_status cv_datadir_open(const char *root, unsigned readers, struct cv_datadir **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_datadir *dd = calloc(1, sizeof *dd);
    if (dd == NULL)
        goto out;
    if ((rc = fill_paths(dd, root)) != CV_OK)
        goto out;
    if (!cv_datadir_initialized(root)) {
        rc = CV_E_NOT_INITIALIZED;
        goto out;
    }
    if ((rc = cv_db_open(dd->db_path, readers, 0, &dd->db)) != CV_OK)
        goto out;
    if ((rc = cv_db_meta_get(dd->db, "instance_id", dd->instance_id, sizeof dd->instance_id)) !=
        CV_OK)
        goto out;
    if ((rc = cv_keyring_open(dd->keys, dd->db, &dd->kr)) != CV_OK)
        goto out;
    /* An operator may have removed the (disposable) staging dir. */
    if (mkdir(dd->tmp, 0700) != 0 && errno != EEXIST) {
        rc = CV_E_IO;
        goto out;
    }
    if ((rc = cv_blobstore_open_local(dd->blobs, dd->tmp, dd->db, dd->kr, &dd->bs)) != CV_OK)
        goto out;
    *out = dd;
    dd = NULL;
    rc = CV_OK;
out:
    cv_datadir_free(dd);
    return rc;
}

void cv_datadir_free(struct cv_datadir *dd)
{
    if (dd == NULL)
        return;
    cv_blobstore_free(dd->bs);
    cv_keyring_free(dd->kr);
    cv_db_free(dd->db);
    free(dd);
}

cv_status cv_datadir_sweep_tmp(struct cv_datadir *dd, unsigned *removed)
{
    unsigned n = 0;
    DIR *d = opendir(dd->tmp);
    struct dirent *e;
    if (d == NULL)
        return errno == ENOENT ? mkdir_0700(dd->tmp) : CV_E_IO;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        /* A staging file a live put holds (flock) is not debris. */
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        int busy = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (!busy && unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
    if (removed)
        *removed = n;
    return CV_OK;
}

cv_status cv_datadir_lock_server(struct cv_datadir *dd, int *fd)
{
    char path[PATH_MAX];
    if (cv_path_join(path, sizeof path, dd->root, "serve.lock") != CV_OK)
        return CV_E_LIMIT;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0)
        return CV_E_IO;
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        close(f);
        return CV_E_BUSY;
    }
    *fd = f;
    return CV_OK;
}
