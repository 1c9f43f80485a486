/*
 * server/router: pattern matching of "/a/{name}/b" routes, segment by
 * segment. Parameters are percent-decoded and must not contain '/', NUL or
 * control characters.
 */
#include <stdio.h>
#include <string.h>

#include "casevault/util.h"
#include "router.h"

/* Decode one segment [s, s+len) into out[cap]; 0 on success. */
static int decode_segment(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int h = cv_hex_digit(s[i + 1]), l = cv_hex_digit(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || c == '/')
            return -1;
        if (o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    if (o == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

static int match_path(const char *pattern, const char *path, struct cv_request *req)
{
    const char *p = pattern, *u = path;
    unsigned np = 0;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            return 0;
        p++;
        u++;
        const char *pe = strchr(p, '/');
        const char *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t ul = ue ? (size_t)(ue - u) : strlen(u);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (np >= CV_MAX_PARAMS || pl - 2 >= sizeof req->param_name[0])
                return 0;
            if (decode_segment(u, ul, req->param[np], sizeof req->param[np]) != 0)
                return 0;
            memcpy(req->param_name[np], p + 1, pl - 2);
            req->param_name[np][pl - 2] = '\0';
            np++;
        } else if (pl != ul || memcmp(p, u, pl) != 0) {
            return 0;
        }
        p += pl;
        u += ul;
    }
    if (*p || *u)
        return 0;
    req->nparams = np;
    return 1;
}

cv_status cv_router_match(const struct cv_route *routes, size_t n, struct cv_request *req,
                          char *allow, size_t cap)
{
    allow[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (!match_path(routes[i].pattern, req->url, req))
            continue;
        if (strcmp(routes[i].method, req->method) == 0) {
            req->route = &routes[i];
            return CV_OK;
        }
        if (strstr(allow, routes[i].method) == NULL) {
            int w = snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", routes[i].method);
            if (w > 0 && (size_t)w < cap - used)
                used += (size_t)w;
        }
    }
    req->nparams = 0;
    return CV_E_NOT_FOUND;
}
