/*
 * Private to server/: the request object handlers see, the route table
 * entry, and the reply helpers. Handlers never call MHD_queue_response
 * themselves: they call exactly one cv_reply_* and return.
 */
#ifndef CASEVAULT_SERVER_HTTP_H
#define CASEVAULT_SERVER_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "casevault/config.h"
#include "casevault/datadir.h"
#include "casevault/status.h"
#include "casevault/token.h"
#include "casevault/util.h"

#define CV_MAX_PARAMS        4
#define CV_PARAM_MAX         128
#define CV_MAX_EXTRA_HEADERS 6

struct cv_request;
struct cv_server;

enum cv_body_mode {
    CV_BODY_NONE,   /* a body, if any, is discarded (counted) */
    CV_BODY_JSON,   /* buffered up to server.max_json_bytes, then parsed */
    CV_BODY_STREAM, /* handed piece by piece to stream_data */
};

typedef void (*cv_handler_fn)(struct cv_request *req);

struct cv_route {
    const char *method;
    const char *pattern; /* "/v1/cases/{id}": {name} matches one non-empty segment */
    unsigned roles;      /* bitmask of enum cv_role; 0 = no authentication */
    enum cv_body_mode body;
    cv_handler_fn handler; /* called once the body is complete */
    /* CV_BODY_STREAM only: begin after auth (may reply to refuse early),
     * data per piece (an error stops the stream and is answered at the end),
     * abort at the end of every request whose stream_ctx is still non-NULL
     * (client gone, refusal, or a handler that left it): it must release
     * and discard everything the stream holds and set stream_ctx to NULL. */
    cv_status (*stream_begin)(struct cv_request *req);
    cv_status (*stream_data)(struct cv_request *req, const char *data, size_t len);
    void (*stream_abort)(struct cv_request *req);
};

struct cv_request {
    struct cv_server *srv;
    struct MHD_Connection *conn;
    char id[CV_ULID_LEN + 1];
    const char *method;
    const char *url;
    const struct cv_route *route;
    unsigned nparams;
    char param_name[CV_MAX_PARAMS][32];
    char param[CV_MAX_PARAMS][CV_PARAM_MAX];
    struct cv_principal who;
    char client[64];
    int64_t start_mono_ms;
    uint64_t bytes_in;
    unsigned long long content_length; /* ULLONG_MAX when absent (chunked) */
    /* JSON body */
    char *body;
    size_t body_len;
    size_t body_cap;
    /* streaming */
    void *stream_ctx;
    cv_status failed; /* first error while receiving; answered in the final call */
    char failed_detail[160];
    /* reply */
    struct MHD_Response *response;
    unsigned status;
    const char *problem_code;
    uint64_t bytes_out;
    int queued;
    struct {
        char name[40];
        char value[160];
    } extra[CV_MAX_EXTRA_HEADERS];
    unsigned nextra;
};

/* Server-wide state shared by every handler (read-only after start). */
struct cv_server {
    struct cv_config cfg;
    struct cv_datadir *dd;
    struct MHD_Daemon *daemon;
    const struct cv_route *routes;
    size_t nroutes;
    struct cv_intake_pool *pool; /* sandboxed decoders (started before the keyring) */
    char scheme[8];
};

/* ---- reading the request ---- */

/* cv_req_param - value of path parameter `name` (already percent-decoded), or NULL. */
const char *cv_req_param(struct cv_request *req, const char *name);

/* cv_req_query - value of query argument `name` (MHD-decoded), or NULL. */
const char *cv_req_query(struct cv_request *req, const char *name);

/* cv_req_header - value of request header `name` (caseless), or NULL. */
const char *cv_req_header(struct cv_request *req, const char *name);

/*
 * cv_req_json - parse the buffered body as one JSON object (jansson, no
 * duplicate keys, depth-limited by jansson). Out: *out (caller decrefs).
 * Errors: CV_E_MALFORMED_JSON (detail in err[errcap], no body bytes echoed).
 */
cv_status cv_req_json(struct cv_request *req, json_t **out, char *err, size_t errcap);

/* ---- replying (exactly once per request) ---- */

/* cv_reply_json - status + application/json body; steals `body`. */
void cv_reply_json(struct cv_request *req, unsigned status, json_t *body);

/* cv_reply_text - status + body copied from text[len] with content_type. */
void cv_reply_text(struct cv_request *req, unsigned status, const char *content_type,
                   const char *text, size_t len);

/*
 * cv_reply_problem - RFC 9457 application/problem+json for status st:
 * {type, title, status, detail, code, request_id} plus the members of
 * `ext` (stolen, may be NULL). detail is printf-style; NULL = the status
 * message. Never pass PII, tokens or body bytes in detail.
 */
void cv_reply_problem(struct cv_request *req, cv_status st, json_t *ext, const char *detail, ...)
    __attribute__((format(printf, 4, 5)));

/* cv_reply_response - queue a ready MHD response (streams); takes ownership. */
void cv_reply_response(struct cv_request *req, unsigned status, struct MHD_Response *resp);

/* cv_reply_header - add a header to the reply about to be queued (call
 * before the cv_reply_* call). Silently ignored beyond CV_MAX_EXTRA_HEADERS. */
void cv_reply_header(struct cv_request *req, const char *name, const char *value);

/* cv_json_dumps_compact - canonical compact JSON with sorted keys (malloc'd). */
char *cv_json_dumps_compact(const json_t *j);

/* ---- streamed responses (server/stream.c) ---- */

/* Writes the whole body to fd (a blocking pipe) and returns; an error cuts
 * the stream short. Runs in its own thread: ctx must not borrow request memory. */
typedef cv_status (*cv_stream_producer_fn)(void *ctx, int fd);

/*
 * cv_reply_stream - answer `status` with a body that fn(ctx, fd) produces in
 * a new thread (chunked for HTTP/1.1). ctx_free(ctx) runs when fn returns
 * (also when the stream cannot start, in which case a 500 problem is sent).
 * Validate everything and append audit entries before calling this: once
 * it returns, the status line is on its way.
 */
void cv_reply_stream(struct cv_request *req, unsigned status, const char *content_type,
                     cv_stream_producer_fn fn, void *ctx, void (*ctx_free)(void *ctx));

/* cv_stream_wait_idle - wait up to timeout_ms for every producer thread to
 * finish; returns how many are still running. */
int cv_stream_wait_idle(int64_t timeout_ms);

/* ---- the server ---- */

/*
 * cv_http_run - start the daemon on cfg->listen, print where it listens,
 * serve until SIGTERM/SIGINT, drain in-flight requests for
 * cfg->shutdown_grace_s, stop. Returns CV_OK on a clean stop.
 */
cv_status cv_http_run(struct cv_server *srv);

#endif
