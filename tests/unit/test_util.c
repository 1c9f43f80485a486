/* Unit tests: common/util (ULID, RFC 3339, encodings, SHA-256 vectors) and status tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
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

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ulid),           cmocka_unit_test(test_time),
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_status_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
