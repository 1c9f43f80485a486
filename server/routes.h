/*
 * Private to server/: every route handler, grouped by resource file.
 */
#ifndef CASEVAULT_SERVER_ROUTES_H
#define CASEVAULT_SERVER_ROUTES_H

#include "casevault/case.h"
#include "http.h"

/*
 * cv_request_actor - who acts in req, as case records and audit entries name
 * them: the token id ("console" when the request carries none) and its role
 * ("applicant" when unauthenticated, as when a case is opened). The strings
 * are borrowed from req (or static) and live as long as req.
 */
struct cv_case_actor cv_request_actor(const struct cv_request *req);

/* routes_health.c: liveness, readiness, Prometheus metrics (no auth). */
void cv_route_healthz(struct cv_request *req);
void cv_route_readyz(struct cv_request *req);
void cv_route_metrics(struct cv_request *req);

/* routes_tokens.c: operator tokens (admin), whoami (any token). */
void cv_route_whoami(struct cv_request *req);
void cv_route_tokens_list(struct cv_request *req);
void cv_route_tokens_create(struct cv_request *req);
void cv_route_tokens_revoke(struct cv_request *req);

/* routes_accounts.c: real-name records (admin). */
void cv_route_accounts_put(struct cv_request *req);

/* routes_cases.c: cases (creation unauthenticated; applicant; reviewer/auditor). */
void cv_route_cases_create(struct cv_request *req);
void cv_route_cases_get(struct cv_request *req);
void cv_route_cases_list(struct cv_request *req);
void cv_route_cases_submit(struct cv_request *req);
void cv_route_cases_decide(struct cv_request *req);
void cv_route_cases_close(struct cv_request *req);

/* routes_documents.c: uploads (applicant, streamed) and the staff content view. */
void cv_route_documents_put(struct cv_request *req);
void cv_route_documents_post(struct cv_request *req);
void cv_route_documents_content(struct cv_request *req);
cv_status cv_documents_put_begin(struct cv_request *req);
cv_status cv_documents_put_data(struct cv_request *req, const char *data, size_t len);
cv_status cv_documents_post_begin(struct cv_request *req);
cv_status cv_documents_post_data(struct cv_request *req, const char *data, size_t len);
void cv_documents_stream_abort(struct cv_request *req);

/* routes_audit.c: checkpoints, proofs and entries of the audit log (auditor). */
void cv_route_audit_checkpoint(struct cv_request *req);
void cv_route_audit_inclusion(struct cv_request *req);
void cv_route_audit_consistency(struct cv_request *req);
void cv_route_audit_entries(struct cv_request *req);
void cv_route_cases_archive(struct cv_request *req);

/* routes_backup.c: the backup stream (role backup). */
void cv_route_backup(struct cv_request *req);

#endif
