/*
 * storage/minisign: signatures in the minisign format (https://jedisct1.github.io/minisign/),
 * prehashed variant: algorithm "ED", Ed25519 over BLAKE2b-512(message), and
 * a global signature over (signature || trusted comment). Files it signs
 * verify with Debian's `minisign -Vm FILE -p DATA/keys/casevault.pub`.
 */
#ifndef CASEVAULT_MINISIGN_H
#define CASEVAULT_MINISIGN_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

struct cv_keyring;

/*
 * cv_minisign_sign - sign msg[len] with the keyring's Ed25519 key.
 * In: trusted_comment (one line, no '\n', at most 512 bytes; signed).
 * Out: *sig_text (malloc'd .minisig file contents, NUL-terminated; caller
 * frees). Errors: CV_E_ARG (bad comment), CV_E_CRYPTO, CV_E_NOMEM.
 */
cv_status cv_minisign_sign(struct cv_keyring *kr, const void *msg, size_t len,
                           const char *trusted_comment, char **sig_text);

/*
 * cv_minisign_verify - check sig_text (a .minisig file) over msg[len]
 * against pubkey_text (a minisign .pub file: comment line + base64 line).
 * Accepts "ED" (prehashed) and legacy "Ed" signatures. Out (optional):
 * trusted[cap] receives the trusted comment. Errors: CV_E_ARG (malformed
 * key or signature file), CV_E_SIGNATURE_INVALID (key id differs, or a
 * signature does not verify).
 */
cv_status cv_minisign_verify(const char *pubkey_text, const char *sig_text, const void *msg,
                             size_t len, char *trusted, size_t cap);

/*
 * cv_minisign_pubkey_text - the .pub file text for the keyring's key
 * (what init writes to DATA/keys/casevault.pub). Out: out[cap].
 * Errors: CV_E_LIMIT.
 */
cv_status cv_minisign_pubkey_text(struct cv_keyring *kr, char *out, size_t cap);

#endif
