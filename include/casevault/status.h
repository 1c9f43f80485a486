/*
 * casevault status codes: the one error vocabulary of every module.
 *
 * Every public function returns a cv_status. CV_OK is 0; everything else is a
 * failure with a fixed English message (cv_status_str) and, for the server, a
 * fixed HTTP status and RFC 9457 problem "code" (cv_status_http). Messages and
 * codes never carry request data, PII, tokens or keys.
 */
#ifndef CASEVAULT_STATUS_H
#define CASEVAULT_STATUS_H

typedef enum cv_status {
    CV_OK = 0,
    /* generic */
    CV_E_INTERNAL,
    CV_E_NOMEM,
    CV_E_IO,
    CV_E_DB,
    CV_E_DB_BUSY,
    CV_E_CRYPTO,
    CV_E_ARG,
    CV_E_CONFIG,
    CV_E_USAGE,
    CV_E_EXISTS,
    CV_E_NOT_FOUND,
    CV_E_NOT_INITIALIZED,
    CV_E_NOT_EMPTY,
    CV_E_LIMIT,
    CV_E_BUSY,
    CV_E_SHUTDOWN,
    /* HTTP and input */
    CV_E_UNAUTHORIZED,
    CV_E_FORBIDDEN,
    CV_E_METHOD_NOT_ALLOWED,
    CV_E_PAYLOAD_TOO_LARGE,
    CV_E_HEADERS_TOO_LARGE,
    CV_E_BAD_REQUEST,
    CV_E_MALFORMED_JSON,
    CV_E_INVALID_FIELD,
    CV_E_TIMEOUT,
    /* domain: cases and real-name records */
    CV_E_ACCOUNT_NOT_FOUND,
    CV_E_REAL_NAME_UNVERIFIED,
    CV_E_SUB_ACCOUNT,
    CV_E_IDENTITY_MISMATCH,
    CV_E_ACCOUNT_TYPE_MISMATCH,
    CV_E_TOO_MANY_ATTEMPTS,
    CV_E_CASE_OPEN,
    CV_E_MFA_NOT_BOUND,
    CV_E_INVALID_TRANSITION,
    CV_E_MISSING_DOCUMENTS,
    /* intake */
    CV_E_UNSUPPORTED_MEDIA_TYPE,
    CV_E_IMAGE_TOO_LARGE,
    CV_E_IMAGE_TOO_SMALL,
    CV_E_IMAGE_UNDECODABLE,
    CV_E_IMAGE_TRUNCATED,
    CV_E_MALFORMED_MULTIPART,
    /* keys and blobs */
    CV_E_KEY_MISSING,
    CV_E_KEY_INVALID,
    CV_E_BLOB_HEADER,
    CV_E_BLOB_TRUNCATED,
    CV_E_BLOB_TRAILING,
    CV_E_BLOB_SWAPPED,
    CV_E_BLOB_AUTH,
    CV_E_BLOB_SIZE,
    CV_E_BLOB_HASH,
    /* audit log */
    CV_E_PROOF_INVALID,
    CV_E_SIGNATURE_INVALID,
    CV_E_AUDIT_MISMATCH,
    CV_E_RANGE,
    /* archives, backups */
    CV_E_UNSAFE_ARCHIVE_ENTRY,
    CV_E_MANIFEST_MISMATCH,
    CV_E_ARCHIVE_FORMAT,
    CV_E_BACKUP_CHAIN,
    /* uploads */
    CV_E_EMPTY_FILE,
} cv_status;

/*
 * cv_status_str - fixed, human-readable message for a status.
 * In: any cv_status value. Out: a static string (never NULL, never freed).
 * Unknown values give "unknown status".
 */
const char *cv_status_str(cv_status st);

/*
 * cv_status_http - how the server answers a status (RFC 9457 problem+json).
 * In: st. Out: *http_status (e.g. 404) and *code (stable snake_case problem
 * code of DESIGN §7, static string). Both pointers must be non-NULL.
 * CV_OK maps to 200/"ok". Internal failures map to 500/"internal".
 */
void cv_status_http(cv_status st, int *http_status, const char **code);

#endif
