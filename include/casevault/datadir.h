/*
 * storage/datadir: the data directory and the handles every command needs.
 *
 * Layout (DESIGN §7): DATA/casevault.db, DATA/blobs/, DATA/tmp/ (staging,
 * swept at server start-up), DATA/keys/ (0700; key files 0600;
 * casevault.pub and checkpoint.vkey are public). Everything is created
 * with umask 077.
 */
#ifndef CASEVAULT_DATADIR_H
#define CASEVAULT_DATADIR_H

#include <limits.h>

#include "casevault/status.h"
#include "casevault/util.h"

struct cv_db;
struct cv_keyring;
struct cv_blobstore;

struct cv_datadir {
    char root[PATH_MAX];
    char db_path[PATH_MAX];
    char blobs[PATH_MAX];
    char tmp[PATH_MAX];
    char keys[PATH_MAX];
    char instance_id[CV_ULID_LEN + 1];
    struct cv_db *db;
    struct cv_keyring *kr;
    struct cv_blobstore *bs; /* local-files blob store over blobs/ and tmp/ */
};

/*
 * cv_datadir_initialized - 1 if root holds an initialized casevault data
 * dir (database and signing key present), 0 otherwise.
 */
int cv_datadir_initialized(const char *root);

/*
 * cv_datadir_init - create the layout, the database (latest schema), the
 * instance id and the first keys (cv_keyring_init_dir). root may be missing
 * or an empty directory. Errors: CV_E_EXISTS (already initialized),
 * CV_E_NOT_EMPTY (root holds other files), CV_E_IO, CV_E_DB, CV_E_CRYPTO.
 */
cv_status cv_datadir_init(const char *root);

/*
 * cv_datadir_open - open an initialized data dir: database (migrated to the
 * latest schema) with `readers` reader connections, the keyring and the
 * blob store.
 * Out: *out, free with cv_datadir_free. Errors: CV_E_NOT_INITIALIZED, plus
 * those of cv_db_open and cv_keyring_open.
 */
cv_status cv_datadir_open(const char *root, unsigned readers, struct cv_datadir **out);

/* cv_datadir_free - close the database, wipe the keys. NULL is a no-op. */
void cv_datadir_free(struct cv_datadir *dd);

/*
 * cv_datadir_sweep_tmp - remove every file in DATA/tmp (staging left by a
 * crash) except those a live process still holds locked (a CLI put running
 * beside the server). Only the server calls it, at start-up, before it
 * accepts requests.
 * Out: *removed = number of files removed (may be NULL). Errors: CV_E_IO.
 */
cv_status cv_datadir_sweep_tmp(struct cv_datadir *dd, unsigned *removed);

/*
 * cv_datadir_lock_server - take an exclusive advisory lock (DATA/serve.lock)
 * so that two servers never share a data dir. Out: *fd (keep it open for the
 * server's life). Errors: CV_E_BUSY (another server holds it), CV_E_IO.
 */
cv_status cv_datadir_lock_server(struct cv_datadir *dd, int *fd);

#endif
