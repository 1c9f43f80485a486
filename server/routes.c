/*
 * server/routes: the one static route table: method, path pattern, roles
 * allowed, body handling and handler; and cv_request_actor, which every
 * handler that writes uses. Handlers live one file per resource
 * (routes_<resource>.c).
 */
#include "router.h"
#include "routes.h"

#define STAFF_READ (CV_ROLE_REVIEWER | CV_ROLE_AUDITOR)

const struct cv_route cv_routes[] = {
    {"GET", "/healthz", 0, CV_BODY_NONE, cv_route_healthz, NULL, NULL, NULL},
    {"GET", "/readyz", 0, CV_BODY_NONE, cv_route_readyz, NULL, NULL, NULL},
    {"GET", "/metrics", 0, CV_BODY_NONE, cv_route_metrics, NULL, NULL, NULL},
    {"GET", "/v1/whoami", CV_ROLE_STAFF | CV_ROLE_APPLICANT, CV_BODY_NONE, cv_route_whoami, NULL,
     NULL, NULL},
    {"GET", "/v1/tokens", CV_ROLE_ADMIN, CV_BODY_NONE, cv_route_tokens_list, NULL, NULL, NULL},
    {"POST", "/v1/tokens", CV_ROLE_ADMIN, CV_BODY_JSON, cv_route_tokens_create, NULL, NULL, NULL},
    {"DELETE", "/v1/tokens/{token_id}", CV_ROLE_ADMIN, CV_BODY_NONE, cv_route_tokens_revoke, NULL,
     NULL, NULL},
    {"PUT", "/v1/accounts/{account_id}", CV_ROLE_ADMIN, CV_BODY_JSON, cv_route_accounts_put, NULL,
     NULL, NULL},
    {"POST", "/v1/cases", 0, CV_BODY_JSON, cv_route_cases_create, NULL, NULL, NULL},
    {"GET", "/v1/cases", STAFF_READ, CV_BODY_NONE, cv_route_cases_list, NULL, NULL, NULL},
    {"GET", "/v1/cases/{id}", STAFF_READ | CV_ROLE_APPLICANT, CV_BODY_NONE, cv_route_cases_get,
     NULL, NULL, NULL},
    {"POST", "/v1/cases/{id}/submit", CV_ROLE_APPLICANT, CV_BODY_NONE, cv_route_cases_submit, NULL,
     NULL, NULL},
    {"POST", "/v1/cases/{id}/decision", CV_ROLE_REVIEWER, CV_BODY_JSON, cv_route_cases_decide, NULL,
     NULL, NULL},
    {"POST", "/v1/cases/{id}/close", CV_ROLE_REVIEWER, CV_BODY_NONE, cv_route_cases_close, NULL,
     NULL, NULL},
    {"PUT", "/v1/cases/{id}/documents/{kind}", CV_ROLE_APPLICANT, CV_BODY_STREAM,
     cv_route_documents_put, cv_documents_put_begin, cv_documents_put_data,
     cv_documents_stream_abort},
    {"POST", "/v1/cases/{id}/documents", CV_ROLE_APPLICANT, CV_BODY_STREAM, cv_route_documents_post,
     cv_documents_post_begin, cv_documents_post_data, cv_documents_stream_abort},
    {"GET", "/v1/cases/{id}/documents/{doc}/content", STAFF_READ, CV_BODY_NONE,
     cv_route_documents_content, NULL, NULL, NULL},
    {"GET", "/v1/audit/checkpoint", CV_ROLE_AUDITOR, CV_BODY_NONE, cv_route_audit_checkpoint, NULL,
     NULL, NULL},
    {"GET", "/v1/audit/proof/inclusion", CV_ROLE_AUDITOR, CV_BODY_NONE, cv_route_audit_inclusion,
     NULL, NULL, NULL},
    {"GET", "/v1/audit/proof/consistency", CV_ROLE_AUDITOR, CV_BODY_NONE,
     cv_route_audit_consistency, NULL, NULL, NULL},
    {"GET", "/v1/audit/entries", CV_ROLE_AUDITOR, CV_BODY_NONE, cv_route_audit_entries, NULL, NULL,
     NULL},
    {"GET", "/v1/backup", CV_ROLE_BACKUP, CV_BODY_NONE, cv_route_backup, NULL, NULL, NULL},
    {"GET", "/v1/cases/{id}/archive", CV_ROLE_AUDITOR, CV_BODY_NONE, cv_route_cases_archive, NULL,
     NULL, NULL},
};
const size_t cv_routes_count = sizeof cv_routes / sizeof cv_routes[0];

struct cv_case_actor cv_request_actor(const struct cv_request *req)
{
    struct cv_case_actor a = {.id = req->who.token_id[0] ? req->who.token_id : "console",
                              .role = req->who.role == CV_ROLE_NONE ? "applicant"
                                                                    : cv_role_str(req->who.role),
                              .request_id = req->id,
                              .client = req->client};
    return a;
}
