/*
 * server/routes_tokens: operator tokens over HTTP (admin) and /v1/whoami
 * (any token: who am I, with which role). Token secrets appear only in the
 * 201 answer that creates them.
 */
#include <string.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/db.h"
#include "routes.h"

void cv_route_whoami(struct cv_request *req)
{
    json_t *j = json_object();
    json_object_set_new(j, "token_id", json_string(req->who.token_id));
    json_object_set_new(j, "role", json_string(cv_role_str(req->who.role)));
    json_object_set_new(j, "name", json_string(req->who.name));
    if (req->who.case_id[0])
        json_object_set_new(j, "case_id", json_string(req->who.case_id));
    cv_reply_json(req, 200, j);
}

static int list_cb(const struct cv_token_info *t, void *arg)
{
    json_t *arr = arg;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "role", json_string(t->role));
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "created_at", json_string(t->created_at));
    json_object_set_new(o, "revoked_at", t->revoked_at ? json_string(t->revoked_at) : json_null());
    json_array_append_new(arr, o);
    return 0;
}

void cv_route_tokens_list(struct cv_request *req)
{
    json_t *arr = json_array();
    cv_status st = cv_token_list(req->srv->dd->db, 0, list_cb, arr);
    if (st != CV_OK) {
        json_decref(arr);
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    json_t *j = json_object();
    json_object_set_new(j, "tokens", arr);
    cv_reply_json(req, 200, j);
}

void cv_route_tokens_create(struct cv_request *req)
{
    char err[160];
    json_t *body = NULL;
    enum cv_role role = CV_ROLE_NONE;
    char text[CV_TOKEN_TEXT_LEN + 1];
    char id[CV_ULID_LEN + 1];
    struct cv_datadir *dd = req->srv->dd;
    cv_status st = cv_req_json(req, &body, err, sizeof err);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, "%s", err);
        return;
    }
    const char *r = json_string_value(json_object_get(body, "role"));
    const char *name = json_string_value(json_object_get(body, "name"));
    if (cv_role_parse(r, &role) != CV_OK || (role & CV_ROLE_STAFF) == 0) {
        json_t *ext = json_pack("{s:s}", "field", "role");
        cv_reply_problem(req, CV_E_INVALID_FIELD, ext,
                         "role must be one of admin, reviewer, auditor, backup");
        goto out;
    }
    if ((st = cv_db_begin(dd->db)) != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    st = cv_token_create(dd->db, dd->kr, role, name, NULL, 0, text, id);
    if (st == CV_OK) {
        json_t *details = json_pack("{s:s}", "role", cv_role_str(role));
        struct cv_audit_event ev = {.action = "token.create",
                                    .actor_id = req->who.token_id,
                                    .actor_role = cv_role_str(req->who.role),
                                    .object_id = id,
                                    .request_id = req->id,
                                    .client = req->client,
                                    .details = details};
        st = cv_audit_append(dd->db, &ev, NULL);
        json_decref(details);
    }
    if (st != CV_OK) {
        cv_db_rollback(dd->db);
        if (st == CV_E_ARG) {
            json_t *ext = json_pack("{s:s}", "field", "name");
            cv_reply_problem(req, CV_E_INVALID_FIELD, ext,
                             "name must be 1-64 characters of A-Z a-z 0-9 . _ - @");
        } else {
            cv_reply_problem(req, st, NULL, NULL);
        }
        goto out;
    }
    if ((st = cv_db_commit(dd->db)) != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "role", json_string(cv_role_str(role)));
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "token", json_string(text));
    cv_reply_json(req, 201, j);
out:
    sodium_memzero(text, sizeof text);
    json_decref(body);
}

void cv_route_tokens_revoke(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *id = cv_req_param(req, "token_id");
    if (!cv_ulid_valid(id)) {
        cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such token");
        return;
    }
    cv_status st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cv_token_revoke(dd->db, id);
        struct cv_audit_event ev = {.action = "token.revoke",
                                    .actor_id = req->who.token_id,
                                    .actor_role = cv_role_str(req->who.role),
                                    .object_id = id,
                                    .request_id = req->id,
                                    .client = req->client};
        if (st == CV_OK)
            st = cv_audit_append(dd->db, &ev, NULL);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    if (st == CV_E_NOT_FOUND) {
        cv_reply_problem(req, st, NULL, "no such active token");
        return;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "revoked", json_true());
    cv_reply_json(req, 200, j);
}
