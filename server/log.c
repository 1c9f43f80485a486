/*
 * server/log: JSON lines on stderr, one write(2) per line so that lines
 * from concurrent threads never interleave.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casevault/util.h"
#include "log.h"

void cv_log(const char *level, const char *msg, json_t *fields)
{
    char now[CV_TIME_LEN + 1];
    json_t *o = fields ? fields : json_object();
    if (o == NULL)
        return;
    cv_time_format(cv_now_ms(), now);
    json_object_set_new(o, "time", json_string(now));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "msg", json_string(msg));
    char *line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(o);
    if (line == NULL)
        return;
    size_t n = strlen(line);
    char *buf = malloc(n + 2);
    if (buf != NULL) {
        memcpy(buf, line, n);
        buf[n] = '\n';
        ssize_t w = write(STDERR_FILENO, buf, n + 1);
        (void)w;
        free(buf);
    }
    free(line);
}
