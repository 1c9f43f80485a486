/*
 * Private to server/: Prometheus text exposition (format 0.0.4) of request
 * counters by route pattern, method and status, a request-duration
 * histogram by route, in-flight requests, and build info. Thread-safe.
 */
#ifndef CASEVAULT_SERVER_METRICS_H
#define CASEVAULT_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* cv_metrics_inflight - add delta (+1/-1) to the in-flight gauge; returns the new value. */
long cv_metrics_inflight(int delta);

/* cv_metrics_observe - count one finished request. route: pattern or
 * "unmatched" (a static string: it is kept); method: any string (mapped to
 * a static label, unknown ones to "OTHER"); duration in seconds. */
void cv_metrics_observe(const char *route, const char *method, unsigned status, double seconds);

/* cv_metrics_count - add n to the counter `name` (a static string, no labels). */
void cv_metrics_count(const char *name, const char *help, uint64_t n);

/* cv_metrics_render - the whole exposition as a malloc'd string (caller
 * frees); NULL on allocation failure. */
char *cv_metrics_render(size_t *len);

#endif
