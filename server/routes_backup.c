/*
 * server/routes_backup: GET /v1/backup[?since=BACKUP_ID] (role backup).
 *
 * The snapshot, the blob list and the audit entry are taken in the handler
 * (so an unknown `since` is a clean 404), then cv_reply_stream (server/stream.c)
 * runs the same cv_backup_stream the CLI uses in a producer thread writing
 * into the response's pipe. The status line goes out before the end, so the
 * signed manifest at the end of the tar is the integrity check.
 */
#include "casevault/backup.h"
#include "routes.h"

static cv_status produce(void *ctx, int fd)
{
    return cv_backup_stream(ctx, fd, NULL, NULL);
}

static void job_free(void *ctx)
{
    cv_backup_job_free(ctx);
}

void cv_route_backup(struct cv_request *req)
{
    const char *since = cv_req_query(req, "since");
    struct cv_backup_job *job = NULL;
    struct cv_backup_info info;
    if (since != NULL && !cv_ulid_valid(since)) {
        json_t *ext = json_pack("{s:s}", "field", "since");
        cv_reply_problem(req, CV_E_INVALID_FIELD, ext, "since must be a backup id");
        return;
    }
    struct cv_backup_actor who = {req->who.token_id, cv_role_str(req->who.role), req->id,
                                  req->client};
    cv_status st = cv_backup_prepare(req->srv->dd, since, &who, &job, &info);
    if (st == CV_E_NOT_FOUND) {
        cv_reply_problem(req, st, NULL, "no backup with that id");
        return;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, "cannot take the snapshot");
        return;
    }
    cv_reply_header(req, "X-Backup-Id", info.id);
    cv_reply_stream(req, 200, "application/x-tar", produce, job, job_free);
}
