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
 * unwrap the field root key from db. Out: *out, free with cv_keyring_free.
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
 * cv_keyring_unwrap - reverse of cv_keyring_wrap under KEK kek_id.
 * Out: key_out (32 bytes; the caller should hold it in sodium_malloc memory
 * and wipe it). Errors: CV_E_KEY_MISSING (kek_id not loaded), CV_E_CRYPTO
 * (authentication failed: wrong ad, wrong key, tampered).
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
 * cv_keyring_derive - copy the derived key of `purpose` (crypto_kdf from the
 * field root key, context "cvfield_") into out (caller wipes it).
 */
cv_status cv_keyring_derive(struct cv_keyring *kr, enum cv_key_purpose purpose,
                            uint8_t out[CV_KEY_BYTES]);

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

#endif
