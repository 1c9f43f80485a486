/*
 * server/metrics: in-memory counters behind one mutex, rendered on demand in
 * the Prometheus text format. Label values are route patterns and methods
 * from the static route table, never raw paths, so cardinality is bounded.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv_build.h"
#include "metrics.h"

#define MAX_SERIES   512
#define MAX_ROUTES   128
#define MAX_COUNTERS 32

static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

struct series {
    const char *route;
    const char *method;
    unsigned status;
    uint64_t count;
};

struct hist {
    const char *route;
    uint64_t b[NBUCKETS];
    uint64_t count;
    double sum;
};

struct counter {
    const char *name;
    const char *help;
    uint64_t v;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct series series[MAX_SERIES];
static size_t nseries;
static struct hist hists[MAX_ROUTES];
static size_t nhists;
static struct counter counters[MAX_COUNTERS];
static size_t ncounters;
static long inflight;

long cv_metrics_inflight(int delta)
{
    pthread_mutex_lock(&mu);
    inflight += delta;
    long v = inflight;
    pthread_mutex_unlock(&mu);
    return v;
}

/* Label values must outlive the request: map the method to a static string. */
static const char *intern_method(const char *m)
{
    static const char *known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i], m) == 0)
            return known[i];
    return "OTHER";
}

void cv_metrics_observe(const char *route, const char *method, unsigned status, double seconds)
{
    method = intern_method(method);
    pthread_mutex_lock(&mu);
    size_t i;
    for (i = 0; i < nseries; i++)
        if (series[i].status == status && strcmp(series[i].route, route) == 0 &&
            strcmp(series[i].method, method) == 0)
            break;
    if (i == nseries && nseries < MAX_SERIES)
        series[nseries++] = (struct series){route, method, status, 0};
    if (i < nseries)
        series[i].count++;
    for (i = 0; i < nhists; i++)
        if (strcmp(hists[i].route, route) == 0)
            break;
    if (i == nhists && nhists < MAX_ROUTES) {
        memset(&hists[nhists], 0, sizeof hists[0]);
        hists[nhists++].route = route;
    }
    if (i < nhists) {
        for (size_t b = 0; b < NBUCKETS; b++)
            if (seconds <= buckets[b])
                hists[i].b[b]++;
        hists[i].count++;
        hists[i].sum += seconds;
    }
    pthread_mutex_unlock(&mu);
}

void cv_metrics_count(const char *name, const char *help, uint64_t n)
{
    pthread_mutex_lock(&mu);
    size_t i;
    for (i = 0; i < ncounters; i++)
        if (strcmp(counters[i].name, name) == 0)
            break;
    if (i == ncounters && ncounters < MAX_COUNTERS)
        counters[ncounters++] = (struct counter){name, help, 0};
    if (i < ncounters)
        counters[i].v += n;
    pthread_mutex_unlock(&mu);
}

struct out {
    char *buf;
    size_t len, cap;
    int oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = (o->cap ? o->cap * 2 : 8192) + (size_t)n;
        char *nb = realloc(o->buf, ncap);
        if (nb == NULL) {
            o->oom = 1;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

char *cv_metrics_render(size_t *len)
{
    struct out o = {0};
    pthread_mutex_lock(&mu);
    put(&o,
        "# HELP casevault_build_info Build information.\n"
        "# TYPE casevault_build_info gauge\n"
        "casevault_build_info{version=\"%s\"} 1\n",
        CV_VERSION);
    put(&o,
        "# HELP casevault_http_requests_in_flight Requests being served.\n"
        "# TYPE casevault_http_requests_in_flight gauge\n"
        "casevault_http_requests_in_flight %ld\n",
        inflight);
    put(&o, "# HELP casevault_http_requests_total Finished HTTP requests.\n"
            "# TYPE casevault_http_requests_total counter\n");
    for (size_t i = 0; i < nseries; i++)
        put(&o, "casevault_http_requests_total{route=\"%s\",method=\"%s\",status=\"%u\"} %llu\n",
            series[i].route, series[i].method, series[i].status,
            (unsigned long long)series[i].count);
    put(&o, "# HELP casevault_http_request_duration_seconds Time from first byte to reply "
            "completion.\n"
            "# TYPE casevault_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < nhists; i++) {
        for (size_t b = 0; b < NBUCKETS; b++)
            put(&o, "casevault_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                hists[i].route, buckets[b], (unsigned long long)hists[i].b[b]);
        put(&o,
            "casevault_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
            "casevault_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "casevault_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            hists[i].route, (unsigned long long)hists[i].count, hists[i].route, hists[i].sum,
            hists[i].route, (unsigned long long)hists[i].count);
    }
    for (size_t i = 0; i < ncounters; i++)
        put(&o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name, counters[i].help,
            counters[i].name, counters[i].name, (unsigned long long)counters[i].v);
    pthread_mutex_unlock(&mu);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
