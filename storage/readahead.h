/*
 * storage/readahead (internal to storage/): read a list of files in order
 * on a helper thread and hand the bytes over in slots, so that opening and
 * reading overlap with what the caller does with the bytes (the backup
 * hashes them and writes them into a tar stream). Memory:
 * READAHEAD_SLOTS slots of READAHEAD_SLOT bytes (8 x 256 KiB), whatever the files' count and sizes.
 */
#ifndef CASEVAULT_STORAGE_READAHEAD_H
#define CASEVAULT_STORAGE_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

/*
 * Where file i (0 <= i < n) is and how large it must be (bytes). Called on
 * the helper thread, in order. Errors are passed on to the caller as is.
 */
typedef cv_status (*cv_readahead_path_fn)(void *arg, size_t i, char *path, size_t cap,
                                          uint64_t *size);

struct cv_readahead;

/*
 * cv_readahead_start - start reading files 0..n-1. Each is opened O_NOFOLLOW and must
 * be a regular file of exactly the size path_fn gives (else CV_E_IO).
 * arg must outlive cv_readahead_stop. *out is freed by cv_readahead_stop. Errors: CV_E_NOMEM.
 */
cv_status cv_readahead_start(size_t n, cv_readahead_path_fn path_fn, void *arg,
                             struct cv_readahead **out);

/*
 * cv_readahead_next - the next piece of the current file: *data and *len
 * (0 only for an empty file), valid until cv_readahead_release; *last is 1
 * on the file's final piece. Pieces never span two files; an empty file is
 * one piece of length 0. Errors: the helper's (CV_E_IO for a missing,
 * changed, short or unreadable file; whatever path_fn returned);
 * CV_E_INTERNAL past the last file.
 */
cv_status cv_readahead_next(struct cv_readahead *r, const uint8_t **data, size_t *len, int *last);

/* cv_readahead_release - give the piece from cv_readahead_next back to the helper. */
void cv_readahead_release(struct cv_readahead *r);

/*
 * cv_readahead_stop - stop the helper if still running, wait for it, wipe and free
 * everything. Returns the helper's error, CV_OK when it read every file
 * (or was stopped before an error). NULL: CV_OK.
 */
cv_status cv_readahead_stop(struct cv_readahead *r);

#endif
