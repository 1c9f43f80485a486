/* Unit tests: common/util (ULID, RFC 3339, encodings, SHA-256 vectors, whole-buffer
 * reads and writes) and status tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>
#include <sodium.h>

#include "casevault/status.h"
#include "casevault/util.h"

static void test_ulid(void **state)
{
    (void)state;
    char a[CV_ULID_LEN + 1], b[CV_ULID_LEN + 1];
    cv_ulid_new(a);
    cv_ulid_new(b);
    assert_int_equal(strlen(a), 26);
    assert_true(cv_ulid_valid(a));
    assert_string_not_equal(a, b);
    assert_true(a[0] <= '7');
    assert_false(cv_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FA"));   /* 25 chars */
    assert_false(cv_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAVU")); /* 27 chars */
    assert_false(cv_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAI"));  /* I is not Crockford */
    assert_false(cv_ulid_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV"));  /* > 128 bits */
    assert_true(cv_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));   /* spec example */
    /* The time prefix sorts: a later id never sorts before an earlier one. */
    assert_true(strncmp(a, b, 10) <= 0);
}

static void test_time(void **state)
{
    (void)state;
    char t[CV_TIME_LEN + 1];
    cv_time_format(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    cv_time_format(1795980097123LL, t);
    assert_string_equal(t, "2026-11-29T19:21:37.123Z");
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    uint8_t d[32];
    char hex[65];
    /* FIPS 180-4 examples. */
    cv_sha256("abc", 3, d);
    cv_hex_encode(d, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cv_sha256("", 0, d);
    cv_hex_encode(d, 32, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    struct cv_sha256 *h = cv_sha256_new();
    assert_non_null(h);
    cv_sha256_update(h, "ab", 2);
    cv_sha256_update(h, "c", 1);
    cv_sha256_final(h, d);
    cv_hex_encode(d, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cv_sha256_free(NULL);
}

static void test_encodings(void **state)
{
    (void)state;
    uint8_t in[32], out[32];
    char text[64];
    for (int i = 0; i < 32; i++)
        in[i] = (uint8_t)(i * 7 + 250);
    cv_b64url_encode(in, 32, text);
    assert_int_equal(strlen(text), 43);
    assert_null(strchr(text, '+'));
    assert_null(strchr(text, '/'));
    assert_int_equal(cv_b64url_decode(text, out, 32), CV_OK);
    assert_memory_equal(in, out, 32);
    assert_int_equal(cv_b64url_decode("short", out, 32), CV_E_ARG);
    text[5] = '*';
    assert_int_equal(cv_b64url_decode(text, out, 32), CV_E_ARG);
    uint8_t b[3];
    assert_int_equal(cv_hex_decode("00ff7A", b, 3), CV_OK);
    assert_int_equal(b[2], 0x7a);
    assert_int_equal(cv_hex_decode("00ff7", b, 3), CV_E_ARG);
    assert_int_equal(cv_hex_decode("00ff7g", b, 3), CV_E_ARG);
}

static void test_status_tables(void **state)
{
    (void)state;
    int http;
    const char *code;
    /* Every status has a message and an HTTP mapping; DESIGN §7 codes are exact. */
    for (int s = CV_OK; s <= CV_E_BACKUP_CHAIN; s++) {
        assert_string_not_equal(cv_status_str((cv_status)s), "unknown status");
        cv_status_http((cv_status)s, &http, &code);
        assert_true(http >= 200 && http <= 599);
        assert_non_null(code);
    }
    cv_status_http(CV_E_REAL_NAME_UNVERIFIED, &http, &code);
    assert_int_equal(http, 409);
    assert_string_equal(code, "real_name_unverified");
    cv_status_http(CV_E_SUB_ACCOUNT, &http, &code);
    assert_int_equal(http, 422);
    cv_status_http(CV_E_PAYLOAD_TOO_LARGE, &http, &code);
    assert_int_equal(http, 413);
    assert_string_equal(code, "payload_too_large");
    cv_status_http(CV_E_BUSY, &http, &code);
    assert_int_equal(http, 503);
    assert_string_equal(code, "busy");
    assert_string_equal(cv_status_str((cv_status)9999), "unknown status");
}

static void test_parse_u64_and_hex_digit(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(cv_parse_u64("0", &v), CV_OK);
    assert_int_equal(v, 0);
    assert_int_equal(cv_parse_u64("0042", &v), CV_OK);
    assert_int_equal(v, 42);
    assert_int_equal(cv_parse_u64("9999999999999999999", &v), CV_OK); /* 19 digits */
    assert_true(v == 9999999999999999999ull);
    v = 7;
    const char *bad[] = {"", "12345678901234567890", "-1", "+1", " 1", "1 ", "1e3", "0x10", "１"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cv_parse_u64(bad[i], &v), CV_E_ARG);
    assert_int_equal(cv_parse_u64(NULL, &v), CV_E_ARG);
    assert_int_equal(v, 7);
    assert_int_equal(cv_hex_digit('0'), 0);
    assert_int_equal(cv_hex_digit('9'), 9);
    assert_int_equal(cv_hex_digit('a'), 10);
    assert_int_equal(cv_hex_digit('F'), 15);
    assert_int_equal(cv_hex_digit('g'), -1);
    assert_int_equal(cv_hex_digit('/'), -1);
    assert_int_equal(cv_hex_digit(0xc3), -1);
}

/* cv_write_all and cv_read_full through a pipe bigger than its buffer
 * (short writes and reads), the end of the data, and both error paths. */
static void *drain(void *arg)
{
    int *fds = arg;
    static uint8_t got[300000];
    size_t n = 0;
    assert_int_equal(cv_read_full(fds[0], got, sizeof got, &n), CV_OK);
    fds[2] = (int)n; /* the writer sent 200000 bytes, then closed: n < len */
    for (size_t i = 0; i < n; i++)
        if (got[i] != (uint8_t)(i * 31))
            fds[2] = -1;
    return NULL;
}

static void test_read_write_full(void **state)
{
    (void)state;
    static uint8_t out[200000];
    int fds[3] = {-1, -1, 0};
    pthread_t t;
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 31);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(pthread_create(&t, NULL, drain, fds), 0);
    assert_int_equal(cv_write_all(fds[1], out, sizeof out), CV_OK);
    close(fds[1]);
    pthread_join(t, NULL);
    close(fds[0]);
    assert_int_equal(fds[2], (int)sizeof out);
    /* errors: no reader left, a closed descriptor */
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    assert_int_equal(cv_write_all(fds[1], out, 10), CV_E_IO);
    close(fds[1]);
    size_t n = 99;
    assert_int_equal(cv_read_full(fds[1], out, 10, &n), CV_E_IO);
    assert_int_equal(n, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ulid),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_status_tables),
        cmocka_unit_test(test_read_write_full),
        cmocka_unit_test(test_parse_u64_and_hex_digit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
