/*
 * storage/backup: hot, consistent, still-encrypted backups and their
 * restore (DESIGN §6; STACK-NOTES §4 and §5).
 *
 * A backup is a pax-restricted tar stream (storage/archive), in this order:
 *   backup.json              what the stream holds (ids, counts, bytes,
 *                            schema version, audit tree size)
 *   db/casevault.db          a consistent SQLite snapshot (VACUUM INTO a
 *                            private 0700 directory under DATA/tmp, fsynced)
 *   blobs/xx/yy/<id>         every blob file the snapshot references (or,
 *                            for an incremental backup, every blob committed
 *                            after its base), byte for byte as stored: the
 *                            ciphertext of storage/blobstore
 *   MANIFEST.sha256          `sha256sum -c` lines of the entries above
 *   MANIFEST.sha256.minisig  minisign signature of the manifest by the
 *                            server's Ed25519 key (DATA/keys/casevault.pub)
 * No key file is ever inside. Writers keep writing while a backup runs: the
 * snapshot is one read transaction, blobs are immutable and published
 * before their rows commit, so every blob the snapshot references exists.
 *
 * Taking a backup is two steps so that an HTTP handler can refuse (unknown
 * `since`) before it sends a status line: cv_backup_prepare (snapshot, blob
 * list, the `backups` row and the audit entry "backup.create", in one write
 * transaction) then cv_backup_stream (writes the tar to an fd; may run on
 * another thread). Memory is independent of blob sizes (a 256 KiB output
 * buffer; files read and SHA-256-hashed ahead by a helper thread into
 * 8 slots of 256 KiB); the blob list and the manifest cost ~150 bytes a
 * blob.
 *
 * Restore (cv_restore) reads one full backup then its incrementals in
 * order into a private staging directory inside the (empty) target,
 * accepting only regular files with the names above, each checked against
 * the signed manifest (signature verified with the operator's key
 * directory, never with anything inside the archive), and makes the data
 * dir live only when everything verified: snapshot, every referenced blob,
 * and every master key the data names.
 */
#ifndef CASEVAULT_BACKUP_H
#define CASEVAULT_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"
#include "casevault/util.h"

struct cv_datadir;
struct cv_backup_job;

#define CV_BACKUP_FORMAT    "casevault-backup"
#define CV_BACKUP_VERSION   1
#define CV_BACKUP_MAX_ENTRY (64ULL << 30) /* default cap of one entry on restore */

/* Progress: bytes of file data streamed / to stream. */
typedef void (*cv_backup_progress_fn)(uint64_t done, uint64_t total, void *arg);

/* Who asks (audit actor fields; strings borrowed for the call). */
struct cv_backup_actor {
    const char *actor_id;   /* token id or "cli" */
    const char *actor_role; /* "backup" or "operator" */
    const char *request_id; /* or NULL */
    const char *client;     /* client address or "cli" */
};

/* What a backup holds (also its `backups` row and backup.json). */
struct cv_backup_info {
    char id[CV_ULID_LEN + 1];
    char base_id[CV_ULID_LEN + 1]; /* "" for a full backup */
    char created_at[CV_TIME_LEN + 1];
    int schema_version;
    uint64_t audit_size; /* audit tree size inside the snapshot */
    uint64_t blob_seq;   /* highest blob log number inside the snapshot */
    uint64_t blobs;      /* blob files in the stream */
    uint64_t blob_bytes; /* their stored (ciphertext) bytes */
    uint64_t db_bytes;   /* snapshot bytes */
};

/*
 * cv_backup_prepare - snapshot the database of dd, list the blobs to send
 * (all, or those committed after backup `since` when since is non-NULL),
 * and record the backup (`backups` row + audit "backup.create" with the
 * counts, one transaction). The snapshot lives in DATA/tmp/backup-XXXXXX
 * (0700) until cv_backup_job_free.
 * Out: *out (free with cv_backup_job_free), *info (may be NULL).
 * Errors: CV_E_ARG (since not a ULID), CV_E_NOT_FOUND (no backup `since`),
 * CV_E_IO (snapshot or a blob file missing), CV_E_DB, CV_E_DB_BUSY,
 * CV_E_NOMEM.
 */
cv_status cv_backup_prepare(struct cv_datadir *dd, const char *since,
                            const struct cv_backup_actor *who, struct cv_backup_job **out,
                            struct cv_backup_info *info);

/*
 * cv_backup_stream - write the prepared backup as a tar stream to fd
 * (blocking writes; a pipe, file or socket). progress may be NULL.
 * Errors: CV_E_IO (write failed; EPIPE when the reader went away: the
 * caller should ignore SIGPIPE), CV_E_ARCHIVE_FORMAT, CV_E_CRYPTO (signing),
 * CV_E_NOMEM. A job streams once.
 */
cv_status cv_backup_stream(struct cv_backup_job *job, int fd, cv_backup_progress_fn progress,
                           void *arg);

/* cv_backup_job_free - remove the snapshot directory and free. NULL: no-op. */
void cv_backup_job_free(struct cv_backup_job *job);

/* Outcome of a restore. */
struct cv_restore_result {
    char last_id[CV_ULID_LEN + 1]; /* id of the last backup applied */
    unsigned archives;
    uint64_t blobs;      /* blob files made live */
    uint64_t audit_size; /* tree size of the restored snapshot */
    int schema_version;
};

/*
 * cv_restore - restore backups from[0..nfrom-1] (paths; "-" is stdin), a
 * full backup then its incrementals in order, into the data dir `target`
 * (missing or an empty directory), with the key files of keys_dir (copied
 * into target/keys; keys_dir/casevault.pub verifies the signatures).
 * max_entry caps each archive entry (0 = CV_BACKUP_MAX_ENTRY). On any
 * error nothing is made live: the staging directory is removed and target
 * is left as it was (removed again if this call created it).
 * Out: *res (may be NULL); detail[cap] (may be NULL) names the offending
 * entry, key id or backup id for the operator (no PII, no key material).
 * Errors: CV_E_NOT_EMPTY (target not empty), CV_E_UNSAFE_ARCHIVE_ENTRY
 * (link, device, unsafe or unexpected name, duplicate, over the cap),
 * CV_E_ARCHIVE_FORMAT (not a tar, corrupt, a required entry missing),
 * CV_E_MANIFEST_MISMATCH (an entry's hash or the entry list differs from
 * the manifest), CV_E_SIGNATURE_INVALID (missing or bad signature),
 * CV_E_BACKUP_CHAIN (not full-then-consecutive incrementals, or a blob the
 * snapshot references is in none of them), CV_E_KEY_MISSING (keys_dir
 * lacks the public key, the signing key or a master key the data
 * references), CV_E_DB (snapshot unusable or of a newer schema), CV_E_IO,
 * CV_E_NOMEM, CV_E_ARG.
 */
cv_status cv_restore(const char *const *from, size_t nfrom, const char *keys_dir,
                     const char *target, uint64_t max_entry, struct cv_restore_result *res,
                     char *detail, size_t cap);

#endif
