/*
 * Message and HTTP mapping tables for cv_status. Both switches have no
 * default so that -Wswitch-enum flags a status added without its message.
 */
#include "casevault/status.h"

const char *cv_status_str(cv_status st)
{
    switch (st) {
    case CV_OK: return "success";
    case CV_E_INTERNAL: return "internal error";
    case CV_E_NOMEM: return "out of memory";
    case CV_E_IO: return "input/output error";
    case CV_E_DB: return "database error";
    case CV_E_DB_BUSY: return "database busy";
    case CV_E_CRYPTO: return "cryptographic operation failed";
    case CV_E_ARG: return "invalid argument";
    case CV_E_CONFIG: return "invalid configuration";
    case CV_E_USAGE: return "invalid command line";
    case CV_E_EXISTS: return "already exists";
    case CV_E_NOT_FOUND: return "not found";
    case CV_E_NOT_INITIALIZED: return "data directory is not initialized";
    case CV_E_NOT_EMPTY: return "target is not empty";
    case CV_E_LIMIT: return "limit exceeded";
    case CV_E_BUSY: return "server busy, retry later";
    case CV_E_SHUTDOWN: return "server is shutting down";
    case CV_E_UNAUTHORIZED: return "missing or invalid bearer token";
    case CV_E_FORBIDDEN: return "this token's role may not do this";
    case CV_E_METHOD_NOT_ALLOWED: return "method not allowed on this resource";
    case CV_E_PAYLOAD_TOO_LARGE: return "request body too large";
    case CV_E_HEADERS_TOO_LARGE: return "request header fields too large";
    case CV_E_BAD_REQUEST: return "malformed request";
    case CV_E_MALFORMED_JSON: return "request body is not valid JSON";
    case CV_E_INVALID_FIELD: return "invalid field";
    case CV_E_TIMEOUT: return "request deadline exceeded";
    case CV_E_ACCOUNT_NOT_FOUND: return "account not found";
    case CV_E_REAL_NAME_UNVERIFIED:
        return "MFA disassociation cannot be performed until the account's real-name "
               "verification is complete";
    case CV_E_SUB_ACCOUNT:
        return "a sub-account cannot open a case: ask the primary account to disassociate the "
               "MFA device and associate it again";
    case CV_E_IDENTITY_MISMATCH:
        return "the details given do not match the account's real-name record";
    case CV_E_ACCOUNT_TYPE_MISMATCH:
        return "the applicant type does not match the account's real-name record";
    case CV_E_TOO_MANY_ATTEMPTS: return "too many failed attempts for this account";
    case CV_E_CASE_OPEN: return "this account already has an open case";
    case CV_E_MFA_NOT_BOUND: return "this account has no MFA device bound";
    case CV_E_INVALID_TRANSITION: return "the case is not in a state that allows this";
    case CV_E_MISSING_DOCUMENTS: return "required documents are missing";
    case CV_E_UNSUPPORTED_MEDIA_TYPE:
        return "unsupported file type: upload a JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP or "
               "GIF image";
    case CV_E_IMAGE_TOO_LARGE: return "image dimensions exceed the limit";
    case CV_E_IMAGE_TOO_SMALL: return "image is too small to be legible";
    case CV_E_IMAGE_UNDECODABLE: return "the image could not be decoded";
    case CV_E_IMAGE_TRUNCATED: return "the image is truncated: please upload the file again";
    case CV_E_MALFORMED_MULTIPART: return "malformed multipart/form-data body";
    case CV_E_KEY_MISSING: return "a required key is missing";
    case CV_E_KEY_INVALID: return "a key file is invalid";
    case CV_E_BLOB_HEADER: return "blob header is invalid";
    case CV_E_BLOB_TRUNCATED: return "blob is truncated";
    case CV_E_BLOB_TRAILING: return "blob has trailing data";
    case CV_E_BLOB_SWAPPED: return "blob file belongs to another blob";
    case CV_E_BLOB_AUTH: return "blob failed authentication (tampered or wrong key)";
    case CV_E_BLOB_SIZE: return "blob size differs from its record";
    case CV_E_BLOB_HASH: return "blob hash differs from its record";
    case CV_E_PROOF_INVALID: return "proof does not verify";
    case CV_E_SIGNATURE_INVALID: return "signature does not verify";
    case CV_E_AUDIT_MISMATCH: return "audit log does not match its hashes";
    case CV_E_RANGE: return "value out of range";
    case CV_E_UNSAFE_ARCHIVE_ENTRY: return "archive holds an unsafe entry";
    case CV_E_MANIFEST_MISMATCH: return "archive content does not match its manifest";
    case CV_E_ARCHIVE_FORMAT: return "archive format error";
    case CV_E_BACKUP_CHAIN: return "backups are not a consecutive chain";
    case CV_E_EMPTY_FILE: return "the uploaded file is empty";
    }
    return "unknown status";
}

void cv_status_http(cv_status st, int *http_status, const char **code)
{
    int h = 500;
    const char *c = "internal";
    switch (st) {
    case CV_OK:
        h = 200;
        c = "ok";
        break;
    case CV_E_INTERNAL:
    case CV_E_NOMEM:
    case CV_E_IO:
    case CV_E_DB:
    case CV_E_CRYPTO:
    case CV_E_ARG:
    case CV_E_CONFIG:
    case CV_E_USAGE:
    case CV_E_NOT_INITIALIZED:
    case CV_E_KEY_MISSING:
    case CV_E_KEY_INVALID:
    case CV_E_BLOB_HEADER:
    case CV_E_BLOB_TRUNCATED:
    case CV_E_BLOB_TRAILING:
    case CV_E_BLOB_SWAPPED:
    case CV_E_BLOB_AUTH:
    case CV_E_BLOB_SIZE:
    case CV_E_BLOB_HASH:
    case CV_E_AUDIT_MISMATCH:
        h = 500;
        c = "internal";
        break;
    case CV_E_DB_BUSY:
    case CV_E_BUSY:
        h = 503;
        c = "busy";
        break;
    case CV_E_SHUTDOWN:
        h = 503;
        c = "shutting_down";
        break;
    case CV_E_EXISTS:
        h = 409;
        c = "conflict";
        break;
    case CV_E_NOT_FOUND:
        h = 404;
        c = "not_found";
        break;
    case CV_E_NOT_EMPTY:
        h = 409;
        c = "not_empty";
        break;
    case CV_E_LIMIT:
        h = 400;
        c = "limit_exceeded";
        break;
    case CV_E_UNAUTHORIZED:
        h = 401;
        c = "unauthorized";
        break;
    case CV_E_FORBIDDEN:
        h = 403;
        c = "forbidden";
        break;
    case CV_E_METHOD_NOT_ALLOWED:
        h = 405;
        c = "method_not_allowed";
        break;
    case CV_E_PAYLOAD_TOO_LARGE:
        h = 413;
        c = "payload_too_large";
        break;
    case CV_E_HEADERS_TOO_LARGE:
        h = 431;
        c = "headers_too_large";
        break;
    case CV_E_BAD_REQUEST:
        h = 400;
        c = "bad_request";
        break;
    case CV_E_MALFORMED_JSON:
        h = 400;
        c = "malformed_json";
        break;
    case CV_E_INVALID_FIELD:
        h = 400;
        c = "invalid_field";
        break;
    case CV_E_TIMEOUT:
        h = 408;
        c = "request_timeout";
        break;
    case CV_E_ACCOUNT_NOT_FOUND:
        h = 404;
        c = "account_not_found";
        break;
    case CV_E_REAL_NAME_UNVERIFIED:
        h = 409;
        c = "real_name_unverified";
        break;
    case CV_E_SUB_ACCOUNT:
        h = 422;
        c = "sub_account";
        break;
    case CV_E_IDENTITY_MISMATCH:
        h = 422;
        c = "identity_mismatch";
        break;
    case CV_E_ACCOUNT_TYPE_MISMATCH:
        h = 422;
        c = "identity_mismatch";
        break;
    case CV_E_TOO_MANY_ATTEMPTS:
        h = 429;
        c = "too_many_attempts";
        break;
    case CV_E_CASE_OPEN:
        h = 409;
        c = "case_open";
        break;
    case CV_E_MFA_NOT_BOUND:
        h = 409;
        c = "mfa_not_bound";
        break;
    case CV_E_INVALID_TRANSITION:
        h = 409;
        c = "invalid_transition";
        break;
    case CV_E_MISSING_DOCUMENTS:
        h = 409;
        c = "missing_documents";
        break;
    case CV_E_UNSUPPORTED_MEDIA_TYPE:
        h = 415;
        c = "unsupported_media_type";
        break;
    case CV_E_IMAGE_TOO_LARGE:
        h = 422;
        c = "image_too_large";
        break;
    case CV_E_IMAGE_TOO_SMALL:
        h = 422;
        c = "image_too_small";
        break;
    case CV_E_IMAGE_UNDECODABLE:
        h = 422;
        c = "image_undecodable";
        break;
    case CV_E_IMAGE_TRUNCATED:
        h = 422;
        c = "image_truncated";
        break;
    case CV_E_MALFORMED_MULTIPART:
        h = 400;
        c = "malformed_multipart";
        break;
    case CV_E_PROOF_INVALID:
        h = 400;
        c = "proof_invalid";
        break;
    case CV_E_SIGNATURE_INVALID:
        h = 400;
        c = "signature_invalid";
        break;
    case CV_E_RANGE:
        h = 400;
        c = "out_of_range";
        break;
    case CV_E_UNSAFE_ARCHIVE_ENTRY:
        h = 400;
        c = "unsafe_archive_entry";
        break;
    case CV_E_MANIFEST_MISMATCH:
        h = 400;
        c = "manifest_mismatch";
        break;
    case CV_E_ARCHIVE_FORMAT:
        h = 400;
        c = "archive_format";
        break;
    case CV_E_BACKUP_CHAIN:
        h = 409;
        c = "backup_chain";
        break;
    case CV_E_EMPTY_FILE:
        h = 422;
        c = "empty_file";
        break;
    }
    *http_status = h;
    *code = c;
}
