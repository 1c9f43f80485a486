/*
 * storage/blobstore: encrypted, immutable blobs (DESIGN §4).
 *
 * A blob is a plaintext byte stream of any length stored as ciphertext only:
 * a 62-byte header (magic "CVBLOB", format version, chunk size, blob id, the
 * secretstream header) then crypto_secretstream_xchacha20poly1305 chunks of
 * CV_BLOB_CHUNK plaintext bytes, the last one tagged TAG_FINAL. Each blob has
 * its own random data key (DEK), wrapped by the active master key (KEK) with
 * associated data "blob/<id>" (storage/keyring); the wrapped DEK, plaintext
 * size and SHA-256 live in the `blobs` table. No plaintext byte is written
 * to disk, and memory per put or get is bounded whatever the blob size: a
 * get holds one chunk; a put holds two chunk slots and, for blobs longer
 * than four chunks, one helper thread that hashes and writes one slot while
 * the caller encrypts the next.
 *
 * Where the bytes go is a backend behind struct cv_blobstore_ops (local
 * files now: DATA/tmp for staging, DATA/blobs/xx/yy/<id> when published;
 * an S3-compatible store later). The encryption layer is the same for every
 * backend.
 *
 * Put, in the order that keeps the store consistent through a crash:
 *   cv_blob_put_begin -> cv_blob_put_write (any piece sizes) ->
 *   cv_blob_put_finish (final chunk, fsync; gives id, size, SHA-256) ->
 *   cv_blob_put_commit (rename into place, fsync the directory) ->
 *   cv_db_begin; cv_blob_record (+ the caller's own rows, audit); cv_db_commit ->
 *   cv_blob_put_done.
 * cv_blob_put_abort at any point (also after commit, when the caller's
 * transaction failed) removes the staged or published file.
 *
 * Get: cv_blob_get_open (looks up the row) -> cv_blob_get_read until it
 * gives 0 bytes -> cv_blob_get_close. A stream is good only if a read
 * reported the end (got == 0) with CV_OK: truncation, trailing bytes, size
 * and hash are checked before the end is reported.
 *
 * Thread safety: a writer or reader is used by one thread at a time; the
 * store itself may be shared by any number of threads.
 */
#ifndef CASEVAULT_BLOBSTORE_H
#define CASEVAULT_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/keyring.h"
#include "casevault/status.h"
#include "casevault/util.h"

struct cv_db;
struct cv_blobstore;
struct cv_blob_writer;
struct cv_blob_reader;

#define CV_BLOB_CHUNK      65536 /* plaintext bytes per secretstream chunk */
#define CV_BLOB_FORMAT     1     /* file format version in the header */
#define CV_BLOB_HEADER_LEN 62    /* magic 6, version 1, reserved 1, chunk 4, id 26, stream 24 */
#define CV_BLOB_CHUNK_MIN  1024  /* chunk sizes a reader accepts in a header */
#define CV_BLOB_CHUNK_MAX  1048576

/* What the database knows about a blob (one `blobs` row). */
struct cv_blob_info {
    char id[CV_ULID_LEN + 1];
    uint64_t size;                 /* plaintext bytes */
    uint8_t sha256[CV_SHA256_LEN]; /* SHA-256 (FIPS 180-4) of the plaintext */
    char kek_id[CV_KEY_ID_LEN + 1];
    uint8_t wrapped_dek[CV_WRAPPED_BYTES];
};

/*
 * Backend: where ciphertext bytes live. `be` is the backend's own state;
 * handles `h` are per put or get. Ids are ULIDs (already validated).
 * - stage_open: create a private staging object for id; it stays invisible
 *   (and is removed by a start-up sweep if the process dies) until publish.
 * - stage_write: append len bytes. stage_sync: make the staged bytes durable.
 * - stage_publish: make it visible under id, durably (rename + directory
 *   fsync for files). Until stage_release the object stays marked "in
 *   flight" so that orphan sweeps leave it alone.
 * - stage_discard: remove the staged or published object and free h.
 * - stage_release: free h and keep the object.
 * - open/read/close: read the stored bytes (*stored = their count); read
 *   sets *got = 0 at the end.
 * - stat: stored byte count (CV_E_NOT_FOUND if absent). remove: delete.
 * - list: call fn for every published id with in_flight = 1 if a live put
 *   still holds it; fn returning non-zero stops the walk.
 */
struct cv_blobstore_ops {
    const char *name;
    cv_status (*stage_open)(void *be, const char *id, void **h);
    cv_status (*stage_write)(void *h, const void *buf, size_t len);
    cv_status (*stage_sync)(void *h);
    cv_status (*stage_publish)(void *h);
    void (*stage_discard)(void *h);
    void (*stage_release)(void *h);
    cv_status (*open)(void *be, const char *id, void **h, uint64_t *stored);
    cv_status (*read)(void *h, void *buf, size_t cap, size_t *got);
    void (*close)(void *h);
    cv_status (*stat)(void *be, const char *id, uint64_t *stored);
    cv_status (*remove)(void *be, const char *id);
    cv_status (*list)(void *be, int (*fn)(const char *id, int in_flight, void *arg), void *arg);
    void (*free)(void *be);
};

/*
 * cv_blobstore_open_local - the local-files store: staging in tmp_dir,
 * published blobs in blobs_dir/xx/yy/<id> (xx, yy = hex of SHA-256(id)).
 * db and kr are borrowed and must outlive the store.
 * Out: *out, free with cv_blobstore_free. Errors: CV_E_NOMEM, CV_E_LIMIT
 * (paths too long), CV_E_IO (a directory is missing).
 */
cv_status cv_blobstore_open_local(const char *blobs_dir, const char *tmp_dir, struct cv_db *db,
                                  struct cv_keyring *kr, struct cv_blobstore **out);

/*
 * cv_blobstore_new - a store over any backend (ops and be are borrowed; be
 * is freed with ops->free by cv_blobstore_free). Errors: CV_E_NOMEM.
 */
cv_status cv_blobstore_new(const struct cv_blobstore_ops *ops, void *be, struct cv_db *db,
                           struct cv_keyring *kr, struct cv_blobstore **out);

/* cv_blobstore_free - free the store and its backend. NULL is a no-op. */
void cv_blobstore_free(struct cv_blobstore *bs);

/* cv_blob_stored_size - bytes a blob of `size` plaintext bytes takes on
 * disk with CV_BLOB_CHUNK chunks (header + ciphertext + 17 bytes a chunk). */
uint64_t cv_blob_stored_size(uint64_t size, uint32_t chunk);

/*
 * cv_blob_put_begin - start a put: new ULID, new random DEK wrapped under
 * the active KEK (re-read from the database, so a rotation by another
 * process is followed), staging file with the header.
 * Out: *out (free with cv_blob_put_done or cv_blob_put_abort).
 * Errors: CV_E_NOMEM, CV_E_IO, CV_E_KEY_MISSING, CV_E_CRYPTO, CV_E_DB.
 */
cv_status cv_blob_put_begin(struct cv_blobstore *bs, struct cv_blob_writer **out);

/*
 * cv_blob_put_write - append len plaintext bytes (any size, 0 allowed),
 * hashed and encrypted as they stream; at most one chunk is buffered.
 * Errors: CV_E_ARG (writer finished or failed before), CV_E_IO, CV_E_CRYPTO.
 * After an error the writer only accepts cv_blob_put_abort.
 */
cv_status cv_blob_put_write(struct cv_blob_writer *w, const void *data, size_t len);

/*
 * cv_blob_put_finish - write the TAG_FINAL chunk and fsync the staged file.
 * Out: *info (id, plaintext size, SHA-256, kek id, wrapped DEK: what
 * cv_blob_record stores). Errors: CV_E_ARG (called twice or after an
 * error), CV_E_IO, CV_E_CRYPTO.
 */
cv_status cv_blob_put_finish(struct cv_blob_writer *w, struct cv_blob_info *info);

/*
 * cv_blob_put_commit - publish the finished blob under its id (rename into
 * place, fsync the directory). Call it before the transaction that records
 * the row, so that a committed row never names a missing file.
 * Errors: CV_E_ARG (not finished), CV_E_IO.
 */
cv_status cv_blob_put_commit(struct cv_blob_writer *w);

/* cv_blob_put_done - after the caller's transaction committed: release the
 * writer, keeping the blob. An uncommitted writer is aborted. NULL: no-op. */
void cv_blob_put_done(struct cv_blob_writer *w);

/* cv_blob_put_abort - remove the staged or published file and free the
 * writer (wiping its key state). Safe at any point. NULL is a no-op. */
void cv_blob_put_abort(struct cv_blob_writer *w);

/*
 * cv_blob_record - insert the `blobs` row for info inside the caller's
 * write transaction (cv_db_begin ... cv_db_commit on the store's db). If
 * the active KEK changed since the put began (a rotation), the DEK is
 * re-wrapped under the active one first, so no new row names a retired key.
 * Errors: CV_E_EXISTS (id recorded already), CV_E_DB, CV_E_KEY_MISSING,
 * CV_E_CRYPTO.
 */
cv_status cv_blob_record(struct cv_blobstore *bs, const struct cv_blob_info *info);

/*
 * cv_blob_forget - delete the `blobs` row inside the caller's write
 * transaction; remove the file with cv_blob_delete after the commit (a
 * crash in between leaves an orphan file that the start-up sweep removes).
 * Errors: CV_E_NOT_FOUND, CV_E_DB.
 */
cv_status cv_blob_forget(struct cv_blobstore *bs, const char *id);

/*
 * cv_blob_lookup - the row of blob id (reader connection).
 * Errors: CV_E_ARG (not a ULID), CV_E_NOT_FOUND, CV_E_DB.
 */
cv_status cv_blob_lookup(struct cv_blobstore *bs, const char *id, struct cv_blob_info *info);

/*
 * cv_blob_get_open - open blob id for reading (looks up its row).
 * cv_blob_get_open_info - the same with a row the caller already has.
 * Checks the header and the stored length at once. Out: *out (close with
 * cv_blob_get_close). Errors: CV_E_ARG, CV_E_NOT_FOUND (no row or no
 * file), CV_E_BLOB_HEADER (not a blob file, unknown version or chunk size),
 * CV_E_BLOB_SWAPPED (the file is another blob's), CV_E_BLOB_TRUNCATED,
 * CV_E_BLOB_TRAILING (stored length shorter / longer than the row's size
 * implies), CV_E_BLOB_AUTH (the wrapped DEK does not open: wrong key or
 * tampered row), CV_E_KEY_MISSING, CV_E_IO, CV_E_NOMEM.
 */
cv_status cv_blob_get_open(struct cv_blobstore *bs, const char *id, struct cv_blob_reader **out);
cv_status cv_blob_get_open_info(struct cv_blobstore *bs, const struct cv_blob_info *info,
                                struct cv_blob_reader **out);

/*
 * cv_blob_get_read - next plaintext bytes into buf[cap] (cap > 0, else
 * CV_E_ARG); cap of at least one chunk (64 KiB) is decrypted in place,
 * without a copy. *got = 0 means the
 * end, reached only after the TAG_FINAL chunk, no trailing byte, and the
 * plaintext size and SHA-256 equal the row's. Errors: CV_E_BLOB_AUTH
 * (a chunk fails authentication: tampered, reordered or wrong key),
 * CV_E_BLOB_TRUNCATED, CV_E_BLOB_TRAILING, CV_E_BLOB_SIZE, CV_E_BLOB_HASH,
 * CV_E_IO; after an error every call returns it again.
 */
cv_status cv_blob_get_read(struct cv_blob_reader *r, void *buf, size_t cap, size_t *got);

/*
 * cv_blob_get_skip_hash - before the first read: do not hash the plaintext
 * against info.sha256. Every other check stays: chunk authentication
 * (XChaCha20-Poly1305 under the blob's own data key, header bound to the
 * blob id), truncation, trailing bytes and size, which together already
 * prove the bytes are the ones put. For callers that hash themselves or
 * whose manifest carries the put-time hash (the export).
 */
void cv_blob_get_skip_hash(struct cv_blob_reader *r);

/* cv_blob_get_close - free the reader, wiping its buffers. NULL: no-op. */
void cv_blob_get_close(struct cv_blob_reader *r);

/*
 * cv_blob_verify - read blob info->id to the end and check everything
 * cv_blob_get_read checks (fsck). Errors: as cv_blob_get_open and _read.
 */
cv_status cv_blob_verify(struct cv_blobstore *bs, const struct cv_blob_info *info);

/* cv_blob_stat - stored (ciphertext) bytes of blob id. Errors: CV_E_ARG,
 * CV_E_NOT_FOUND, CV_E_IO. */
cv_status cv_blob_stat(struct cv_blobstore *bs, const char *id, uint64_t *stored);

/* cv_blob_delete - remove blob id's file (not its row: see cv_blob_forget).
 * Errors: CV_E_ARG, CV_E_NOT_FOUND, CV_E_IO. */
cv_status cv_blob_delete(struct cv_blobstore *bs, const char *id);

/* cv_blob_list - every published blob id (see struct cv_blobstore_ops
 * list). Errors: CV_E_IO. */
cv_status cv_blob_list(struct cv_blobstore *bs, int (*fn)(const char *id, int in_flight, void *arg),
                       void *arg);

/*
 * cv_blob_each_row - call fn for every `blobs` row in id order, reading in
 * small batches (no long read transaction). fn returning non-zero stops.
 * Errors: CV_E_DB.
 */
cv_status cv_blob_each_row(struct cv_blobstore *bs,
                           int (*fn)(const struct cv_blob_info *info, void *arg), void *arg);

/*
 * cv_blobstore_sweep_orphans - remove published blob files that have no
 * row and no live put holding them (a crash between cv_blob_put_commit and
 * the row's commit). The server calls it at start-up.
 * Out: *removed (may be NULL). Errors: CV_E_IO, CV_E_DB.
 */
cv_status cv_blobstore_sweep_orphans(struct cv_blobstore *bs, unsigned *removed);

#endif
