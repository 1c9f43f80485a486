/*
 * server/routes_health: /healthz (the process answers), /readyz (database
 * writable, data dir writable, keys loaded), /metrics (Prometheus text,
 * loopback clients only unless server.metrics_loopback_only = false).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casevault/db.h"
#include "metrics.h"
#include "routes.h"

void cv_route_healthz(struct cv_request *req)
{
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string("ok"));
    cv_reply_json(req, 200, j);
}

static int dir_writable(const char *dir)
{
    return access(dir, W_OK | X_OK) == 0;
}

void cv_route_readyz(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    int db_ok = cv_db_check_writable(dd->db) == CV_OK;
    int dir_ok = dir_writable(dd->root) && dir_writable(dd->tmp) && dir_writable(dd->blobs);
    int keys_ok = dd->kr != NULL;
    json_t *checks = json_object();
    json_object_set_new(checks, "database", json_string(db_ok ? "ok" : "failing"));
    json_object_set_new(checks, "data_dir", json_string(dir_ok ? "ok" : "failing"));
    json_object_set_new(checks, "keys", json_string(keys_ok ? "ok" : "failing"));
    if (db_ok && dir_ok && keys_ok) {
        json_t *j = json_object();
        json_object_set_new(j, "status", json_string("ready"));
        json_object_set_new(j, "checks", checks);
        cv_reply_json(req, 200, j);
        return;
    }
    json_t *ext = json_object();
    json_object_set_new(ext, "checks", checks);
    cv_reply_header(req, "Retry-After", "1");
    cv_reply_problem(req, CV_E_BUSY, ext, "not ready: a dependency is failing");
}

static int is_loopback(const char *client)
{
    return strncmp(client, "127.", 4) == 0 || strcmp(client, "::1") == 0 ||
           strncmp(client, "::ffff:127.", 11) == 0;
}

void cv_route_metrics(struct cv_request *req)
{
    size_t len = 0;
    if (req->srv->cfg.metrics_loopback_only && !is_loopback(req->client)) {
        cv_reply_problem(req, CV_E_FORBIDDEN, NULL, "metrics are served to loopback clients only");
        return;
    }
    char *text = cv_metrics_render(&len);
    if (text == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        return;
    }
    cv_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}
