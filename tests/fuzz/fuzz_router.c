/* Fuzz target: route matching and percent-decoding of request paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "POST", "PUT", "DELETE"};
    struct cv_request req;
    char allow[128];
    char *url = malloc(size + 1);
    if (url == NULL || size == 0) {
        free(url);
        return 0;
    }
    memcpy(url, data + 1, size - 1);
    url[size - 1] = '\0';
    memset(&req, 0, sizeof req);
    req.method = methods[data[0] & 3];
    req.url = url;
    if (cv_router_match(cv_routes, cv_routes_count, &req, allow, sizeof allow) == CV_OK) {
        for (unsigned i = 0; i < req.nparams; i++)
            if (strchr(req.param[i], '/') != NULL || req.param[i][0] == '\0')
                abort();
    }
    free(url);
    return 0;
}
