/*
 * server/cmd_serve: `casevault serve`. Builds the configuration (defaults,
 * then --config FILE, then flags), initializes a missing or empty data dir,
 * takes the server lock, sweeps staging, and runs the HTTP server until a
 * signal.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/config.h"
#include "casevault/datadir.h"
#include "casevault/intake.h"
#include "checkpointer.h"
#include "cli.h"
#include "http.h"
#include "log.h"
#include "routes.h"
#include "router.h"

struct sets {
    const char *v[32];
    int n;
    int overflow;
};

static void collect_set(const char *value, void *arg)
{
    struct sets *s = arg;
    if (s->n < 32)
        s->v[s->n++] = value;
    else
        s->overflow = 1;
}

int cv_cmd_serve(int argc, char **argv)
{
    static struct cv_server srv; /* large; lives for the whole process */
    const char *data = NULL, *listen_on = NULL, *config = NULL, *cert = NULL, *key = NULL;
    const char *pos[1];
    int npos = 0, lockfd = -1;
    struct sets sets = {0};
    char err[300];
    cv_status st;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},     {"listen", 1, &listen_on, NULL, NULL, NULL},
        {"config", 1, &config, NULL, NULL, NULL}, {"tls-cert", 1, &cert, NULL, NULL, NULL},
        {"tls-key", 1, &key, NULL, NULL, NULL},   {"set", 1, NULL, NULL, collect_set, &sets},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("serve", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (sets.overflow)
        return cli_usage("serve", "at most 32 --set options");
    cv_config_defaults(&srv.cfg);
    if (config && cv_config_load_file(&srv.cfg, config, err, sizeof err) != CV_OK)
        return cli_usage("serve", err);
    struct {
        const char *flag;
        const char *key;
    } direct[] = {{data, "data"}, {listen_on, "listen"}, {cert, "tls_cert"}, {key, "tls_key"}};
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++)
        if (direct[i].flag && cv_config_set(&srv.cfg, "server", direct[i].key, direct[i].flag, err,
                                            sizeof err) != CV_OK)
            return cli_usage("serve", err);
    for (int i = 0; i < sets.n; i++)
        if (cv_config_set_arg(&srv.cfg, sets.v[i], err, sizeof err) != CV_OK)
            return cli_usage("serve", err);
    if (srv.cfg.db_readers == 0 || srv.cfg.db_readers > 64)
        return cli_usage("serve", "server.db_readers must be 1..64");
    if (srv.cfg.max_connections == 0)
        return cli_usage("serve", "server.max_connections must be at least 1");
    if (srv.cfg.audit_origin[0] && !cv_note_name_valid(srv.cfg.audit_origin))
        return cli_usage("serve", "audit.origin must be 1-128 printable ASCII characters without "
                                  "spaces or '+'");

    /* The decoder pool forks its clean helper now, before any key is in
     * memory and before any thread exists (include/casevault/intake.h). */
    struct cv_intake_pool_config pc = {
        .workers = srv.cfg.workers,
        .queue_depth = srv.cfg.queue_depth,
        .decode_timeout_s = srv.cfg.decode_timeout_s,
        .decode_memory_mb = srv.cfg.decode_memory_mb,
        .max_input_bytes = (size_t)srv.cfg.max_body_bytes,
    };
    if ((st = cv_intake_pool_new(&pc, &srv.pool)) != CV_OK)
        return cli_fail("serve", "cannot start the decoder pool", st);
    const char *dir = srv.cfg.data;
    if (!cv_datadir_initialized(dir)) {
        st = cv_datadir_init(dir);
        if (st == CV_E_NOT_EMPTY) {
            fprintf(stderr, "casevault serve: %s is not empty and not a casevault data directory\n",
                    dir);
            cv_intake_pool_free(srv.pool);
            return CV_EXIT_FAIL;
        }
        if (st != CV_OK) {
            cv_intake_pool_free(srv.pool);
            return cli_fail("serve", "cannot initialize the data directory", st);
        }
        fprintf(stderr, "initialized a new data directory %s with fresh keys\n", dir);
    }
    st = cv_datadir_open(dir, srv.cfg.db_readers, &srv.dd);
    if (st != CV_OK) {
        cv_intake_pool_free(srv.pool);
        srv.pool = NULL;
        return cli_fail("serve", dir, st);
    }
    st = cv_datadir_lock_server(srv.dd, &lockfd);
    if (st != CV_OK) {
        rc = st == CV_E_BUSY
                 ? (fprintf(stderr, "casevault serve: another server is running on %s\n", dir),
                    CV_EXIT_FAIL)
                 : cli_fail("serve", "cannot lock the data directory", st);
        goto out;
    }
    unsigned swept = 0;
    cv_datadir_sweep_tmp(srv.dd, &swept);
    if (swept) {
        json_t *f = json_object();
        json_object_set_new(f, "files", json_integer(swept));
        cv_log("warn", "removed staging files left by an earlier crash", f);
    }
    /* The audit log's origin from audit.origin (audited and the verifier
     * key rewritten when it changes). */
    st = cv_audit_set_origin(srv.dd->db, srv.dd->kr, srv.dd->keys, srv.cfg.audit_origin, "system",
                             "system", NULL);
    if (st != CV_OK) {
        rc = cli_fail("serve", "cannot set the audit origin", st);
        goto out;
    }
    /* Blob files renamed into place whose row never committed (a crash
     * between cv_blob_put_commit and the transaction): not live puts. */
    swept = 0;
    st = cv_blobstore_sweep_orphans(srv.dd->bs, &swept);
    if (st != CV_OK) {
        rc = cli_fail("serve", "cannot sweep orphan blobs", st);
        goto out;
    }
    if (swept) {
        json_t *f = json_object();
        json_object_set_new(f, "files", json_integer(swept));
        cv_log("warn", "removed blob files without a row left by an earlier crash", f);
    }
    srv.routes = cv_routes;
    srv.nroutes = cv_routes_count;

    /* Signals are taken synchronously by cv_http_run (sigwait); block them
     * before any thread exists so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct cv_checkpointer *cp = NULL;
    if ((st = cv_checkpointer_start(&srv, &cp)) != CV_OK) {
        rc = cli_fail("serve", "cannot start the checkpoint signer", st);
        goto out;
    }
    st = cv_http_run(&srv);
    cv_checkpointer_stop(cp);
    rc = st == CV_OK ? CV_EXIT_OK : CV_EXIT_FAIL;
out:
    if (lockfd >= 0)
        close(lockfd);
    cv_datadir_free(srv.dd);
    srv.dd = NULL;
    cv_intake_pool_free(srv.pool);
    srv.pool = NULL;
    return rc;
}
