/* Unit tests: server/router pattern matching, parameters, 405 Allow lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "router.h"

static void h(struct cv_request *req)
{
    (void)req;
}

static const struct cv_route routes[] = {
    {"GET", "/v1/cases", 0, CV_BODY_NONE, h, NULL, NULL, NULL},
    {"POST", "/v1/cases", 0, CV_BODY_JSON, h, NULL, NULL, NULL},
    {"GET", "/v1/cases/{id}", 0, CV_BODY_NONE, h, NULL, NULL, NULL},
    {"PUT", "/v1/cases/{id}/documents/{kind}", 0, CV_BODY_STREAM, h, NULL, NULL, NULL},
};

static cv_status match(const char *method, const char *url, struct cv_request *req, char *allow)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->url = url;
    return cv_router_match(routes, 4, req, allow, 64);
}

static void test_match(void **state)
{
    (void)state;
    struct cv_request req;
    char allow[64];
    assert_int_equal(match("GET", "/v1/cases", &req, allow), CV_OK);
    assert_ptr_equal(req.route, &routes[0]);
    assert_int_equal(match("POST", "/v1/cases", &req, allow), CV_OK);
    assert_ptr_equal(req.route, &routes[1]);
    assert_int_equal(match("PUT", "/v1/cases/01ABC/documents/id_in_hand", &req, allow), CV_OK);
    assert_string_equal(cv_req_param(&req, "id"), "01ABC");
    assert_string_equal(cv_req_param(&req, "kind"), "id_in_hand");
    assert_null(cv_req_param(&req, "nope"));
    assert_int_equal(match("GET", "/v1/cases/a%20b", &req, allow), CV_OK);
    assert_string_equal(cv_req_param(&req, "id"), "a b");
}

static void test_refusals(void **state)
{
    (void)state;
    struct cv_request req;
    char allow[64];
    assert_int_equal(match("DELETE", "/v1/cases", &req, allow), CV_E_NOT_FOUND);
    assert_string_equal(allow, "GET, POST");
    assert_int_equal(match("GET", "/v1/nothing", &req, allow), CV_E_NOT_FOUND);
    assert_string_equal(allow, "");
    assert_int_equal(match("GET", "/v1/cases/", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/cases/a/b", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/cases/a%2Fb", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/cases/a%0a", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/cases/a%4", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/cases/%", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "/v1/casesX", &req, allow), CV_E_NOT_FOUND);
    assert_int_equal(match("GET", "v1/cases", &req, allow), CV_E_NOT_FOUND);
    char longid[300];
    memset(longid, 'a', sizeof longid);
    memcpy(longid, "/v1/cases/", 10);
    longid[299] = '\0';
    assert_int_equal(match("GET", longid, &req, allow), CV_E_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
