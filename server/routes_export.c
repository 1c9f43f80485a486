/*
 * server/routes_export: GET /v1/cases/{id}/archive (auditor), the case
 * archive of DESIGN §6 as a streamed response. Every check and both audit
 * entries (case.view, export.create) happen before the status line; the
 * archive itself is produced in a stream thread by storage/export, which
 * only reads. Query: format=tar|zip (default tar), recipient=age1... (the
 * whole body is then an age v1 file), as_of=N (tree size, default: the size
 * before export.create).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casevault/age.h"
#include "casevault/audit.h"
#include "casevault/export.h"
#include "routes.h"

static void bad_field(struct cv_request *req, const char *field, const char *why)
{
    json_t *ext = json_pack("{s:s}", "field", field);
    cv_reply_problem(req, CV_E_INVALID_FIELD, ext, "query parameter '%s' %s", field, why);
}

static cv_status produce(void *ctx, int fd)
{
    return cv_export_write_fd(ctx, fd);
}

static void produce_free(void *ctx)
{
    cv_export_free(ctx);
}

void cv_route_cases_archive(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *format = cv_req_query(req, "format");
    const char *recipient = cv_req_query(req, "recipient");
    const char *as_of = cv_req_query(req, "as_of");
    struct cv_export_params p = {.case_id = cv_req_param(req, "id"), .format = CV_ARCHIVE_TAR};
    uint8_t pk[32];
    if (format == NULL || strcmp(format, "tar") == 0)
        p.format = CV_ARCHIVE_TAR;
    else if (strcmp(format, "zip") == 0)
        p.format = CV_ARCHIVE_ZIP;
    else {
        bad_field(req, "format", "must be tar or zip");
        return;
    }
    if (recipient != NULL) {
        if (cv_age_recipient_parse(recipient, pk) != CV_OK) {
            bad_field(req, "recipient", "is not an age1... X25519 recipient");
            return;
        }
        p.recipient = pk;
    }
    if (as_of != NULL) {
        if (cv_parse_u64(as_of, &p.as_of) != CV_OK || p.as_of == 0) {
            bad_field(req, "as_of", "must be a tree size of at least 1");
            return;
        }
    }
    struct cv_case_actor actor = cv_request_actor(req);
    p.actor = &actor;
    struct cv_export *x = NULL;
    cv_status st = cv_export_prepare(dd, &p, &x);
    if (st == CV_E_RANGE) {
        uint64_t size = 0;
        cv_audit_size(dd->db, &size);
        json_t *ext = json_pack("{s:s,s:I}", "field", "as_of", "tree_size", (json_int_t)size);
        cv_reply_problem(req, CV_E_RANGE, ext,
                         "as_of is beyond the audit log or before the case's first entry");
        return;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    char disp[160];
    snprintf(disp, sizeof disp, "attachment; filename=\"case-%s-%llu.%s%s\"", p.case_id,
             (unsigned long long)cv_export_as_of(x), p.format == CV_ARCHIVE_ZIP ? "zip" : "tar",
             p.recipient ? ".age" : "");
    cv_reply_header(req, "Content-Disposition", disp);
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)cv_export_as_of(x));
    cv_reply_header(req, "X-Casevault-As-Of", n);
    const char *ct = p.recipient                  ? "application/octet-stream"
                     : p.format == CV_ARCHIVE_ZIP ? "application/zip"
                                                  : "application/x-tar";
    cv_reply_stream(req, 200, ct, produce, x, produce_free);
}
