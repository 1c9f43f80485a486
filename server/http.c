/*
 * server/http: libmicrohttpd glue. Owns the listening socket, the per-request
 * pipeline (route, limits, authentication, body, handler, reply), request
 * logs and metrics, the request deadline watchdog and graceful shutdown.
 * It never touches SQLite, libgd or libarchive: handlers call module APIs.
 *
 * Threading mode: MHD_USE_THREAD_PER_CONNECTION with an internal accept
 * thread and poll() (STACK-NOTES §1). Handlers block (SQLite commits with
 * fsync, Argon2, image decoding through the worker pool, streaming blob
 * decryption) and thread-per-connection is the mode in which blocking one
 * request never stalls another; the cost is one thread per connection,
 * bounded by server.max_connections (512 by default) and memory-heavy stages
 * are bounded separately (decoder queue). poll() avoids the FD_SETSIZE cap of
 * select(); epoll is not allowed in this mode.
 *
 * DESIGN NOTES
 * 1. A request's first handler call decides everything that needs no body:
 *    route, 405, header size, Content-Length against the limit, Transfer-
 *    Encoding together with Content-Length, authentication and role. A refusal
 *    is queued right there, so MHD skips 100-continue and discards the body.
 * 2. MHD 0.9.75 cannot queue a response while body bytes still arrive: errors
 *    found mid-body are remembered in req->failed and answered in the final
 *    call; a chunked body that keeps coming past twice the limit is cut off.
 * 3. server.idle_timeout is MHD's own idle timeout. server.request_timeout is
 *    enforced by a watchdog thread that shuts down the socket of any
 *    connection whose current request has not been fully received in time
 *    (slow headers or slow body); the connection's thread then unwinds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "router.h"

/* ---- connection registry for the request deadline ---- */

struct conn_entry {
    struct conn_entry *next, *prev;
    int fd;
    int64_t armed_at; /* monotonic ms when the current request began; 0 = not armed */
    int killed;
};

static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static struct conn_entry *conns;
static volatile int stopping;

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn_entry *e = calloc(1, sizeof *e);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (e == NULL)
            return;
        e->fd = ci ? ci->connect_fd : -1;
        e->armed_at = cv_mono_ms();
        pthread_mutex_lock(&conn_mu);
        e->next = conns;
        if (conns)
            conns->prev = e;
        conns = e;
        pthread_mutex_unlock(&conn_mu);
        *socket_ctx = e;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn_entry *e = *socket_ctx;
        if (e == NULL)
            return;
        pthread_mutex_lock(&conn_mu);
        if (e->prev)
            e->prev->next = e->next;
        else
            conns = e->next;
        if (e->next)
            e->next->prev = e->prev;
        pthread_mutex_unlock(&conn_mu);
        free(e);
        *socket_ctx = NULL;
    }
}

static void conn_arm(struct MHD_Connection *c, int on)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci == NULL || ci->socket_context == NULL)
        return;
    struct conn_entry *e = ci->socket_context;
    pthread_mutex_lock(&conn_mu);
    e->armed_at = on ? cv_mono_ms() : 0;
    pthread_mutex_unlock(&conn_mu);
}

struct watchdog {
    pthread_t th;
    int64_t limit_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        int64_t now = cv_mono_ms();
        unsigned killed = 0;
        pthread_mutex_lock(&conn_mu);
        for (struct conn_entry *e = conns; e; e = e->next) {
            if (e->armed_at != 0 && !e->killed && e->fd >= 0 && now - e->armed_at > w->limit_ms) {
                /* The fd stays open until MHD_CONNECTION_NOTIFY_CLOSED removes
                 * the entry under conn_mu, so it cannot be reused here. */
                shutdown(e->fd, SHUT_RDWR);
                e->killed = 1;
                killed++;
            }
        }
        pthread_mutex_unlock(&conn_mu);
        if (killed) {
            cv_metrics_count("casevault_http_deadline_kills_total",
                             "Connections closed because a request missed its deadline.", killed);
            json_t *f = json_object();
            json_object_set_new(f, "connections", json_integer(killed));
            cv_log("warn", "request deadline exceeded; connection closed", f);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- request helpers ---- */

const char *cv_req_param(struct cv_request *req, const char *name)
{
    for (unsigned i = 0; i < req->nparams; i++)
        if (strcmp(req->param_name[i], name) == 0)
            return req->param[i];
    return NULL;
}

const char *cv_req_query(struct cv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *cv_req_header(struct cv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

char *cv_json_dumps_compact(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

cv_status cv_req_json(struct cv_request *req, json_t **out, char *err, size_t errcap)
{
    json_error_t je;
    if (req->body_len == 0) {
        snprintf(err, errcap, "a JSON object body is required");
        return CV_E_MALFORMED_JSON;
    }
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        snprintf(err, errcap, "invalid JSON at line %d column %d", je.line, je.column);
        return CV_E_MALFORMED_JSON;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errcap, "the body must be a JSON object");
        return CV_E_MALFORMED_JSON;
    }
    *out = j;
    return CV_OK;
}

/* ---- replies ---- */

static void queue(struct cv_request *req, unsigned status, struct MHD_Response *resp,
                  const char *content_type)
{
    if (req->queued) {
        /* A handler bug: two replies. Keep the first. */
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, "X-Request-Id", req->id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (unsigned i = 0; i < req->nextra; i++)
        MHD_add_response_header(resp, req->extra[i].name, req->extra[i].value);
    if (stopping)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    req->status = status;
    req->queued = 1;
    if (MHD_queue_response(req->conn, status, resp) != MHD_YES)
        req->status = 0;
    MHD_destroy_response(resp);
}

void cv_reply_header(struct cv_request *req, const char *name, const char *value)
{
    if (req->nextra >= CV_MAX_EXTRA_HEADERS)
        return;
    snprintf(req->extra[req->nextra].name, sizeof req->extra[0].name, "%s", name);
    snprintf(req->extra[req->nextra].value, sizeof req->extra[0].value, "%s", value);
    req->nextra++;
}

void cv_reply_text(struct cv_request *req, unsigned status, const char *content_type,
                   const char *text, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return;
    req->bytes_out = len;
    queue(req, status, r, content_type);
}

static void reply_owned(struct cv_request *req, unsigned status, const char *ctype, char *buf,
                        size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return;
    }
    req->bytes_out = len;
    queue(req, status, r, ctype);
}

void cv_reply_json(struct cv_request *req, unsigned status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    char *buf = realloc(s, n + 2);
    if (buf == NULL) {
        free(s);
        return;
    }
    buf[n] = '\n';
    reply_owned(req, status, "application/json", buf, n + 1);
}

void cv_reply_problem(struct cv_request *req, cv_status st, json_t *ext, const char *detail, ...)
{
    int http = 500;
    const char *code = "internal";
    char d[512];
    char type[96];
    cv_status_http(st, &http, &code);
    if (detail) {
        va_list ap;
        va_start(ap, detail);
        vsnprintf(d, sizeof d, detail, ap);
        va_end(ap);
    } else {
        snprintf(d, sizeof d, "%s", cv_status_str(st));
    }
    snprintf(type, sizeof type, "/problems/%s", code);
    json_t *p = ext && json_is_object(ext) ? ext : json_object();
    if (ext && p != ext)
        json_decref(ext);
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(cv_status_str(st)));
    json_object_set_new(p, "status", json_integer(http));
    json_object_set_new(p, "detail", json_string(d));
    json_object_set_new(p, "code", json_string(code));
    json_object_set_new(p, "request_id", json_string(req->id));
    req->problem_code = code;
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(p);
    if (s == NULL)
        return;
    reply_owned(req, (unsigned)http, "application/problem+json", s, strlen(s));
}

void cv_reply_response(struct cv_request *req, unsigned status, struct MHD_Response *resp)
{
    queue(req, status, resp, NULL);
}

/* ---- the pipeline ---- */

struct hdr_sum {
    size_t n;
};

static enum MHD_Result sum_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value)
{
    (void)kind;
    struct hdr_sum *s = cls;
    s->n += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static size_t count_header_bytes(struct cv_request *req)
{
    struct hdr_sum s = {strlen(req->method) + strlen(req->url) + 12};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, sum_cb, &s);
    return s.n;
}

static void set_request_id(struct cv_request *req)
{
    const char *given = cv_req_header(req, "X-Request-Id");
    if (given != NULL && strlen(given) <= CV_ULID_LEN && given[0] != '\0') {
        int ok = 1;
        for (const char *p = given; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                ok = 0;
        if (ok) {
            snprintf(req->id, sizeof req->id, "%s", given);
            return;
        }
    }
    cv_ulid_new(req->id);
}

static void set_client(struct cv_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(req->client, sizeof req->client, "unknown");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->client,
                  sizeof req->client);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  req->client, sizeof req->client);
}

/* Authentication and role check; replies and returns non-zero on refusal. */
static int authorize(struct cv_request *req)
{
    const struct cv_route *rt = req->route;
    if (rt->roles == 0)
        return 0;
    const char *h = cv_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        cv_reply_header(req, "WWW-Authenticate", "Bearer");
        cv_reply_problem(req, CV_E_UNAUTHORIZED, NULL, "a bearer token is required");
        return 1;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    cv_status st = cv_token_authenticate(req->srv->dd->db, req->srv->dd->kr, tok, &req->who);
    if (st == CV_E_UNAUTHORIZED) {
        cv_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        cv_reply_problem(req, CV_E_UNAUTHORIZED, NULL,
                         "the bearer token is unknown, revoked or expired");
        return 1;
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        return 1;
    }
    if ((rt->roles & (unsigned)req->who.role) == 0) {
        if (req->who.role == CV_ROLE_APPLICANT) {
            /* An applicant token reveals nothing about other resources. */
            cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such resource");
            return 1;
        }
        cv_reply_problem(req, CV_E_FORBIDDEN, NULL, "role %s may not %s %s",
                         cv_role_str(req->who.role), req->method, rt->pattern);
        return 1;
    }
    if (req->who.role == CV_ROLE_APPLICANT) {
        /* A case token reaches only its own case ({id}) and id-less routes
         * that list the applicant role (whoami). */
        const char *id = cv_req_param(req, "id");
        if (id != NULL && strcmp(id, req->who.case_id) != 0) {
            cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such case");
            return 1;
        }
    }
    return 0;
}

/* First call: everything decided from the request line and headers. */
/* Body bytes a request may send. A multipart upload may exceed
 * server.max_body_bytes by CV_MULTIPART_SLACK of framing: the limit counts
 * file bytes (the upload route caps the file part itself, case C23). */
#define CV_MULTIPART_SLACK 16384
static unsigned long long body_cap(struct cv_request *req)
{
    const struct cv_config *cfg = &req->srv->cfg;
    if (req->route->body == CV_BODY_JSON)
        return cfg->max_json_bytes;
    const char *ct = cv_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (req->route->body == CV_BODY_STREAM && ct != NULL && strncasecmp(ct, "multipart/", 10) == 0)
        return cfg->max_body_bytes + CV_MULTIPART_SLACK;
    return cfg->max_body_bytes;
}

static void begin_request(struct cv_request *req)
{
    struct cv_server *srv = req->srv;
    const struct cv_config *cfg = &srv->cfg;
    char allow[128];

    set_request_id(req);
    set_client(req);
    if (count_header_bytes(req) > cfg->max_header_bytes) {
        cv_reply_problem(req, CV_E_HEADERS_TOO_LARGE, NULL,
                         "request line and headers exceed %u bytes", cfg->max_header_bytes);
        return;
    }
    const char *te = cv_req_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl = cv_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (te != NULL && cl != NULL) {
        /* RFC 9112 §6.3: a request smuggling vector; refuse and close. */
        cv_reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        cv_reply_problem(req, CV_E_BAD_REQUEST, NULL,
                         "Transfer-Encoding and Content-Length must not both be present");
        return;
    }
    if (te != NULL && strcasecmp(te, "chunked") != 0) {
        cv_reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        cv_reply_problem(req, CV_E_BAD_REQUEST, NULL,
                         "only chunked Transfer-Encoding is supported");
        return;
    }
    req->content_length = ULLONG_MAX;
    if (cl != NULL) {
        char *end = NULL;
        errno = 0;
        req->content_length = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || *end != '\0') {
            cv_reply_problem(req, CV_E_BAD_REQUEST, NULL, "invalid Content-Length");
            return;
        }
    }
    if (cv_router_match(srv->routes, srv->nroutes, req, allow, sizeof allow) != CV_OK) {
        if (allow[0] != '\0') {
            cv_reply_header(req, "Allow", allow);
            cv_reply_problem(req, CV_E_METHOD_NOT_ALLOWED, NULL, "allowed methods: %s", allow);
        } else {
            cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such resource");
        }
        return;
    }
    unsigned long long cap = body_cap(req);
    if (req->content_length != ULLONG_MAX && req->content_length > cap) {
        cv_reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        cv_reply_problem(req, CV_E_PAYLOAD_TOO_LARGE, NULL, "the body may be at most %llu bytes",
                         cap);
        return;
    }
    if (authorize(req))
        return;
    if (req->route->body == CV_BODY_STREAM && req->route->stream_begin) {
        cv_status st = req->route->stream_begin(req);
        if (st != CV_OK && !req->queued)
            cv_reply_problem(req, st, NULL, NULL);
    }
}

static void receive(struct cv_request *req, const char *data, size_t n)
{
    const struct cv_config *cfg = &req->srv->cfg;
    if (req->failed != CV_OK || req->route == NULL)
        return;
    switch (req->route->body) {
    case CV_BODY_NONE:
        if (req->bytes_in > cfg->max_json_bytes) {
            req->failed = CV_E_PAYLOAD_TOO_LARGE;
            snprintf(req->failed_detail, sizeof req->failed_detail,
                     "this resource takes no request body");
        }
        return;
    case CV_BODY_JSON:
        if (req->body_len + n > cfg->max_json_bytes) {
            req->failed = CV_E_PAYLOAD_TOO_LARGE;
            snprintf(req->failed_detail, sizeof req->failed_detail,
                     "the JSON body may be at most %u bytes", cfg->max_json_bytes);
            return;
        }
        if (req->body_len + n > req->body_cap) {
            /* Grow by copy (never realloc), wiping the old buffer: JSON
             * bodies may carry PII (real-name records, case applications). */
            size_t ncap = req->body_cap ? req->body_cap : 4096;
            while (ncap < req->body_len + n)
                ncap *= 2;
            if (ncap > cfg->max_json_bytes)
                ncap = cfg->max_json_bytes;
            char *nb = malloc(ncap);
            if (nb == NULL) {
                req->failed = CV_E_NOMEM;
                return;
            }
            if (req->body) {
                memcpy(nb, req->body, req->body_len);
                sodium_memzero(req->body, req->body_cap);
                free(req->body);
            }
            req->body = nb;
            req->body_cap = ncap;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        return;
    case CV_BODY_STREAM:
        if (req->bytes_in > body_cap(req)) {
            req->failed = CV_E_PAYLOAD_TOO_LARGE;
            snprintf(req->failed_detail, sizeof req->failed_detail,
                     "the body may be at most %llu bytes", cfg->max_body_bytes);
            return;
        }
        if (req->route->stream_data) {
            cv_status st = req->route->stream_data(req, data, n);
            if (st != CV_OK)
                req->failed = st;
        }
        return;
    }
}

static void finish(struct cv_request *req)
{
    if (req->failed != CV_OK) {
        if (req->failed_detail[0])
            cv_reply_problem(req, req->failed, NULL, "%s", req->failed_detail);
        else
            cv_reply_problem(req, req->failed, NULL, NULL);
        return;
    }
    req->route->handler(req);
    if (!req->queued)
        cv_reply_problem(req, CV_E_INTERNAL, NULL, "the handler produced no reply");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct cv_request *req = *con_cls;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        req->srv = cls;
        req->conn = conn;
        req->url = url;
        req->method = method;
        req->start_mono_ms = cv_mono_ms();
        *con_cls = req;
        cv_metrics_inflight(1);
        begin_request(req);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        req->bytes_in += n;
        if (req->queued)
            return MHD_YES;
        receive(req, upload_data, n);
        /* A body that keeps coming far past the limit is cut off (DESIGN NOTES 2). */
        if (req->failed == CV_E_PAYLOAD_TOO_LARGE &&
            req->bytes_in > 2 * req->srv->cfg.max_body_bytes + 65536)
            return MHD_NO;
        return MHD_YES;
    }
    conn_arm(conn, 0);
    if (req->queued)
        return MHD_YES;
    finish(req);
    return req->status != 0 ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    struct cv_request *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    if (req->route && req->route->stream_abort && req->stream_ctx)
        req->route->stream_abort(req);
    double secs = (double)(cv_mono_ms() - req->start_mono_ms) / 1000.0;
    const char *route = req->route ? req->route->pattern : "unmatched";
    unsigned status = req->status;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 0)
        status = 499; /* client went away / deadline: nginx's convention */
    cv_metrics_observe(route, req->method, status, secs);
    json_t *f = json_object();
    json_object_set_new(f, "request_id", json_string(req->id));
    json_object_set_new(f, "method", json_string(req->method));
    json_object_set_new(f, "route", json_string(route));
    json_object_set_new(f, "status", json_integer(status));
    json_object_set_new(f, "duration_ms", json_real((double)(int64_t)(secs * 1e6) / 1000.0));
    json_object_set_new(f, "bytes_in", json_integer((json_int_t)req->bytes_in));
    json_object_set_new(f, "bytes_out", json_integer((json_int_t)req->bytes_out));
    if (req->problem_code)
        json_object_set_new(f, "code", json_string(req->problem_code));
    if (req->who.role != CV_ROLE_NONE) {
        json_object_set_new(f, "role", json_string(cv_role_str(req->who.role)));
        json_object_set_new(f, "token_id", json_string(req->who.token_id));
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        json_object_set_new(f, "terminated", json_integer((json_int_t)toe));
    cv_log(status >= 500 ? "error" : "info", "request", f);
    cv_metrics_inflight(-1);
    conn_arm(conn, 1);
    if (req->body) {
        sodium_memzero(req->body, req->body_cap);
        free(req->body);
    }
    free(req);
}

/* ---- listening socket ---- */

static cv_status parse_listen(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return CV_E_CONFIG;
        if ((size_t)(rb - s - 1) >= hcap)
            return CV_E_CONFIG;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= hcap)
            return CV_E_CONFIG;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    if (snprintf(port, pcap, "%s", colon + 1) >= (int)pcap || port[0] == '\0')
        return CV_E_CONFIG;
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return CV_E_CONFIG;
    return CV_OK;
}

static cv_status open_listener(const char *listen_on, int *fd_out, char *where, size_t wcap)
{
    char host[96], port[16];
    struct addrinfo hints, *res = NULL;
    int fd = -1, one = 1;
    cv_status rc = CV_E_CONFIG;
    if (parse_listen(listen_on, host, sizeof host, port, sizeof port) != CV_OK)
        return CV_E_CONFIG;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || res == NULL)
        return CV_E_CONFIG;
    rc = CV_E_IO;
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0)
        goto out;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[64];
    unsigned p = 0;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        p = ntohs(a->sin6_port);
        snprintf(where, wcap, "[%s]:%u", ip, p);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        p = ntohs(a->sin_port);
        snprintf(where, wcap, "%s:%u", ip, p);
    }
    *fd_out = fd;
    fd = -1;
    rc = CV_OK;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    json_t *f = json_object();
    json_object_set_new(f, "detail", json_string(msg));
    cv_log("warn", "libmicrohttpd", f);
}

cv_status cv_http_run(struct cv_server *srv)
{
    cv_status rc = CV_E_IO;
    const struct cv_config *cfg = &srv->cfg;
    int lfd = -1;
    char where[128];
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    struct watchdog wd;
    int wd_started = 0;
    sigset_t sigs;

    memset(&wd, 0, sizeof wd);
    if ((rc = open_listener(cfg->listen, &lfd, where, sizeof where)) != CV_OK) {
        json_t *f = json_object();
        json_object_set_new(f, "listen", json_string(cfg->listen));
        cv_log("error", rc == CV_E_CONFIG ? "invalid listen address" : "cannot listen", f);
        goto out;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    snprintf(srv->scheme, sizeof srv->scheme, "http");
    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
            cv_log("error", "tls_cert and tls_key must be given together", NULL);
            rc = CV_E_CONFIG;
            goto out;
        }
        if (cv_file_read(cfg->tls_cert, 1 << 20, &cert, &cert_len) != CV_OK ||
            cv_file_read(cfg->tls_key, 1 << 20, &key, &key_len) != CV_OK) {
            cv_log("error", "cannot read the TLS certificate or key file", NULL);
            rc = CV_E_CONFIG;
            goto out;
        }
        flags |= MHD_USE_TLS;
        snprintf(srv->scheme, sizeof srv->scheme, "https");
    }
    size_t pool = (size_t)cfg->max_header_bytes + 48 * 1024;
    struct MHD_OptionItem tls_opts[] = {
        {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert},
        {key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, key},
        {cert ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0, srv->cfg.tls_priorities},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        pool, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, srv, MHD_OPTION_ARRAY, cert ? tls_opts : &tls_opts[3], MHD_OPTION_END);
    if (srv->daemon == NULL) {
        cv_log("error", "libmicrohttpd failed to start (TLS material invalid?)", NULL);
        rc = CV_E_IO;
        goto out;
    }
    lfd = -1; /* the daemon owns it now */
    wd.limit_ms = (int64_t)cfg->request_timeout_s * 1000;
    pthread_mutex_init(&wd.mu, NULL);
    pthread_cond_init(&wd.cv, NULL);
    if (wd.limit_ms > 0 && pthread_create(&wd.th, NULL, watchdog_main, &wd) == 0)
        wd_started = 1;

    json_t *f = json_object();
    char url[160];
    snprintf(url, sizeof url, "%s://%s", srv->scheme, where);
    json_object_set_new(f, "url", json_string(url));
    json_object_set_new(f, "data", json_string(srv->dd->root));
    cv_log("info", "listening", f);

    /* Wait for SIGTERM/SIGINT (blocked in every thread by main). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    stopping = 1;
    f = json_object();
    json_object_set_new(f, "signal", json_integer(sig));
    cv_log("info", "shutting down: no new connections, draining in-flight requests", f);
    MHD_socket qfd = MHD_quiesce_daemon(srv->daemon);
    if (qfd != MHD_INVALID_SOCKET)
        close(qfd);
    int64_t until = cv_mono_ms() + (int64_t)cfg->shutdown_grace_s * 1000;
    while (cv_metrics_inflight(0) > 0 && cv_mono_ms() < until)
        usleep(20 * 1000);
    long left = cv_metrics_inflight(0);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    /* Producers of streamed bodies borrow the data dir: they end with EPIPE
     * now that every pipe's read end is closed; wait for them. */
    while (cv_stream_wait_idle(5000) > 0)
        cv_log("warn", "waiting for streamed responses to unwind", NULL);
    f = json_object();
    json_object_set_new(f, "abandoned_requests", json_integer(left));
    cv_log("info", "stopped", f);
    rc = CV_OK;
out:
    if (wd_started) {
        pthread_mutex_lock(&wd.mu);
        wd.quit = 1;
        pthread_cond_signal(&wd.cv);
        pthread_mutex_unlock(&wd.mu);
        pthread_join(wd.th, NULL);
    }
    if (wd.limit_ms > 0) {
        pthread_mutex_destroy(&wd.mu);
        pthread_cond_destroy(&wd.cv);
    }
    if (lfd >= 0)
        close(lfd);
    if (key) {
        sodium_memzero(key, key_len);
        free(key);
    }
    free(cert);
    return rc;
}
