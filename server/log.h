/*
 * Private to server/: one JSON object per line on stderr. Callers pass only
 * ids, route patterns, numbers and fixed messages: never a token, a body,
 * a raw path or PII.
 */
#ifndef CASEVAULT_SERVER_LOG_H
#define CASEVAULT_SERVER_LOG_H

#include <jansson.h>

/* cv_log - write {"time","level","msg"} plus the members of `fields`
 * (stolen, may be NULL) as one line, atomically with respect to other
 * cv_log calls. level: "info", "warn", "error". */
void cv_log(const char *level, const char *msg, json_t *fields);

#endif
