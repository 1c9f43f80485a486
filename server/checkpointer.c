/*
 * server/checkpointer: periodic checkpoint signing for `casevault serve`.
 * It logs a failure once per distinct status, never key material.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "casevault/audit.h"
#include "checkpointer.h"
#include "http.h"
#include "log.h"

struct cv_checkpointer {
    struct cv_server *srv;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    cv_status last_error;
};

static void tick(struct cv_checkpointer *cp, int64_t interval_ms)
{
    struct cv_datadir *dd = cp->srv->dd;
    int did = 0;
    cv_status st = cv_audit_checkpoint_tick(dd->db, dd->kr, interval_ms, &did);
    if (st != CV_OK && st != CV_E_DB_BUSY && st != cp->last_error) {
        json_t *f = json_pack("{s:s}", "error", cv_status_str(st));
        cv_log("error", "cannot sign an audit checkpoint", f);
    }
    cp->last_error = st;
}

static void *run(void *arg)
{
    struct cv_checkpointer *cp = arg;
    int64_t interval_ms = (int64_t)cp->srv->cfg.checkpoint_interval_s * 1000;
    int64_t period_ms = interval_ms > 0 ? interval_ms : 250;
    pthread_mutex_lock(&cp->mu);
    while (!cp->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(period_ms / 1000);
        ts.tv_nsec += (long)(period_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!cp->quit && pthread_cond_timedwait(&cp->cv, &cp->mu, &ts) == 0)
            ;
        if (cp->quit)
            break;
        pthread_mutex_unlock(&cp->mu);
        tick(cp, interval_ms);
        pthread_mutex_lock(&cp->mu);
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

cv_status cv_checkpointer_start(struct cv_server *srv, struct cv_checkpointer **out)
{
    pthread_condattr_t ca;
    struct cv_checkpointer *cp = calloc(1, sizeof *cp);
    if (cp == NULL)
        return CV_E_NOMEM;
    cp->srv = srv;
    pthread_mutex_init(&cp->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cp->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&cp->th, NULL, run, cp) != 0) {
        pthread_mutex_destroy(&cp->mu);
        pthread_cond_destroy(&cp->cv);
        free(cp);
        return CV_E_INTERNAL;
    }
    *out = cp;
    return CV_OK;
}

void cv_checkpointer_stop(struct cv_checkpointer *cp)
{
    if (cp == NULL)
        return;
    pthread_mutex_lock(&cp->mu);
    cp->quit = 1;
    pthread_cond_signal(&cp->cv);
    pthread_mutex_unlock(&cp->mu);
    pthread_join(cp->th, NULL);
    tick(cp, 0); /* cover everything appended before the stop */
    pthread_mutex_destroy(&cp->mu);
    pthread_cond_destroy(&cp->cv);
    free(cp);
}
