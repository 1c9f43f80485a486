/*
 * server/routes_accounts: PUT /v1/accounts/{account_id} (admin) upserts a
 * real-name record. The answer names the record and what happened, never
 * its identity values.
 */
#include <string.h>

#include "casevault/account.h"
#include "casevault/audit.h"
#include "casevault/db.h"
#include "routes.h"

void cv_route_accounts_put(struct cv_request *req)
{
    char err[160];
    json_t *body = NULL;
    struct cv_account_record *rec = NULL;
    const char *field = NULL, *why = NULL;
    enum cv_upsert_result result = CV_UPSERT_UNCHANGED;
    struct cv_datadir *dd = req->srv->dd;
    const char *account_id = cv_req_param(req, "account_id");

    cv_status st = cv_req_json(req, &body, err, sizeof err);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, "%s", err);
        return;
    }
    if ((rec = cv_account_record_new()) == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        goto out;
    }
    st = cv_account_record_from_json(body, account_id, rec, &field, &why);
    if (st == CV_E_INVALID_FIELD) {
        cv_reply_problem(req, st, json_pack("{s:s}", "field", field), "%s %s", field, why);
        goto out;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    if ((st = cv_db_begin(dd->db)) != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    st = cv_account_upsert(dd->db, dd->kr, rec, &result);
    if (st == CV_OK && result != CV_UPSERT_UNCHANGED) {
        json_t *details = json_pack("{s:s,s:s,s:b,s:b}", "result", cv_account_upsert_str(result),
                                    "type", cv_account_type_str(rec->type), "real_name_verified",
                                    rec->real_name_verified, "mfa_bound", rec->mfa_bound);
        struct cv_audit_event ev = {.action = "account.upsert",
                                    .actor_id = req->who.token_id,
                                    .actor_role = cv_role_str(req->who.role),
                                    .object_id = rec->account_id,
                                    .request_id = req->id,
                                    .client = req->client,
                                    .details = details};
        st = cv_audit_append(dd->db, &ev, NULL);
        json_decref(details);
    }
    if (st == CV_OK)
        st = cv_db_commit(dd->db);
    else
        cv_db_rollback(dd->db);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    json_t *j =
        json_pack("{s:s,s:s,s:b,s:b,s:s}", "account_id", rec->account_id, "type",
                  cv_account_type_str(rec->type), "real_name_verified", rec->real_name_verified,
                  "mfa_bound", rec->mfa_bound, "result", cv_account_upsert_str(result));
    cv_reply_json(req, result == CV_UPSERT_CREATED ? 201 : 200, j);
out:
    cv_account_record_free(rec);
    json_decref(body);
}
