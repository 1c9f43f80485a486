/*
 * storage/token: bearer tokens and roles.
 *
 * A token is 32 random bytes shown once as base64url (43 characters). Only
 * its keyed BLAKE2b-256 hash (keyring purpose CV_KEY_TOKEN) is stored, so a
 * copy of the database does not let anyone authenticate. Staff tokens carry a
 * role; applicant tokens are bound to one case and expire.
 */
#ifndef CASEVAULT_TOKEN_H
#define CASEVAULT_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"
#include "casevault/util.h"

struct cv_db;
struct cv_keyring;

enum cv_role {
    CV_ROLE_NONE = 0,
    CV_ROLE_APPLICANT = 1u << 0,
    CV_ROLE_ADMIN = 1u << 1,
    CV_ROLE_REVIEWER = 1u << 2,
    CV_ROLE_AUDITOR = 1u << 3,
    CV_ROLE_BACKUP = 1u << 4,
};
#define CV_ROLE_STAFF (CV_ROLE_ADMIN | CV_ROLE_REVIEWER | CV_ROLE_AUDITOR | CV_ROLE_BACKUP)

#define CV_TOKEN_BYTES    32
#define CV_TOKEN_TEXT_LEN 43 /* base64url characters of 32 bytes */
#define CV_TOKEN_NAME_MAX 64 /* bytes of an operator token name */

/* Who a request is: filled by cv_token_authenticate. */
struct cv_principal {
    enum cv_role role;
    char token_id[CV_ULID_LEN + 1];
    char case_id[CV_ULID_LEN + 1]; /* applicant tokens only, else "" */
    char name[CV_TOKEN_NAME_MAX + 1];
};

/* cv_role_str - "admin", "reviewer", ... ("none" for CV_ROLE_NONE). Static. */
const char *cv_role_str(enum cv_role role);

/* cv_role_parse - role by name. Errors: CV_E_ARG for an unknown name. */
cv_status cv_role_parse(const char *name, enum cv_role *out);

/*
 * cv_token_create - create a token inside the caller's write transaction.
 * In: role (one bit); name (1..64 bytes of [A-Za-z0-9._@-]); case_id (ULID,
 * applicant tokens only, else NULL); expires_ms (ms since epoch, 0 = never).
 * Out: text[CV_TOKEN_TEXT_LEN + 1] (the secret, shown once: the caller must
 * wipe it after use) and id[CV_ULID_LEN + 1].
 * Errors: CV_E_ARG (bad role/name/case), CV_E_DB, CV_E_CRYPTO.
 */
cv_status cv_token_create(struct cv_db *db, struct cv_keyring *kr, enum cv_role role,
                          const char *name, const char *case_id, int64_t expires_ms,
                          char text[CV_TOKEN_TEXT_LEN + 1], char id[CV_ULID_LEN + 1]);

/*
 * cv_token_authenticate - look up a presented token (base64url text).
 * Out: *who on success. Errors: CV_E_UNAUTHORIZED (malformed, unknown,
 * revoked or expired: one answer for all, compared via the keyed hash in an
 * indexed lookup, so no byte-by-byte timing oracle), CV_E_DB.
 */
cv_status cv_token_authenticate(struct cv_db *db, struct cv_keyring *kr, const char *text,
                                struct cv_principal *who);

/*
 * cv_token_revoke - mark a token revoked (inside a write transaction).
 * Errors: CV_E_NOT_FOUND (no such id or already revoked), CV_E_DB.
 */
cv_status cv_token_revoke(struct cv_db *db, const char *id);

/* One row of cv_token_list. Strings are valid only during the callback. */
struct cv_token_info {
    const char *id;
    const char *role;
    const char *name;
    const char *case_id; /* NULL for staff */
    const char *created_at;
    const char *revoked_at; /* NULL if active */
    int64_t expires_ms;     /* 0 = never */
};

/*
 * cv_token_list - call fn for every token, oldest first; applicant tokens
 * only if include_applicants. fn returning non-zero stops the walk.
 * Errors: CV_E_DB.
 */
cv_status cv_token_list(struct cv_db *db, int include_applicants,
                        int (*fn)(const struct cv_token_info *t, void *arg), void *arg);

#endif
