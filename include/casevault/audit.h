/*
 * storage/audit: the append-only, verifiable audit log (DESIGN §5).
 *
 * Every state change and every read of plaintext appends one entry, in the
 * same write transaction as the action, so the two commit or fail together.
 * An entry is canonical JSON (keys sorted, compact, UTF-8): {action, actor:
 * {id, role}, case_id, client, details, object_id, outcome, request_id, seq,
 * time}; absent optional members are null. Entries carry ids and hashes,
 * never PII, tokens or key material. Entries are the leaves of an RFC 6962 /
 * RFC 9162 Merkle tree: leaf hash = SHA-256(0x00 || entry bytes), node hash
 * = SHA-256(0x01 || left || right) (storage/merkle). Each leaf row also
 * stores the perfect subtrees it completes, so roots and proofs for any
 * size are O(log n) row reads.
 *
 * The log's identity is its origin (config audit.origin, default
 * "casevault/<instance id>", kept in meta "audit_origin" so every process
 * uses the same one). Checkpoints are C2SP tlog-checkpoint texts signed as
 * C2SP signed notes with the instance's Ed25519 key under key name =
 * origin (storage/checkpoint); DATA/keys/checkpoint.vkey holds the verifier
 * key. Readers (proofs, entries, checkpoints) run in one SQLite read
 * snapshot each and never cache the tree size, because CLI processes
 * append while the server runs. All functions are thread-safe.
 */
#ifndef CASEVAULT_AUDIT_H
#define CASEVAULT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "casevault/checkpoint.h"
#include "casevault/merkle.h"
#include "casevault/status.h"

struct cv_db;
struct cv_keyring;

struct cv_audit_event {
    const char *action;     /* "case.create", "document.upload", "token.create", ... */
    const char *actor_id;   /* token id, or "cli" / "system" */
    const char *actor_role; /* "admin", "reviewer", "auditor", "backup", "applicant",
                               "operator" (CLI), "system" */
    const char *case_id;    /* ULID or NULL */
    const char *object_id;  /* id of the document/token/backup acted on, or NULL */
    const char *request_id; /* HTTP request id or NULL */
    const char *client;     /* client address, "cli", or NULL */
    const char *outcome;    /* "ok", "refused", ...; NULL means "ok" */
    json_t *details;        /* optional JSON object of ids and hashes (borrowed) */
};

/*
 * cv_audit_append - append one entry inside the caller's write transaction
 * (between cv_db_begin and cv_db_commit). The sequence number is the tree
 * size read inside that transaction, so concurrent processes never collide.
 * Also stores the subtree hashes the new leaf completes (amortized one row
 * read). Out: *seq_out (0-based leaf index; may be NULL). Errors: CV_E_ARG
 * (no action or actor, details not an object), CV_E_NOMEM, CV_E_DB,
 * CV_E_DB_BUSY, CV_E_AUDIT_MISMATCH (stored hashes of earlier leaves are
 * missing or malformed).
 */
cv_status cv_audit_append(struct cv_db *db, const struct cv_audit_event *ev, uint64_t *seq_out);

/*
 * cv_audit_size - current tree size (number of entries), read from a reader
 * connection. Errors: CV_E_DB.
 */
cv_status cv_audit_size(struct cv_db *db, uint64_t *size);

/*
 * cv_audit_size_in_txn - the tree size as the caller's write transaction
 * (cv_db_begin) sees it, entries it appended included. Errors: CV_E_DB.
 */
cv_status cv_audit_size_in_txn(struct cv_db *db, uint64_t *size);

/*
 * cv_audit_leaf_hash - RFC 6962 leaf hash SHA-256(0x00 || data[len]).
 */
void cv_audit_leaf_hash(const void *data, size_t len, uint8_t out[32]);

/* ---- proofs (auditor API; each call is one read snapshot) ---- */

struct cv_audit_proof {
    uint64_t index;       /* inclusion: leaf index; consistency: old size */
    uint64_t size;        /* tree size the proof is for (consistency: new size) */
    uint8_t leaf[32];     /* inclusion: the leaf hash */
    uint8_t old_root[32]; /* consistency: root at the old size */
    uint8_t root[32];     /* root at `size` */
    size_t n;             /* hashes in the proof */
    uint8_t hashes[CV_MERKLE_MAX_PROOF][32];
};

/*
 * cv_audit_root - root hash of the first `size` entries. Out: root.
 * Errors: CV_E_RANGE (size beyond the tree), CV_E_DB, CV_E_AUDIT_MISMATCH.
 */
cv_status cv_audit_root(struct cv_db *db, uint64_t size, uint8_t root[32]);

/*
 * cv_audit_inclusion_proof - RFC 9162 inclusion proof of leaf `index` in
 * the tree of `size` entries. Out: *out. Errors: CV_E_RANGE (size 0,
 * index >= size, or size beyond the current tree), CV_E_DB,
 * CV_E_AUDIT_MISMATCH.
 */
cv_status cv_audit_inclusion_proof(struct cv_db *db, uint64_t index, uint64_t size,
                                   struct cv_audit_proof *out);

/*
 * cv_audit_consistency_proof - RFC 9162 consistency proof from old_size to
 * new_size (1 <= old <= new <= tree size). Out: *out (index = old size).
 * Errors: CV_E_RANGE, CV_E_DB, CV_E_AUDIT_MISMATCH.
 */
cv_status cv_audit_consistency_proof(struct cv_db *db, uint64_t old_size, uint64_t new_size,
                                     struct cv_audit_proof *out);

/*
 * Entry callback: seq, the exact entry bytes (the leaf's data, not
 * NUL-terminated beyond len), its stored leaf hash. Return 0 to go on,
 * non-zero to stop (cv_audit_entries then returns CV_OK).
 */
typedef int (*cv_audit_entry_fn)(void *arg, uint64_t seq, const char *entry, size_t len,
                                 const uint8_t leaf[32]);

/*
 * cv_audit_entries - call fn for entries [start, end) in order, end clamped
 * to the tree size. Out: *tree_size (the snapshot's size; may be NULL).
 * Errors: CV_E_RANGE (start beyond the tree, or end < start), CV_E_DB.
 */
cv_status cv_audit_entries(struct cv_db *db, uint64_t start, uint64_t end, cv_audit_entry_fn fn,
                           void *arg, uint64_t *tree_size);

/* ---- origin, verifier key, checkpoints ---- */

/*
 * cv_audit_origin - the log's current origin: meta "audit_origin", or
 * "casevault/<instance id>" if none was set. Out: out[CV_NOTE_NAME_MAX + 1].
 * Errors: CV_E_DB, CV_E_NOT_FOUND (no instance id).
 */
cv_status cv_audit_origin(struct cv_db *db, char out[CV_NOTE_NAME_MAX + 1]);

/*
 * cv_audit_set_origin - make `origin` the log's origin (NULL or "" = the
 * default "casevault/<instance id>"). When it differs from the stored one,
 * stores it and appends an `audit.origin` entry (actor given) in one
 * transaction. Then (re)writes keys_dir/checkpoint.vkey (0644) if its
 * content differs. Out: effective[CV_NOTE_NAME_MAX + 1] (may be NULL).
 * Errors: CV_E_CONFIG (origin not 1-128 printable ASCII characters without
 * space or '+'), CV_E_DB, CV_E_DB_BUSY, CV_E_IO.
 */
cv_status cv_audit_set_origin(struct cv_db *db, struct cv_keyring *kr, const char *keys_dir,
                              const char *origin, const char *actor_id, const char *actor_role,
                              char effective[CV_NOTE_NAME_MAX + 1]);

/*
 * cv_audit_vkey - verifier key text of the current origin and the
 * instance's Ed25519 key. Out: out[CV_NOTE_VKEY_MAX]. Errors: CV_E_DB.
 */
cv_status cv_audit_vkey(struct cv_db *db, struct cv_keyring *kr, char out[CV_NOTE_VKEY_MAX]);

/*
 * cv_audit_checkpoint_tick - sign and store a checkpoint of the current tree
 * if it has grown past the latest checkpoint of the current origin and that
 * checkpoint is at least interval_ms old (or none exists). Before signing,
 * the latest checkpoint's root is recomputed from storage; a difference
 * refuses to sign (CV_E_AUDIT_MISMATCH): a log never signs a tree
 * inconsistent with what it signed before. Out: *signed_new = 1 if a
 * checkpoint was signed (may be NULL). Errors: CV_E_DB, CV_E_DB_BUSY,
 * CV_E_CRYPTO, CV_E_AUDIT_MISMATCH.
 */
cv_status cv_audit_checkpoint_tick(struct cv_db *db, struct cv_keyring *kr, int64_t interval_ms,
                                   int *signed_new);

/*
 * cv_audit_checkpoint_at - the stored checkpoint for exactly `size` under
 * the current origin, signing and storing it first if absent (on demand,
 * e.g. for an export as of that size). Out: *note (malloc'd signed note,
 * caller frees). Errors: CV_E_RANGE (size beyond the tree), as tick.
 */
cv_status cv_audit_checkpoint_at(struct cv_db *db, struct cv_keyring *kr, uint64_t size,
                                 char **note);

/*
 * cv_audit_checkpoint_latest - the stored checkpoint of the current origin
 * with the largest size. Out: *note (malloc'd), *size (may be NULL).
 * Errors: CV_E_NOT_FOUND (none yet), CV_E_DB, CV_E_NOMEM.
 */
cv_status cv_audit_checkpoint_latest(struct cv_db *db, char **note, uint64_t *size);

/* ---- full verification (casevault audit verify) ---- */

struct cv_audit_report {
    uint64_t entries;     /* entries checked */
    uint64_t checkpoints; /* checkpoints whose signature and root verified */
    int has_bad_index;    /* 1 if bad_index names the first bad entry */
    uint64_t bad_index;
    char problem[256]; /* what failed, "" when everything verified */
    uint8_t root[32];  /* recomputed root of the whole log */
};

/*
 * cv_audit_verify - in one read snapshot, recompute every leaf hash from
 * the stored entry text (and check that it ends with its own "seq" and a
 * "time", as every canonical entry does), every stored subtree hash, and for every stored
 * checkpoint (any origin) its signature under pk (key name = its origin) and its root against the
 * recomputed tree. Stops at the first problem. Out: *rep is filled in on success AND on
 * CV_E_AUDIT_MISMATCH (it is the report). Errors: CV_E_AUDIT_MISMATCH, CV_E_DB, CV_E_NOMEM.
 */
cv_status cv_audit_verify(struct cv_db *db, const uint8_t pk[32], struct cv_audit_report *rep);

#endif
