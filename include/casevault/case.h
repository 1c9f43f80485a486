/*
 * storage/case: MFA disassociation cases, their state machine and their
 * documents table (DESIGN §2, §7).
 *
 * A case is opened for an account whose real-name record is verified and
 * whose applicant matches that record; it then moves through one transition
 * table (case.c). Every transition function runs inside the caller's write
 * transaction (cv_db_begin .. cv_db_commit) and appends its own audit entry
 * there, so a state change and its entry commit or fail together. Identity
 * fields are sealed per column (AD "cases/<column>/<case id>"); nothing here
 * logs or returns PII except cv_case_identity_read, which audits the read.
 */
#ifndef CASEVAULT_CASE_H
#define CASEVAULT_CASE_H

#include <stdint.h>

#include <jansson.h>

#include "casevault/account.h"
#include "casevault/status.h"
#include "casevault/token.h"
#include "casevault/util.h"
#include "casevault/validate.h"

struct cv_db;
struct cv_keyring;

enum cv_case_status {
    CV_CASE_DRAFT = 1,
    CV_CASE_SUBMITTED,
    CV_CASE_NEEDS_RESUBMISSION,
    CV_CASE_APPROVAL_PENDING,
    CV_CASE_APPROVED,
    CV_CASE_REJECTED,
    CV_CASE_CLOSED,
};

/* "draft", "submitted", ... (static); "?" for anything else. */
const char *cv_case_status_str(enum cv_case_status s);
/* Errors: CV_E_ARG for an unknown name. */
cv_status cv_case_status_parse(const char *name, enum cv_case_status *out);

/* Document kinds (DESIGN §7). */
#define CV_KIND_ID_IN_HAND       "id_in_hand"
#define CV_KIND_BUSINESS_LICENSE "business_license"
#define CV_KINDS_MAX             2
#define CV_KIND_LIST_MAX         64 /* bytes of a comma list of kinds, NUL included */

/*
 * cv_case_required_kinds - the kinds submit requires, in a fixed order:
 * personal {id_in_hand}; enterprise {business_license, id_in_hand}.
 * In: applicant_type "personal" | "enterprise". Out: *n. Returns a static
 * array, or NULL (and *n = 0) for another type.
 */
const char *const *cv_case_required_kinds(const char *applicant_type, unsigned *n);

/* cv_case_uploads_allowed - 1 in draft and needs_resubmission. */
int cv_case_uploads_allowed(enum cv_case_status s);

/* Who acts, for the audit entry (all strings borrowed). */
struct cv_case_actor {
    const char *id;   /* token id, "console", "cli" or "system" */
    const char *role; /* "applicant", "reviewer", ..., "system" */
    const char *request_id;
    const char *client;
};

/*
 * A validated case application (POST /v1/cases body) in canonical form.
 * Holds plaintext PII: cv_case_application_new / _free (sodium_malloc,
 * wiped on free).
 */
struct cv_case_application {
    char account_id[CV_ACCOUNT_ID_MAX + 1];
    char applicant_type[16]; /* "personal" | "enterprise" */
    char name[CV_NAME_MAX_BYTES];
    char id_type[16];
    char id_number[CV_ID_NUMBER_MAX + 1];
    char mobile[CV_MOBILE_LEN + 1];
    char contact_mobile[CV_MOBILE_LEN + 1];
    char enterprise_name[CV_NAME_MAX_BYTES];
    char uscc[CV_USCC_LEN + 1]; /* optional for enterprise cases */
};

struct cv_case_application *cv_case_application_new(void);
void cv_case_application_free(struct cv_case_application *a);

/*
 * cv_case_application_from_json - validate a POST /v1/cases body
 * (schemas/case-create.schema.json). Unknown members are refused.
 * Out: *out on success; on CV_E_INVALID_FIELD *field / *why (static).
 * Errors: CV_E_INVALID_FIELD; CV_E_ACCOUNT_TYPE_MISMATCH when enterprise
 * members (enterprise_name, uscc) come with applicant_type "personal".
 */
cv_status cv_case_application_from_json(json_t *j, struct cv_case_application *out,
                                        const char **field, const char **why);

struct cv_case_policy {
    int64_t now_ms;
    int64_t token_ttl_ms;      /* lifetime of the case token (and of an untouched draft) */
    unsigned max_failed;       /* failed identity checks allowed per window */
    int64_t failure_window_ms; /* the rate-limit window (an hour) */
};

/*
 * cv_case_open - the refusals of DESIGN §7, then a new draft case and its
 * case token, inside the caller's write transaction. In order:
 * CV_E_ACCOUNT_NOT_FOUND; CV_E_SUB_ACCOUNT; CV_E_REAL_NAME_UNVERIFIED;
 * CV_E_TOO_MANY_ATTEMPTS (max_failed failures within the window; then
 * *retry_after_s says when the oldest counted failure leaves it);
 * CV_E_ACCOUNT_TYPE_MISMATCH (applicant_type differs from the record type)
 * and CV_E_IDENTITY_MISMATCH (any identity field differs; compared through
 * blind indexes, never saying which); CV_E_MFA_NOT_BOUND; CV_E_CASE_OPEN
 * (an open case exists; a draft older than token_ttl_ms is closed first as
 * case.expire).
 * On the two mismatch statuses the failure and its audit entry
 * (case.identity_check, outcome "refused") ARE written: the caller must
 * COMMIT, not roll back, then answer the refusal. On any other error the
 * caller rolls back. On success the account's failures are cleared, the
 * case (status draft) and an applicant token bound to it and expiring at
 * now + token_ttl_ms are created, and case.create is appended.
 * Out: case_id, token (shown once: the caller wipes it), *retry_after_s.
 * Errors: as above, CV_E_DB, CV_E_CRYPTO, CV_E_NOMEM.
 */
cv_status cv_case_open(struct cv_db *db, struct cv_keyring *kr,
                       const struct cv_case_application *app, const struct cv_case_policy *pol,
                       const struct cv_case_actor *actor, char case_id[CV_ULID_LEN + 1],
                       char token[CV_TOKEN_TEXT_LEN + 1], int64_t *retry_after_s);

/* A case without its PII. */
struct cv_case_info {
    char id[CV_ULID_LEN + 1];
    char account_id[CV_ACCOUNT_ID_MAX + 1];
    char applicant_type[16];
    enum cv_case_status status;
    char id_type[16];
    int64_t round;
    char resubmit_kinds[CV_KIND_LIST_MAX]; /* comma list, "" if none */
    char first_approver[CV_ULID_LEN + 1];  /* token id or "" */
    char decision[16];                     /* "approve" | "reject" | "resubmit" | "" */
    char decided_by[CV_ULID_LEN + 1];
    char created_at[CV_TIME_LEN + 1];
    char updated_at[CV_TIME_LEN + 1];
};

/*
 * cv_case_get - read a case. in_txn = 1 reads on the writer connection
 * (inside the caller's write transaction), 0 on a reader.
 * Errors: CV_E_NOT_FOUND, CV_E_DB.
 */
cv_status cv_case_get(struct cv_db *db, int in_txn, const char *case_id, struct cv_case_info *out);

/*
 * cv_case_list - cases newest first (by ULID), optionally with one status,
 * strictly older than `cursor` (a case id, or NULL for the newest), at most
 * limit (1..200). fn gets each (non-zero stops). Out: next_cursor (id of the
 * last case given when the page was full and more may follow, else "").
 * Errors: CV_E_ARG (limit), CV_E_DB.
 */
cv_status cv_case_list(struct cv_db *db, const enum cv_case_status *status, const char *cursor,
                       unsigned limit, int (*fn)(const struct cv_case_info *c, void *arg),
                       void *arg, char next_cursor[CV_ULID_LEN + 1]);

/* Decrypted identity of a case (PII): wipe with sodium_memzero after use. */
struct cv_case_identity {
    char name[CV_NAME_MAX_BYTES];
    char id_number[CV_ID_NUMBER_MAX + 1];
    char mobile[CV_MOBILE_LEN + 1];
    char contact_mobile[CV_MOBILE_LEN + 1];
    char enterprise_name[CV_NAME_MAX_BYTES];
    char uscc[CV_USCC_LEN + 1];
};

/*
 * cv_case_identity_read - decrypt a case's identity fields and append
 * case.view (same transaction). Inside the caller's write transaction.
 * Out: *out. Errors: CV_E_NOT_FOUND, CV_E_CRYPTO, CV_E_DB.
 */
cv_status cv_case_identity_read(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                                const struct cv_case_actor *actor, struct cv_case_identity *out);

/* A stored document, latest of its kind. */
struct cv_document_info {
    char id[CV_ULID_LEN + 1];
    char kind[20];
    char source_format[16];
    int64_t original_size;
    char original_sha256[65];
    char normalized_sha256[65];
    char original_blob_id[80];
    char normalized_blob_id[80];
    int64_t width, height;
    int orientation_applied;
    int64_t round;
    char created_at[CV_TIME_LEN + 1];
};

/* What the upload code hands to cv_case_document_add. */
struct cv_document_new {
    const char *kind;             /* "id_in_hand" | "business_license" */
    const char *original_blob_id; /* blob ids, already durable in the blob store */
    const char *normalized_blob_id;
    const char *source_format;     /* "jpeg", "png", "heif", ... (from the bytes) */
    int64_t original_size;         /* bytes */
    const char *original_sha256;   /* 64 lowercase hex */
    const char *normalized_sha256; /* 64 lowercase hex */
    int64_t width, height;         /* normalized image, pixels */
    int orientation_applied;       /* EXIF orientation 1-8 that was applied */
    const char *file_name;         /* client file name (sealed), or NULL */
};

/*
 * cv_case_document_add - insert a document row inside the caller's write
 * transaction (the one that renames the blobs into place). Checks that the
 * case exists (CV_E_NOT_FOUND), accepts uploads (draft, or
 * needs_resubmission for a kind the reviewer asked for again; else
 * CV_E_INVALID_TRANSITION) and needs the kind (CV_E_INVALID_FIELD). Earlier
 * documents of the kind are kept and marked superseded; the new one is the
 * latest. It appends NO audit entry: the caller appends document.upload
 * (with superseded_id when not "") in the same transaction.
 * Out: doc_id, superseded_id ("" if none). Errors: as above, CV_E_ARG
 * (malformed hashes or sizes), CV_E_DB, CV_E_CRYPTO.
 */
cv_status cv_case_document_add(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                               const struct cv_document_new *doc, char doc_id[CV_ULID_LEN + 1],
                               char superseded_id[CV_ULID_LEN + 1]);

/*
 * cv_case_document_latest - the latest (not superseded) document of a kind.
 * in_txn as for cv_case_get. Errors: CV_E_NOT_FOUND, CV_E_DB.
 */
cv_status cv_case_document_latest(struct cv_db *db, int in_txn, const char *case_id,
                                  const char *kind, struct cv_document_info *out);

/*
 * cv_case_document_get - document doc_id of case case_id (superseded ones
 * too). in_txn as for cv_case_get. Errors: CV_E_NOT_FOUND (no such
 * document in that case), CV_E_DB.
 */
cv_status cv_case_document_get(struct cv_db *db, int in_txn, const char *case_id,
                               const char *doc_id, struct cv_document_info *out);

/*
 * cv_case_submit - draft | needs_resubmission -> submitted (case.submit).
 * Every required kind needs a document; after a resubmission request, each
 * kind asked for needs one uploaded in the current round.
 * Out on CV_E_MISSING_DOCUMENTS: missing (comma list of kinds).
 * Errors: CV_E_NOT_FOUND, CV_E_INVALID_TRANSITION, CV_E_MISSING_DOCUMENTS,
 * CV_E_DB.
 */
cv_status cv_case_submit(struct cv_db *db, const char *case_id, const struct cv_case_actor *actor,
                         char missing[CV_KIND_LIST_MAX]);

enum cv_decision {
    CV_DECISION_APPROVE = 1,
    CV_DECISION_REJECT,
    CV_DECISION_RESUBMIT,
};

/*
 * cv_case_decide - a reviewer's decision (case.decide), inside the caller's
 * write transaction:
 *   approve: submitted -> approved, or with four_eyes submitted ->
 *     approval_pending and approval_pending -> approved by a different
 *     actor id (the same one: CV_E_INVALID_TRANSITION). Reaching approved
 *     sets the account's mfa_bound to false and appends mfa.unbind.
 *   reject: submitted | approval_pending -> rejected.
 *   resubmit: submitted | approval_pending -> needs_resubmission, reopening
 *     uploads for `kinds` (comma list, each required by the case). The
 *     case's applicant tokens that are not revoked are extended to expire
 *     no earlier than reopen_until_ms (ms since the epoch; 0 = leave them),
 *     so the applicant can still upload after a long review.
 * reason (UTF-8, sealed) is required for reject and resubmit.
 * Out: *new_status. Errors: CV_E_NOT_FOUND, CV_E_INVALID_TRANSITION,
 * CV_E_INVALID_FIELD (reason or kinds), CV_E_DB, CV_E_CRYPTO.
 */
cv_status cv_case_decide(struct cv_db *db, struct cv_keyring *kr, const char *case_id,
                         enum cv_decision decision, const char *reason, const char *kinds,
                         int four_eyes, int64_t reopen_until_ms, const struct cv_case_actor *actor,
                         enum cv_case_status *new_status);

/*
 * cv_case_close - approved | rejected | needs_resubmission (abandoned by the
 * applicant) -> closed (case.close).
 * Errors: CV_E_NOT_FOUND, CV_E_INVALID_TRANSITION, CV_E_DB.
 */
cv_status cv_case_close(struct cv_db *db, const char *case_id, const struct cv_case_actor *actor);

#endif
