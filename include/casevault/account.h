/*
 * storage/account: real-name records (DESIGN §2, §7), the accounts whose
 * MFA a case may disassociate.
 *
 * A record says whether the account is personal, enterprise or a
 * sub-account (of a primary), whether its real-name verification is
 * complete, the verified identity (name, ID type and number, enterprise
 * name and USCC, associated mobile), and whether an MFA device is bound.
 * Identity values are validated and canonicalized (storage/validate), then
 * stored only as AEAD ciphertext with a blind index (storage/field), so a
 * case's identity can be compared with the record without decrypting it.
 * Nothing here logs; reasons for refusals never repeat the input.
 */
#ifndef CASEVAULT_ACCOUNT_H
#define CASEVAULT_ACCOUNT_H

#include <stdint.h>

#include <jansson.h>

#include "casevault/field.h"
#include "casevault/status.h"
#include "casevault/validate.h"

struct cv_db;
struct cv_keyring;

#define CV_ACCOUNT_ID_MAX 64

enum cv_account_type {
    CV_ACCOUNT_PERSONAL = 1,
    CV_ACCOUNT_ENTERPRISE = 2,
    CV_ACCOUNT_SUB = 3,
};

/* "personal", "enterprise", "sub" (static); "?" for anything else. */
const char *cv_account_type_str(enum cv_account_type t);

/*
 * A validated real-name record in canonical form. It holds plaintext PII:
 * allocate it with cv_account_record_new (sodium_malloc, guarded) and free it
 * with cv_account_record_free, which wipes it. Empty strings are absent
 * fields.
 */
struct cv_account_record {
    char account_id[CV_ACCOUNT_ID_MAX + 1];
    enum cv_account_type type;
    char primary_account_id[CV_ACCOUNT_ID_MAX + 1];
    int real_name_verified;
    int mfa_bound;
    char id_type[16]; /* "cn_resident_id" | "passport" | "" */
    char name[CV_NAME_MAX_BYTES];
    char id_number[CV_ID_NUMBER_MAX + 1];
    char enterprise_name[CV_NAME_MAX_BYTES];
    char uscc[CV_USCC_LEN + 1];
    char mobile[CV_MOBILE_LEN + 1];
};

/* cv_account_record_new - zeroed record in sodium_malloc memory, or NULL. */
struct cv_account_record *cv_account_record_new(void);

/* cv_account_record_free - wipe and free. NULL is a no-op. */
void cv_account_record_free(struct cv_account_record *r);

/*
 * cv_account_record_from_json - validate one record (the JSON object of
 * schemas/real-name-record.schema.json) into *out.
 * In: j; path_account_id (the {account_id} of PUT /v1/accounts/{id}, or NULL
 * for an import line: then the object's account_id is required; otherwise it
 * is optional and must be equal). Unknown members are refused.
 * Out: *out filled on success. On CV_E_INVALID_FIELD, *field names the
 * offending member and *why gives a fixed reason (both static strings).
 * Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_account_record_from_json(json_t *j, const char *path_account_id,
                                      struct cv_account_record *out, const char **field,
                                      const char **why);

enum cv_upsert_result {
    CV_UPSERT_CREATED = 1,
    CV_UPSERT_UPDATED = 2,
    CV_UPSERT_UNCHANGED = 3, /* same record already stored: nothing written */
};

/* cv_account_upsert_str - "created", "updated", "unchanged" (static strings;
 * the audit entry's and the API's `result`); "?" for anything else. */
const char *cv_account_upsert_str(enum cv_upsert_result r);

/*
 * cv_account_upsert - insert or replace a record inside the caller's write
 * transaction. Idempotent: storing an equal record (compared through the
 * blind indexes) writes nothing and reports CV_UPSERT_UNCHANGED. The caller
 * appends the audit entry (account.upsert) unless unchanged.
 * Out: *result. Errors: CV_E_DB, CV_E_CRYPTO, CV_E_NOMEM.
 */
cv_status cv_account_upsert(struct cv_db *db, struct cv_keyring *kr,
                            const struct cv_account_record *r, enum cv_upsert_result *result);

/* What case creation needs of a record, read without decrypting anything. */
struct cv_account_info {
    enum cv_account_type type;
    int real_name_verified;
    int mfa_bound;
    char id_type[16];
    /* blind indexes ("accounts" table keys); has_* is 0 when the field is absent */
    int has_name, has_id_number, has_enterprise_name, has_uscc, has_mobile;
    uint8_t name_bi[CV_BLIND_BYTES];
    uint8_t id_number_bi[CV_BLIND_BYTES];
    uint8_t enterprise_name_bi[CV_BLIND_BYTES];
    uint8_t uscc_bi[CV_BLIND_BYTES];
    uint8_t mobile_bi[CV_BLIND_BYTES];
};

/*
 * cv_account_get - the record of account_id, read on the writer connection
 * inside the caller's write transaction. Out: *out.
 * Errors: CV_E_ACCOUNT_NOT_FOUND, CV_E_DB.
 */
cv_status cv_account_get(struct cv_db *db, const char *account_id, struct cv_account_info *out);

/*
 * cv_account_blind - blind index of a canonical value of accounts.<column>
 * (name, id_number, enterprise_name, uscc, mobile), for comparisons with
 * cv_account_info. Errors: CV_E_CRYPTO, CV_E_INVALID_FIELD.
 */
cv_status cv_account_blind(struct cv_keyring *kr, const char *column, const char *value,
                           uint8_t out[CV_BLIND_BYTES]);

/*
 * cv_account_set_mfa_bound - set the record's mfa_bound inside the caller's
 * write transaction (approval of a case unbinds). Errors:
 * CV_E_ACCOUNT_NOT_FOUND, CV_E_DB.
 */
cv_status cv_account_set_mfa_bound(struct cv_db *db, const char *account_id, int bound);

#endif
