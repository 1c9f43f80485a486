/*
 * Private to server/: matching a request against the static route table.
 */
#ifndef CASEVAULT_SERVER_ROUTER_H
#define CASEVAULT_SERVER_ROUTER_H

#include "http.h"

/*
 * cv_router_match - find the route for req->method and req->url (path only;
 * MHD has already split off the query). On success sets req->route and the
 * path parameters (percent-decoded, each a non-empty segment of at most
 * CV_PARAM_MAX-1 bytes without '/'). Errors: CV_E_NOT_FOUND; when the path
 * exists under other methods, allow[cap] lists them ("GET, PUT"), else
 * allow[0] = '\0'.
 */
cv_status cv_router_match(const struct cv_route *routes, size_t n, struct cv_request *req,
                          char *allow, size_t cap);

/* The server's route table (routes.c). */
extern const struct cv_route cv_routes[];
extern const size_t cv_routes_count;

#endif
