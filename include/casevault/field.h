/*
 * storage/field: encryption of PII columns and their blind indexes
 * (DESIGN §4).
 *
 * A value is sealed with XChaCha20-Poly1305-IETF under a per-column key
 * (BLAKE2b keyed with the keyring's CV_KEY_FIELD key over "table.column"),
 * random 24-byte nonce, associated data "table/column/row_id", so a
 * ciphertext moved to another row or column fails to open. Stored form:
 * nonce || ciphertext || tag (len + 40 bytes).
 *
 * A blind index is BLAKE2b-256 keyed with a per-column key derived from
 * CV_KEY_BLIND, over the value normalized by its kind, so equal values
 * match without decrypting. It leaks equality; use it only where lookups
 * or equality checks need it.
 */
#ifndef CASEVAULT_FIELD_H
#define CASEVAULT_FIELD_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

struct cv_keyring;

#define CV_FIELD_OVERHEAD 40 /* bytes: nonce 24 + tag 16 */
#define CV_BLIND_BYTES    32

enum cv_field_kind {
    CV_FIELD_EXACT,     /* bytes as given */
    CV_FIELD_DIGITS,    /* phone numbers: NFKC (full-width digits become ASCII), then digits
                           only; a +86/0086 prefix in front of 11 digits is removed */
    CV_FIELD_ID_NUMBER, /* ID numbers, USCC: NFKC, whitespace and dashes removed, letters
                           uppercased (the check character X) */
    CV_FIELD_NAME,      /* names: Unicode NFC, surrounding whitespace (ASCII and Unicode Zs,
                           e.g. U+3000) trimmed, inner runs collapsed to one space; case kept */
};

/*
 * cv_field_normalize - normalized form of `in` for `kind` into out[cap]
 * (NUL-terminated). Errors: CV_E_INVALID_FIELD (not valid UTF-8, or empty
 * after normalization), CV_E_LIMIT (does not fit).
 */
cv_status cv_field_normalize(enum cv_field_kind kind, const char *in, char *out, size_t cap);

/*
 * cv_field_seal - encrypt plain[len] for (table, column, row_id).
 * Out: *out (malloc'd, len + CV_FIELD_OVERHEAD bytes, caller frees),
 * *out_len. table and column are [A-Za-z0-9_]{1,64}; row_id is 1..64 bytes
 * without '/'. Errors: CV_E_ARG (bad names), CV_E_NOMEM, CV_E_CRYPTO.
 */
cv_status cv_field_seal(struct cv_keyring *kr, const char *table, const char *column,
                        const char *row_id, const void *plain, size_t len, uint8_t **out,
                        size_t *out_len);

/*
 * cv_field_open - decrypt what cv_field_seal made for the same (table,
 * column, row_id). Out: *plain (malloc'd, NUL-terminated; caller wipes with
 * sodium_memzero and frees), *plain_len (without the NUL).
 * Errors: CV_E_ARG (bad names, as for seal), CV_E_CRYPTO (wrong
 * row/column/key, or tampered), CV_E_NOMEM.
 */
cv_status cv_field_open(struct cv_keyring *kr, const char *table, const char *column,
                        const char *row_id, const uint8_t *sealed, size_t len, char **plain,
                        size_t *plain_len);

/*
 * cv_field_blind_index - keyed BLAKE2b-256 of the value normalized by kind,
 * keyed per (table, column). Out: out[32]. Errors: CV_E_ARG (bad names),
 * as cv_field_normalize, CV_E_CRYPTO.
 */
cv_status cv_field_blind_index(struct cv_keyring *kr, const char *table, const char *column,
                               enum cv_field_kind kind, const char *value,
                               uint8_t out[CV_BLIND_BYTES]);

#endif
