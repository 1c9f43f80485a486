/*
 * server/routes_cases: MFA disassociation cases over HTTP (DESIGN §2, §7):
 * creation (unauthenticated, fronted by the cloud console), the applicant's
 * view and submit, the staff list and view, decisions and closing. The
 * state rules live in storage/case.c; this file maps requests and answers.
 * Identity values appear only in the staff view of one case, whose read is
 * audited (case.view); they are never logged or put in a problem detail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/case.h"
#include "casevault/db.h"
#include "routes.h"

static json_t *kinds_array(const char *applicant_type)
{
    unsigned n = 0;
    const char *const *k = cv_case_required_kinds(applicant_type, &n);
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, json_string(k[i]));
    return a;
}

static json_t *list_array(const char *list)
{
    json_t *a = json_array();
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        p = e ? e + 1 : NULL;
    }
    return a;
}

static void reply_field(struct cv_request *req, const char *field, const char *why)
{
    cv_reply_problem(req, CV_E_INVALID_FIELD, json_pack("{s:s}", "field", field), "%s %s", field,
                     why);
}

void cv_route_cases_create(struct cv_request *req)
{
    char err[160];
    json_t *body = NULL;
    struct cv_case_application *app = NULL;
    const char *field = NULL, *why = NULL;
    char case_id[CV_ULID_LEN + 1];
    char token[CV_TOKEN_TEXT_LEN + 1];
    int64_t retry = 0;
    struct cv_datadir *dd = req->srv->dd;
    const struct cv_config *cfg = &req->srv->cfg;

    memset(token, 0, sizeof token);
    cv_status st = cv_req_json(req, &body, err, sizeof err);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, "%s", err);
        return;
    }
    if ((app = cv_case_application_new()) == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        goto out;
    }
    st = cv_case_application_from_json(body, app, &field, &why);
    if (st == CV_E_INVALID_FIELD) {
        reply_field(req, field, why);
        goto out;
    }
    if (st == CV_E_ACCOUNT_TYPE_MISMATCH) {
        cv_reply_problem(req, st, json_pack("{s:s}", "field", field),
                         "%s %s; the applicant type must match the account's real-name record",
                         field, why);
        goto out;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    struct cv_case_policy pol = {
        .now_ms = cv_now_ms(),
        .token_ttl_ms = (int64_t)cfg->case_token_ttl_s * 1000,
        .max_failed = cfg->max_failed_attempts,
        .failure_window_ms = (int64_t)cfg->failed_attempts_window_s * 1000,
    };
    struct cv_case_actor actor = cv_request_actor(req);
    if ((st = cv_db_begin(dd->db)) != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    st = cv_case_open(dd->db, dd->kr, app, &pol, &actor, case_id, token, &retry);
    if (st == CV_OK || st == CV_E_IDENTITY_MISMATCH || st == CV_E_ACCOUNT_TYPE_MISMATCH) {
        /* A failed identity check is recorded (rate limit + audit): commit it. */
        cv_status cst = cv_db_commit(dd->db);
        if (cst != CV_OK)
            st = cst;
    } else {
        cv_db_rollback(dd->db);
    }
    if (st == CV_E_TOO_MANY_ATTEMPTS) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)retry);
        cv_reply_header(req, "Retry-After", ra);
        cv_reply_problem(req, st, json_pack("{s:I}", "retry_after", (json_int_t)retry),
                         "too many failed identity checks for this account; try again in %lld "
                         "seconds",
                         (long long)retry);
        goto out;
    }
    if (st == CV_E_ACCOUNT_NOT_FOUND) {
        cv_reply_problem(req, st, NULL, "no real-name record exists for this account");
        goto out;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(case_id));
    json_object_set_new(j, "status", json_string("draft"));
    json_object_set_new(j, "token", json_string(token));
    json_object_set_new(j, "required_documents", kinds_array(app->applicant_type));
    char expires[CV_TIME_LEN + 1];
    cv_time_format(pol.now_ms + pol.token_ttl_ms, expires);
    json_object_set_new(j, "token_expires_at", json_string(expires));
    cv_reply_json(req, 201, j);
out:
    sodium_memzero(token, sizeof token);
    cv_case_application_free(app);
    json_decref(body);
}

/* The document checklist: one entry per required kind. Staff also see the
 * stored document's id, hashes and size. */
static cv_status checklist(struct cv_db *db, int in_txn, const struct cv_case_info *c, int staff,
                           json_t **out)
{
    unsigned n = 0;
    const char *const *kinds = cv_case_required_kinds(c->applicant_type, &n);
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++) {
        struct cv_document_info d;
        cv_status st = cv_case_document_latest(db, in_txn, c->id, kinds[i], &d);
        if (st != CV_OK && st != CV_E_NOT_FOUND) {
            json_decref(a);
            return st;
        }
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(kinds[i]));
        json_object_set_new(o, "required", json_true());
        json_object_set_new(o, "present", json_boolean(st == CV_OK));
        int again = 0;
        for (const char *p = c->resubmit_kinds; *p && !again;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            again = len == strlen(kinds[i]) && strncmp(p, kinds[i], len) == 0;
            p = e ? e + 1 : p + len;
        }
        if (c->status == CV_CASE_NEEDS_RESUBMISSION)
            json_object_set_new(o, "resubmission_requested", json_boolean(again));
        if (st == CV_OK) {
            json_object_set_new(o, "uploaded_at", json_string(d.created_at));
            if (staff) {
                json_object_set_new(o, "document_id", json_string(d.id));
                json_object_set_new(o, "source_format", json_string(d.source_format));
                json_object_set_new(o, "sha256", json_string(d.normalized_sha256));
                json_object_set_new(o, "original_sha256", json_string(d.original_sha256));
                json_object_set_new(o, "width", json_integer(d.width));
                json_object_set_new(o, "height", json_integer(d.height));
            }
        }
        json_array_append_new(a, o);
    }
    *out = a;
    return CV_OK;
}

static json_t *case_json(const struct cv_case_info *c, int staff)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(c->id));
    json_object_set_new(j, "status", json_string(cv_case_status_str(c->status)));
    json_object_set_new(j, "applicant_type", json_string(c->applicant_type));
    json_object_set_new(j, "required_documents", kinds_array(c->applicant_type));
    json_object_set_new(j, "uploads_open", json_boolean(cv_case_uploads_allowed(c->status)));
    json_object_set_new(j, "created_at", json_string(c->created_at));
    json_object_set_new(j, "updated_at", json_string(c->updated_at));
    if (c->status == CV_CASE_NEEDS_RESUBMISSION)
        json_object_set_new(j, "resubmit_kinds", list_array(c->resubmit_kinds));
    if (staff) {
        json_object_set_new(j, "account_id", json_string(c->account_id));
        json_object_set_new(j, "decision", c->decision[0] ? json_string(c->decision) : json_null());
        json_object_set_new(j, "decided_by",
                            c->decided_by[0] ? json_string(c->decided_by) : json_null());
        json_object_set_new(j, "first_approver",
                            c->first_approver[0] ? json_string(c->first_approver) : json_null());
    }
    return j;
}

static int case_id_ok(struct cv_request *req, const char **id)
{
    *id = cv_req_param(req, "id");
    if (*id == NULL || !cv_ulid_valid(*id)) {
        cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such case");
        return 0;
    }
    return 1;
}

static void reply_case_status(struct cv_request *req, cv_status st)
{
    if (st == CV_E_NOT_FOUND)
        cv_reply_problem(req, st, NULL, "no such case");
    else
        cv_reply_problem(req, st, NULL, NULL);
}

void cv_route_cases_get(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *id;
    struct cv_case_info c;
    struct cv_case_identity *idn = NULL;
    json_t *docs = NULL;
    cv_status st;

    if (!case_id_ok(req, &id))
        return;
    if (req->who.role == CV_ROLE_APPLICANT) {
        /* The router has already checked that this is the token's case. */
        if ((st = cv_case_get(dd->db, 0, id, &c)) != CV_OK ||
            (st = checklist(dd->db, 0, &c, 0, &docs)) != CV_OK) {
            reply_case_status(req, st);
            return;
        }
        json_t *j = case_json(&c, 0);
        json_object_set_new(j, "documents", docs);
        cv_reply_json(req, 200, j);
        return;
    }
    /* Staff: identity fields are decrypted and the read is audited in the
     * same transaction. */
    struct cv_case_actor actor = cv_request_actor(req);
    if ((idn = sodium_malloc(sizeof *idn)) == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        return;
    }
    if ((st = cv_db_begin(dd->db)) != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto out;
    }
    st = cv_case_get(dd->db, 1, id, &c);
    if (st == CV_OK)
        st = checklist(dd->db, 1, &c, 1, &docs);
    if (st == CV_OK)
        st = cv_case_identity_read(dd->db, dd->kr, id, &actor, idn);
    if (st == CV_OK)
        st = cv_db_commit(dd->db);
    else
        cv_db_rollback(dd->db);
    if (st != CV_OK) {
        json_decref(docs);
        reply_case_status(req, st);
        goto out;
    }
    json_t *j = case_json(&c, 1);
    json_object_set_new(j, "documents", docs);
    json_t *ident = json_object();
    json_object_set_new(ident, "name", json_string(idn->name));
    json_object_set_new(ident, "id_type", json_string(c.id_type));
    json_object_set_new(ident, "id_number", json_string(idn->id_number));
    json_object_set_new(ident, "mobile", json_string(idn->mobile));
    json_object_set_new(ident, "contact_mobile", json_string(idn->contact_mobile));
    if (idn->enterprise_name[0])
        json_object_set_new(ident, "enterprise_name", json_string(idn->enterprise_name));
    if (idn->uscc[0])
        json_object_set_new(ident, "uscc", json_string(idn->uscc));
    json_object_set_new(j, "identity", ident);
    cv_reply_json(req, 200, j);
out:
    sodium_free(idn);
}

struct list_ctx {
    json_t *arr;
};

static int list_cb(const struct cv_case_info *c, void *arg)
{
    struct list_ctx *lc = arg;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "status", json_string(cv_case_status_str(c->status)));
    json_object_set_new(o, "applicant_type", json_string(c->applicant_type));
    json_object_set_new(o, "account_id", json_string(c->account_id));
    json_object_set_new(o, "created_at", json_string(c->created_at));
    json_object_set_new(o, "updated_at", json_string(c->updated_at));
    json_array_append_new(lc->arr, o);
    return 0;
}

void cv_route_cases_list(struct cv_request *req)
{
    const char *status_s = cv_req_query(req, "status");
    const char *cursor = cv_req_query(req, "cursor");
    const char *limit_s = cv_req_query(req, "limit");
    enum cv_case_status status;
    unsigned limit = 50;
    char next[CV_ULID_LEN + 1] = "";

    if (status_s != NULL && status_s[0] && cv_case_status_parse(status_s, &status) != CV_OK) {
        reply_field(req, "status",
                    "must be one of draft, submitted, needs_resubmission, approval_pending, "
                    "approved, rejected, closed");
        return;
    }
    if (cursor != NULL && cursor[0] && !cv_ulid_valid(cursor)) {
        reply_field(req, "cursor", "must be a case id from next_cursor");
        return;
    }
    if (limit_s != NULL && limit_s[0]) {
        char *end = NULL;
        unsigned long v = strtoul(limit_s, &end, 10);
        if (limit_s[0] < '0' || limit_s[0] > '9' || *end != '\0' || v < 1 || v > 200) {
            reply_field(req, "limit", "must be an integer from 1 to 200");
            return;
        }
        limit = (unsigned)v;
    }
    struct list_ctx lc = {json_array()};
    cv_status st = cv_case_list(req->srv->dd->db, status_s && status_s[0] ? &status : NULL,
                                cursor && cursor[0] ? cursor : NULL, limit, list_cb, &lc, next);
    if (st != CV_OK) {
        json_decref(lc.arr);
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    json_t *j = json_object();
    json_object_set_new(j, "cases", lc.arr);
    json_object_set_new(j, "next_cursor", next[0] ? json_string(next) : json_null());
    cv_reply_json(req, 200, j);
}

void cv_route_cases_submit(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *id;
    char missing[CV_KIND_LIST_MAX] = "";
    if (!case_id_ok(req, &id))
        return;
    struct cv_case_actor actor = cv_request_actor(req);
    cv_status st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cv_case_submit(dd->db, id, &actor, missing);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    if (st == CV_E_MISSING_DOCUMENTS) {
        cv_reply_problem(req, st, json_pack("{s:o}", "missing", list_array(missing)),
                         "upload these document kinds before submitting: %s", missing);
        return;
    }
    if (st == CV_E_INVALID_TRANSITION) {
        cv_reply_problem(req, st, NULL,
                         "only a draft or a case that needs resubmission can be submitted");
        return;
    }
    if (st != CV_OK) {
        reply_case_status(req, st);
        return;
    }
    cv_reply_json(req, 200, json_pack("{s:s,s:s}", "id", id, "status", "submitted"));
}

#define CV_REASON_MAX 2000 /* bytes */

void cv_route_cases_decide(struct cv_request *req)
{
    char err[160];
    json_t *body = NULL;
    struct cv_datadir *dd = req->srv->dd;
    const char *id;
    enum cv_decision decision;
    enum cv_case_status to = CV_CASE_SUBMITTED;
    char kinds[CV_KIND_LIST_MAX] = "";
    const char *key;
    json_t *v;

    if (!case_id_ok(req, &id))
        return;
    cv_status st = cv_req_json(req, &body, err, sizeof err);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, "%s", err);
        return;
    }
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "decision") != 0 && strcmp(key, "reason") != 0 &&
            strcmp(key, "kinds") != 0) {
            reply_field(req, "body", "has an unknown member");
            goto out;
        }
    }
    const char *d = json_string_value(json_object_get(body, "decision"));
    if (d && strcmp(d, "approve") == 0)
        decision = CV_DECISION_APPROVE;
    else if (d && strcmp(d, "reject") == 0)
        decision = CV_DECISION_REJECT;
    else if (d && strcmp(d, "resubmit") == 0)
        decision = CV_DECISION_RESUBMIT;
    else {
        reply_field(req, "decision", "must be approve, reject or resubmit");
        goto out;
    }
    json_t *r = json_object_get(body, "reason");
    if (r != NULL && !json_is_null(r) && !json_is_string(r)) {
        reply_field(req, "reason", "must be a string");
        goto out;
    }
    const char *reason = json_string_value(r);
    if (reason != NULL && strlen(reason) > CV_REASON_MAX) {
        reply_field(req, "reason", "must be at most 2000 bytes");
        goto out;
    }
    int blank = 1;
    for (const char *p = reason; p && *p && blank; p++)
        blank = (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r');
    if (decision != CV_DECISION_APPROVE && blank) {
        reply_field(req, "reason", "is required to reject or to ask for resubmission");
        goto out;
    }
    json_t *k = json_object_get(body, "kinds");
    if (decision == CV_DECISION_RESUBMIT) {
        if (!json_is_array(k) || json_array_size(k) == 0 || json_array_size(k) > CV_KINDS_MAX) {
            reply_field(req, "kinds", "must list the document kinds to upload again");
            goto out;
        }
        size_t i;
        json_t *e;
        json_array_foreach(k, i, e)
        {
            const char *s = json_string_value(e);
            size_t n = strlen(kinds);
            if (s == NULL || strlen(s) + n + 2 > sizeof kinds) {
                reply_field(req, "kinds", "must be id_in_hand and/or business_license");
                goto out;
            }
            snprintf(kinds + n, sizeof kinds - n, "%s%s", n ? "," : "", s);
        }
    } else if (k != NULL && !json_is_null(k)) {
        reply_field(req, "kinds", "is only for decision resubmit");
        goto out;
    }
    struct cv_case_actor actor = cv_request_actor(req);
    if ((st = cv_db_begin(dd->db)) == CV_OK) {
        int64_t reopen = cv_now_ms() + (int64_t)req->srv->cfg.case_token_ttl_s * 1000;
        st = cv_case_decide(dd->db, dd->kr, id, decision, reason, kinds, req->srv->cfg.four_eyes,
                            reopen, &actor, &to);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    if (st == CV_E_INVALID_FIELD) {
        reply_field(req, "kinds", "must be document kinds this case requires");
        goto out;
    }
    if (st == CV_E_INVALID_TRANSITION) {
        cv_reply_problem(req, st, NULL,
                         "a decision needs a submitted case (or one pending a second approval "
                         "by a different reviewer)");
        goto out;
    }
    if (st != CV_OK) {
        reply_case_status(req, st);
        goto out;
    }
    cv_reply_json(
        req, 200,
        json_pack("{s:s,s:s,s:s}", "id", id, "status", cv_case_status_str(to), "decision", d));
out:
    json_decref(body);
}

void cv_route_cases_close(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *id;
    if (!case_id_ok(req, &id))
        return;
    struct cv_case_actor actor = cv_request_actor(req);
    cv_status st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cv_case_close(dd->db, id, &actor);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    if (st == CV_E_INVALID_TRANSITION) {
        cv_reply_problem(req, st, NULL,
                         "only an approved, rejected or needs_resubmission case can be closed");
        return;
    }
    if (st != CV_OK) {
        reply_case_status(req, st);
        return;
    }
    cv_reply_json(req, 200, json_pack("{s:s,s:s}", "id", id, "status", "closed"));
}
