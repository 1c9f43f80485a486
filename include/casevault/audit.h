/*
 * storage/audit: the append-only audit log (DESIGN §5).
 *
 * Every state change and every read of plaintext appends one entry, in the
 * same write transaction as the action, so the two commit or fail together.
 * An entry is canonical JSON (keys sorted, compact, UTF-8): {action, actor:
 * {id, role}, case_id, client, details, object_id, outcome, request_id, seq,
 * time}; absent optional members are null. Entries carry ids and hashes,
 * never PII, tokens or key material. Entries are the leaves of an RFC 6962 /
 * RFC 9162 Merkle tree: leaf hash = SHA-256(0x00 || entry bytes).
 */
#ifndef CASEVAULT_AUDIT_H
#define CASEVAULT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "casevault/status.h"

struct cv_db;

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
 * Out: *seq_out (0-based leaf index; may be NULL). Errors: CV_E_ARG (no
 * action or actor), CV_E_NOMEM, CV_E_DB.
 */
cv_status cv_audit_append(struct cv_db *db, const struct cv_audit_event *ev, uint64_t *seq_out);

/*
 * cv_audit_size - current tree size (number of entries), read from a reader
 * connection. Errors: CV_E_DB.
 */
cv_status cv_audit_size(struct cv_db *db, uint64_t *size);

/*
 * cv_audit_leaf_hash - RFC 6962 leaf hash SHA-256(0x00 || data[len]).
 */
void cv_audit_leaf_hash(const void *data, size_t len, uint8_t out[32]);

#endif
