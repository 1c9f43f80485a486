/*
 * storage/keyring: master keys, wrapped keys and derived keys.
 *
 * Master keys (KEK, 32 bytes) are files DATA/keys/<kek_id>.kek (0600) where
 * kek_id is 16 lowercase hex characters; the active one is named in the
 * database (meta "active_kek"). A field root key (32 bytes) is stored in the
 * database wrapped by a KEK (XChaCha20-Poly1305-IETF); crypto_kdf derives the
 * purpose keys from it (token hashing, field encryption, blind indexes). The
 * Ed25519 signing key is DATA/keys/signing.key (32-byte seed, 0600); its
 * public half is published as DATA/keys/casevault.pub (minisign format).
 *
 * Every key lives in sodium_malloc memory, kept PROT_NONE when idle; a mutex
 * serializes the short windows in which one is readable. Keys never appear in
 * logs, errors or return values other than the documented output buffers.
 * The whole API is thread-safe.
 */
#ifndef CASEVAULT_KEYRING_H
#define CASEVAULT_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

struct cv_db;
struct cv_keyring;

#define CV_KEY_ID_LEN     16 /* hex characters of a key id */
#define CV_KEY_BYTES      32 /* every symmetric key */
#define CV_WRAPPED_BYTES  72 /* nonce 24 + key 32 + tag 16 */
#define CV_SIG_BYTES      64 /* Ed25519 signature */
#define CV_SIGN_PK_BYTES  32 /* Ed25519 public key */
#define CV_MINISIGN_KEYID 8  /* bytes of a minisign key id */

/* Purposes of keys derived from the field root key (crypto_kdf subkey ids). */
enum cv_key_purpose {
    CV_KEY_TOKEN = 1, /* keyed BLAKE2b of bearer tokens */
    CV_KEY_FIELD = 2, /* AEAD of PII columns */
    CV_KEY_BLIND = 3, /* blind indexes of PII columns */
    CV_KEY_RATE = 4,  /* keyed hashes used by rate limits / audit */
};

/*
 * cv_keyring_init_dir - first-run key material for an empty data dir: a KEK
 * file, the signing key, the minisign public key file, and (inside the
 * caller's write transaction on db) the wrapped field root key and
 * meta "active_kek". keys_dir must exist (0700).
 * Errors: CV_E_EXISTS if keys already exist, CV_E_IO, CV_E_DB, CV_E_CRYPTO.
 */
cv_status cv_keyring_init_dir(const char *keys_dir, struct cv_db *db);

/*
 * cv_keyring_open - load every KEK file of keys_dir, the signing key, and
 * unwrap the field root key from db. Safe while another process rotates or
 * retires keys (a key file added after the listing is loaded by name, one
 * removed after it is skipped). kr keeps keys_dir and db (borrowed) for
 * on-demand loading. Out: *out, free with cv_keyring_free.
 * Errors: CV_E_KEY_MISSING (the active KEK or a KEK the root key needs is
 * absent; the message names no key material), CV_E_KEY_INVALID (a key file
 * of the wrong size or mode wider than 0600), CV_E_CRYPTO (unwrap failed),
 * CV_E_DB, CV_E_NOMEM.
 */
cv_status cv_keyring_open(const char *keys_dir, struct cv_db *db, struct cv_keyring **out);

/* cv_keyring_free - wipe and free every key. NULL is a no-op. */
void cv_keyring_free(struct cv_keyring *kr);

/* cv_keyring_active_kek - id of the active KEK (static for kr's life until
 * a rotation; copy it). out[CV_KEY_ID_LEN + 1]. */
void cv_keyring_active_kek(struct cv_keyring *kr, char out[CV_KEY_ID_LEN + 1]);

/* cv_keyring_has_kek - 1 if kr holds the KEK with this id. */
int cv_keyring_has_kek(struct cv_keyring *kr, const char *kek_id);

/*
 * cv_keyring_wrap - wrap a 32-byte key under the active KEK with
 * XChaCha20-Poly1305-IETF; associated data = ad (e.g. "blob/<id>") || "/" ||
 * kek_id. Out: kek_id_out[CV_KEY_ID_LEN + 1], wrapped[CV_WRAPPED_BYTES]
 * (nonce || ciphertext || tag). Errors: CV_E_CRYPTO.
 */
cv_status cv_keyring_wrap(struct cv_keyring *kr, const char *ad, const uint8_t key[CV_KEY_BYTES],
                          char kek_id_out[CV_KEY_ID_LEN + 1], uint8_t wrapped[CV_WRAPPED_BYTES]);

/*
 * cv_keyring_unwrap - reverse of cv_keyring_wrap under KEK kek_id; a KEK
 * not loaded yet (made by a rotation in another process) is read from its
 * file. Out: key_out (32 bytes; the caller should hold it in sodium_malloc
 * memory and wipe it). Errors: CV_E_KEY_MISSING (no such key file),
 * CV_E_KEY_INVALID, CV_E_CRYPTO (authentication failed: wrong ad, wrong
 * key, tampered).
 */
cv_status cv_keyring_unwrap(struct cv_keyring *kr, const char *ad, const char *kek_id,
                            const uint8_t wrapped[CV_WRAPPED_BYTES], uint8_t key_out[CV_KEY_BYTES]);

/*
 * cv_keyring_keyed_hash - BLAKE2b-256 of msg keyed with the derived key of
 * `purpose`, domain-separated by `label` (hashed first, NUL-terminated).
 * Out: out[32]. Errors: CV_E_CRYPTO.
 */
cv_status cv_keyring_keyed_hash(struct cv_keyring *kr, enum cv_key_purpose purpose,
                                const char *label, const void *msg, size_t len, uint8_t out[32]);

/*
 * cv_keyring_sign - Ed25519 (RFC 8032, pure, not prehashed) detached
 * signature of msg. Out: sig[64]. Errors: CV_E_CRYPTO.
 */
cv_status cv_keyring_sign(struct cv_keyring *kr, const void *msg, size_t len,
                          uint8_t sig[CV_SIG_BYTES]);

/* cv_keyring_sign_pk - the Ed25519 public key (32 bytes) and the minisign
 * key id (8 random bytes chosen at init, little-endian as minisign writes). */
void cv_keyring_sign_pk(struct cv_keyring *kr, uint8_t pk[CV_SIGN_PK_BYTES],
                        uint8_t keyid[CV_MINISIGN_KEYID]);

/*
 * cv_keyring_refresh - follow a rotation made by another process: re-read
 * meta "active_kek" and load that KEK file if it is not loaded yet. Must
 * not be called while the caller holds a reader connection of db.
 * Errors: CV_E_KEY_MISSING (the named key file is absent), CV_E_KEY_INVALID,
 * CV_E_DB, CV_E_LIMIT (too many KEKs).
 */
cv_status cv_keyring_refresh(struct cv_keyring *kr);

/*
 * cv_keyring_rewrap - unwrap `in` (ad, KEK from_kek) and wrap the same key
 * under KEK to_kek, loading either KEK file on demand. The key never leaves
 * this module. Out: out[CV_WRAPPED_BYTES] (may alias in).
 * Errors: CV_E_KEY_MISSING, CV_E_KEY_INVALID, CV_E_CRYPTO, CV_E_NOMEM.
 */
cv_status cv_keyring_rewrap(struct cv_keyring *kr, const char *ad, const char *from_kek,
                            const uint8_t in[CV_WRAPPED_BYTES], const char *to_kek,
                            uint8_t out[CV_WRAPPED_BYTES]);

/* Figures of one cv_keyring_rotate run. */
struct cv_rotate_stats {
    char new_kek[CV_KEY_ID_LEN + 1];
    char old_kek[CV_KEY_ID_LEN + 1];
    uint64_t root_keys; /* root keys re-wrapped */
    uint64_t blobs;     /* blob data keys re-wrapped */
    uint64_t batches;   /* write transactions used for the blobs */
};

/*
 * cv_keyring_rotate - create a new KEK file, make it active and re-wrap
 * every root key (one transaction, audited "keys.rotate") and then every
 * blob DEK in transactions of `batch` rows (1..10000), audited at the end
 * ("keys.rewrap" with the counts). Blob files are never touched; servers on
 * the same data dir keep serving and follow the switch (cv_keyring_refresh
 * and on-demand KEK loading). who supplies the audit actor fields.
 * progress(done, total, arg) is called after each batch (may be NULL).
 * Out: *stats (may be NULL). Errors: CV_E_ARG, CV_E_IO, CV_E_DB,
 * CV_E_DB_BUSY, CV_E_KEY_MISSING, CV_E_CRYPTO, CV_E_NOMEM.
 */
struct cv_audit_event;
cv_status cv_keyring_rotate(struct cv_keyring *kr, unsigned batch, const struct cv_audit_event *who,
                            void (*progress)(uint64_t done, uint64_t total, void *arg), void *arg,
                            struct cv_rotate_stats *stats);

/*
 * cv_keyring_retire - delete the file of KEK kek_id, inside one write
 * transaction that first checks that it is not the active KEK and that no
 * root key or blob row still references it (audited "keys.retire").
 * Out: *refs = rows still referencing it (set also on CV_E_NOT_EMPTY; may
 * be NULL). Errors: CV_E_ARG (malformed id, or the active KEK),
 * CV_E_NOT_FOUND (no such key file), CV_E_NOT_EMPTY (still referenced),
 * CV_E_IO, CV_E_DB.
 */
cv_status cv_keyring_retire(struct cv_keyring *kr, const char *kek_id,
                            const struct cv_audit_event *who, uint64_t *refs);

#endif
