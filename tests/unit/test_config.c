/* Unit tests: server/config (defaults, INI file, --set, unknown keys named). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "casevault/config.h"

static void test_defaults(void **state)
{
    (void)state;
    struct cv_config c;
    cv_config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_int_equal(c.max_body_bytes, 25ull * 1024 * 1024);
    assert_int_equal(c.max_megapixels, 80);
    assert_int_equal(c.max_side_px, 20000);
    assert_int_equal(c.decode_timeout_s, 10);
    assert_int_equal(c.decode_memory_mb, 1024);
    assert_int_equal(c.max_connections, 512);
    assert_int_equal(c.max_connections_per_ip, 32);
    assert_int_equal(c.request_timeout_s, 60);
    assert_int_equal(c.min_short_side_px, 480);
    assert_int_equal(c.case_token_ttl_s, 7 * 24 * 3600);
    assert_true(c.metrics_loopback_only);
    assert_false(c.four_eyes);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/cv-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_file_and_set(void **state)
{
    (void)state;
    struct cv_config c;
    char err[300];
    cv_config_defaults(&c);
    char *p = write_tmp("[server]\nlisten = 127.0.0.1:9999\nmax_body_bytes = 1048576\n"
                        "[decision]\nfour_eyes = true\n");
    assert_int_equal(cv_config_load_file(&c, p, err, sizeof err), CV_OK);
    assert_string_equal(c.listen, "127.0.0.1:9999");
    assert_int_equal(c.max_body_bytes, 1048576);
    assert_true(c.four_eyes);
    assert_int_equal(cv_config_set_arg(&c, "intake.min_short_side=0", err, sizeof err), CV_OK);
    assert_int_equal(c.min_short_side_px, 0);
    unlink(p);
    free(p);
}

static void test_errors_name_the_key(void **state)
{
    (void)state;
    struct cv_config c;
    char err[300];
    cv_config_defaults(&c);
    char *p = write_tmp("[server]\nlisten = x:1\nbogus_key = 1\n");
    assert_int_equal(cv_config_load_file(&c, p, err, sizeof err), CV_E_CONFIG);
    assert_non_null(strstr(err, "server.bogus_key"));
    unlink(p);
    free(p);
    assert_int_equal(cv_config_set_arg(&c, "server.max_connections=12x", err, sizeof err),
                     CV_E_CONFIG);
    assert_non_null(strstr(err, "server.max_connections"));
    assert_int_equal(cv_config_set_arg(&c, "server.max_connections=-1", err, sizeof err),
                     CV_E_CONFIG);
    assert_int_equal(cv_config_set_arg(&c, "decision.four_eyes=maybe", err, sizeof err),
                     CV_E_CONFIG);
    assert_int_equal(cv_config_set_arg(&c, "nodot=1", err, sizeof err), CV_E_CONFIG);
    assert_int_equal(cv_config_load_file(&c, "/nonexistent/cv.ini", err, sizeof err),
                     CV_E_NOT_FOUND);
    p = write_tmp("[server\nlisten=1\n");
    assert_int_equal(cv_config_load_file(&c, p, err, sizeof err), CV_E_CONFIG);
    assert_non_null(strstr(err, "line 1"));
    unlink(p);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_and_set),
        cmocka_unit_test(test_errors_name_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
