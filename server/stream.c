/*
 * server/stream: responses produced by a function writing to a file
 * descriptor (exports, backups). The producer runs in its own thread and
 * writes into a pipe; libmicrohttpd reads the other end
 * (MHD_create_response_from_pipe, which wants a blocking pipe: fine in
 * thread-per-connection mode, STACK-NOTES §1). The pipe's buffer is the
 * flow control: memory is one pipe plus what the producer holds.
 *
 * DESIGN NOTES
 * 1. A client that goes away makes MHD close the read end; the producer's
 *    next write fails with EPIPE (SIGPIPE is ignored) and it unwinds.
 * 2. The status line leaves before the body is complete, so a producer that
 *    fails mid-way can only cut the stream short: every streamed format
 *    carries its own integrity trailer (signed manifest, age final chunk).
 * 3. cv_stream_wait_idle, called after MHD_stop_daemon, waits for producers
 *    so that nothing they borrow (data dir, keys) is freed under them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

struct job {
    cv_stream_producer_fn fn;
    void *ctx;
    void (*ctx_free)(void *ctx);
    int fd;
    char request_id[CV_ULID_LEN + 1];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static unsigned active;

static void *run(void *arg)
{
    struct job *j = arg;
    cv_status rc = j->fn(j->ctx, j->fd);
    close(j->fd);
    if (rc != CV_OK) {
        json_t *f = json_object();
        json_object_set_new(f, "request_id", json_string(j->request_id));
        json_object_set_new(f, "error", json_string(cv_status_str(rc)));
        cv_log("warn", "streamed response ended early", f);
    }
    if (j->ctx_free)
        j->ctx_free(j->ctx);
    free(j);
    pthread_mutex_lock(&mu);
    active--;
    pthread_cond_broadcast(&idle);
    pthread_mutex_unlock(&mu);
    return NULL;
}

void cv_reply_stream(struct cv_request *req, unsigned status, const char *content_type,
                     cv_stream_producer_fn fn, void *ctx, void (*ctx_free)(void *ctx))
{
    int p[2] = {-1, -1};
    pthread_t th;
    pthread_attr_t attr;
    struct MHD_Response *resp = NULL;
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL || pipe2(p, O_CLOEXEC) != 0)
        goto fail;
    /* 1 MiB instead of 64 KiB: a quarter of the producer's wake-ups on a
     * long stream (bench/export); refused past the user's pipe quota, which
     * only leaves the default size */
    (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    resp = MHD_create_response_from_pipe(p[0]);
    if (resp == NULL)
        goto fail;
    p[0] = -1; /* the response owns it now */
    j->fn = fn;
    j->ctx = ctx;
    j->ctx_free = ctx_free;
    j->fd = p[1];
    snprintf(j->request_id, sizeof j->request_id, "%s", req->id);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&mu);
    active++;
    int rc = pthread_create(&th, &attr, run, j);
    if (rc != 0)
        active--;
    pthread_mutex_unlock(&mu);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    cv_reply_response(req, status, resp);
    return;
fail:
    if (resp)
        MHD_destroy_response(resp); /* closes p[0] */
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    free(j);
    if (ctx_free)
        ctx_free(ctx);
    cv_reply_problem(req, CV_E_NOMEM, NULL, "cannot start the stream");
}

int cv_stream_wait_idle(int64_t timeout_ms)
{
    int64_t until = cv_mono_ms() + timeout_ms;
    pthread_mutex_lock(&mu);
    while (active > 0 && cv_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&idle, &mu, &ts);
    }
    int left = (int)active;
    pthread_mutex_unlock(&mu);
    return left;
}
