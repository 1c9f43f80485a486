/*
 * server/routes_backup: GET /v1/backup[?since=BACKUP_ID] (role backup).
 *
 * The snapshot, the blob list and the audit entry are taken in the handler
 * (so an unknown `since` is a clean 404), then a producer thread runs the
 * same cv_backup_stream the CLI uses, writing into a pipe whose read end
 * is the response (MHD_create_response_from_pipe: fine in thread-per-
 * connection mode, STACK-NOTES §1). The status line goes out before the end,
 * so the signed manifest at the end of the tar is the integrity check. When
 * the client goes away MHD closes the read end; the producer gets EPIPE
 * (SIGPIPE is ignored by serve) and stops. Producers are counted so that
 * serve waits for them before it frees the data dir.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casevault/backup.h"
#include "log.h"
#include "routes.h"

static pthread_mutex_t prod_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t prod_cv = PTHREAD_COND_INITIALIZER;
static unsigned producers;

struct producer {
    struct cv_backup_job *job;
    int fd;
    char id[CV_ULID_LEN + 1];
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    cv_status st = cv_backup_stream(p->job, p->fd, NULL, NULL);
    close(p->fd);
    json_t *f = json_object();
    json_object_set_new(f, "backup_id", json_string(p->id));
    if (st == CV_OK)
        cv_log("info", "backup streamed", f);
    else {
        json_object_set_new(f, "error", json_string(cv_status_str(st)));
        cv_log("warn", "backup stream stopped (client gone or I/O error)", f);
    }
    cv_backup_job_free(p->job);
    free(p);
    pthread_mutex_lock(&prod_mu);
    producers--;
    pthread_cond_broadcast(&prod_cv);
    pthread_mutex_unlock(&prod_mu);
    return NULL;
}

void cv_backup_producers_wait(void)
{
    pthread_mutex_lock(&prod_mu);
    while (producers > 0)
        pthread_cond_wait(&prod_cv, &prod_mu);
    pthread_mutex_unlock(&prod_mu);
}

void cv_route_backup(struct cv_request *req)
{
    const char *since = cv_req_query(req, "since");
    struct cv_backup_job *job = NULL;
    struct cv_backup_info info;
    struct MHD_Response *resp = NULL;
    struct producer *p = NULL;
    int fds[2] = {-1, -1};
    pthread_t th;
    pthread_attr_t attr;
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
    if ((p = calloc(1, sizeof *p)) == NULL || pipe2(fds, O_CLOEXEC) != 0) {
        st = CV_E_NOMEM;
        goto fail;
    }
    if ((resp = MHD_create_response_from_pipe(fds[0])) == NULL) {
        st = CV_E_NOMEM;
        goto fail;
    }
    fds[0] = -1; /* the response owns it */
    p->job = job;
    p->fd = fds[1];
    memcpy(p->id, info.id, sizeof p->id);
    pthread_mutex_lock(&prod_mu);
    producers++;
    pthread_mutex_unlock(&prod_mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int perr = pthread_create(&th, &attr, producer_main, p);
    pthread_attr_destroy(&attr);
    if (perr != 0) {
        pthread_mutex_lock(&prod_mu);
        producers--;
        pthread_cond_broadcast(&prod_cv);
        pthread_mutex_unlock(&prod_mu);
        st = CV_E_NOMEM;
        goto fail;
    }
    MHD_add_response_header(resp, "Content-Type", "application/x-tar");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    cv_reply_header(req, "X-Backup-Id", info.id);
    cv_reply_response(req, 200, resp);
    return;
fail:
    if (resp)
        MHD_destroy_response(resp);
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    free(p);
    cv_backup_job_free(job);
    cv_reply_problem(req, st, NULL, "cannot start the backup stream");
}
