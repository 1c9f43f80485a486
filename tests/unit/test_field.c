/* Unit tests: storage/field (normalization per field kind, AEAD of PII
 * columns bound to table/column/row, blind indexes, survival of KEK
 * rotation). Identities are invented; ID numbers carry valid check
 * characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/field.h"
#include "casevault/keyring.h"
#include "fixture.h"

static void norm_ok(enum cv_field_kind k, const char *in, const char *want)
{
    char out[128];
    cv_status rc = cv_field_normalize(k, in, out, sizeof out);
    if (rc != CV_OK)
        fail_msg("normalize(%d, \"%s\") -> %d", (int)k, in, (int)rc);
    if (strcmp(out, want) != 0)
        fail_msg("normalize(%d, \"%s\") = \"%s\", want \"%s\"", (int)k, in, out, want);
}

static void norm_err(enum cv_field_kind k, const char *in, cv_status want)
{
    char out[128];
    cv_status rc = cv_field_normalize(k, in, out, sizeof out);
    if (rc != want)
        fail_msg("normalize(%d, \"%s\") -> %d, want %d", (int)k, in, (int)rc, (int)want);
}

static void test_normalize_phones(void **state)
{
    (void)state;
    norm_ok(CV_FIELD_DIGITS, "13800138000", "13800138000");
    norm_ok(CV_FIELD_DIGITS, "+86 138-0013-8000", "13800138000");
    norm_ok(CV_FIELD_DIGITS, "+86 (138) 0013 8000", "13800138000");
    norm_ok(CV_FIELD_DIGITS, "0086 13800138000", "13800138000");
    norm_ok(CV_FIELD_DIGITS, "8613800138000", "13800138000");
    /* Full-width digits and punctuation, as Chinese input methods type them. */
    norm_ok(CV_FIELD_DIGITS,
            "\xef\xbc\x8b\xef\xbc\x98\xef\xbc\x96 138\xef\xbc\x8d"
            "\xef\xbc\x90\xef\xbc\x90\xef\xbc\x91\xef\xbc\x93-8000",
            "13800138000");
    /* Only the mainland prefix in front of 11 digits is dropped. */
    norm_ok(CV_FIELD_DIGITS, "+852 9123 4567", "85291234567");
    norm_ok(CV_FIELD_DIGITS, "010-12345678", "01012345678");
    norm_err(CV_FIELD_DIGITS, "no digits", CV_E_INVALID_FIELD);
    norm_err(CV_FIELD_DIGITS, "", CV_E_INVALID_FIELD);
    norm_err(CV_FIELD_DIGITS,
             "138\xff"
             "00138000",
             CV_E_INVALID_FIELD);
    char small[5];
    assert_int_equal(cv_field_normalize(CV_FIELD_DIGITS, "13800138000", small, sizeof small),
                     CV_E_LIMIT);
    assert_int_equal(cv_field_normalize(CV_FIELD_DIGITS, NULL, small, sizeof small),
                     CV_E_INVALID_FIELD);
}

static void test_normalize_id_numbers(void **state)
{
    (void)state;
    /* 11010519491231002X: GB 11643 example, MOD 11-2 check character X. */
    norm_ok(CV_FIELD_ID_NUMBER, "11010519491231002X", "11010519491231002X");
    norm_ok(CV_FIELD_ID_NUMBER, "11010519491231002x", "11010519491231002X");
    norm_ok(CV_FIELD_ID_NUMBER, " 110105 19491231 002x ", "11010519491231002X");
    norm_ok(CV_FIELD_ID_NUMBER, "110105-19491231-002X", "11010519491231002X");
    /* Full-width characters from an input method. */
    norm_ok(CV_FIELD_ID_NUMBER,
            "\xef\xbc\x91\xef\xbc\x91\x30\x31\x30\x35\x31\x39\x34\x39\x31\x32\x33\x31\x30\x30\x32"
            "\xef\xbd\x98",
            "11010519491231002X");
    /* USCC (GB 32100), letters uppercased. */
    norm_ok(CV_FIELD_ID_NUMBER, "91350100m000100y43", "91350100M000100Y43");
    norm_ok(CV_FIELD_ID_NUMBER, "\t91350100M000100Y43\n", "91350100M000100Y43");
    norm_err(CV_FIELD_ID_NUMBER, "  - ", CV_E_INVALID_FIELD);
    norm_err(CV_FIELD_ID_NUMBER, "\xc3\x28", CV_E_INVALID_FIELD);
}

static void test_normalize_names(void **state)
{
    (void)state;
    /* NFC: e + combining acute -> U+00E9. */
    norm_ok(CV_FIELD_NAME,
            "Jose\xcc\x81 Garci\xcc\x81"
            "a",
            "Jos\xc3\xa9 Garc\xc3\xad"
            "a");
    norm_ok(CV_FIELD_NAME, "Jos\xc3\xa9", "Jos\xc3\xa9");
    norm_ok(CV_FIELD_NAME, "  \xe5\xbc\xa0  \xe4\xb8\x89 \t", "\xe5\xbc\xa0 \xe4\xb8\x89");
    /* Ideographic space (U+3000) and no-break space (U+00A0) are whitespace too. */
    norm_ok(CV_FIELD_NAME, "\xe3\x80\x80\xe5\xbc\xa0\xe3\x80\x80\xe4\xb8\x89\xe3\x80\x80",
            "\xe5\xbc\xa0 \xe4\xb8\x89");
    norm_ok(CV_FIELD_NAME, "\xc2\xa0Li\xc2\xa0\xc2\xa0Wei\xc2\xa0", "Li Wei");
    /* Case is kept: names are compared as written. */
    norm_ok(CV_FIELD_NAME, "li wei", "li wei");
    norm_err(CV_FIELD_NAME, " \t\xe3\x80\x80 ", CV_E_INVALID_FIELD);
    norm_err(CV_FIELD_NAME, "\xed\xa0\x80", CV_E_INVALID_FIELD); /* surrogate */
    norm_err(CV_FIELD_NAME, "\xc0\xaf", CV_E_INVALID_FIELD);     /* overlong */
    char small[4];
    assert_int_equal(
        cv_field_normalize(CV_FIELD_NAME, "\xe5\xbc\xa0\xe4\xb8\x89", small, sizeof small),
        CV_E_LIMIT);
    norm_ok(CV_FIELD_EXACT, " as is ", " as is ");
    norm_err(CV_FIELD_EXACT, "\xff", CV_E_INVALID_FIELD);
}

static void test_seal_open(void **state)
{
    struct fx *f = *state;
    const char *v = "11010519491231002X";
    uint8_t *s1 = NULL, *s2 = NULL;
    size_t n1 = 0, n2 = 0, pl = 0;
    char *p = NULL;
    struct cv_keyring *kr = f->dd->kr;
    assert_int_equal(cv_field_seal(kr, "cases", "id_number", "01J000000000000000000000AA", v,
                                   strlen(v), &s1, &n1),
                     CV_OK);
    assert_int_equal(n1, strlen(v) + CV_FIELD_OVERHEAD);
    assert_null(memmem(s1, n1, v, strlen(v)));
    assert_int_equal(cv_field_seal(kr, "cases", "id_number", "01J000000000000000000000AA", v,
                                   strlen(v), &s2, &n2),
                     CV_OK);
    assert_memory_not_equal(s1, s2, n1); /* random nonces */
    assert_int_equal(
        cv_field_open(kr, "cases", "id_number", "01J000000000000000000000AA", s1, n1, &p, &pl),
        CV_OK);
    assert_int_equal(pl, strlen(v));
    assert_string_equal(p, v);
    sodium_memzero(p, pl);
    free(p);
    p = NULL;
    /* Another row, column or table, a flipped bit, a short input: refused. */
    assert_int_equal(
        cv_field_open(kr, "cases", "id_number", "01J000000000000000000000AB", s1, n1, &p, &pl),
        CV_E_CRYPTO);
    assert_int_equal(
        cv_field_open(kr, "cases", "mobile", "01J000000000000000000000AA", s1, n1, &p, &pl),
        CV_E_CRYPTO);
    assert_int_equal(
        cv_field_open(kr, "accounts", "id_number", "01J000000000000000000000AA", s1, n1, &p, &pl),
        CV_E_CRYPTO);
    s1[30] ^= 1;
    assert_int_equal(
        cv_field_open(kr, "cases", "id_number", "01J000000000000000000000AA", s1, n1, &p, &pl),
        CV_E_CRYPTO);
    assert_int_equal(cv_field_open(kr, "cases", "id_number", "01J000000000000000000000AA", s1,
                                   CV_FIELD_OVERHEAD - 1, &p, &pl),
                     CV_E_CRYPTO);
    assert_int_equal(
        cv_field_open(kr, "cases", "id_number", "01J000000000000000000000AA", NULL, 0, &p, &pl),
        CV_E_CRYPTO);
    assert_null(p);
    free(s1);
    free(s2);
    /* The empty value round-trips. */
    assert_int_equal(cv_field_seal(kr, "t", "c", "r", "", 0, &s1, &n1), CV_OK);
    assert_int_equal(n1, CV_FIELD_OVERHEAD);
    assert_int_equal(cv_field_open(kr, "t", "c", "r", s1, n1, &p, &pl), CV_OK);
    assert_int_equal(pl, 0);
    assert_string_equal(p, "");
    free(p);
    free(s1);
    /* Names that would make (table, column, row) ambiguous are refused. */
    assert_int_equal(cv_field_seal(kr, "a.b", "c", "r", "x", 1, &s1, &n1), CV_E_ARG);
    assert_int_equal(cv_field_seal(kr, "a", "b/c", "r", "x", 1, &s1, &n1), CV_E_ARG);
    assert_int_equal(cv_field_seal(kr, "a", "b", "r/1", "x", 1, &s1, &n1), CV_E_ARG);
    assert_int_equal(cv_field_seal(kr, "", "b", "r", "x", 1, &s1, &n1), CV_E_ARG);
    uint8_t bi[32];
    assert_int_equal(cv_field_blind_index(kr, "a", "b.c", CV_FIELD_EXACT, "x", bi), CV_E_ARG);
}

static void test_blind_index(void **state)
{
    struct fx *f = *state;
    struct cv_keyring *kr = f->dd->kr;
    uint8_t a[32], b[32], c[32], d[32];
    assert_int_equal(
        cv_field_blind_index(kr, "accounts", "mobile", CV_FIELD_DIGITS, "+86 138 0013 8000", a),
        CV_OK);
    assert_int_equal(
        cv_field_blind_index(kr, "accounts", "mobile", CV_FIELD_DIGITS, "13800138000", b), CV_OK);
    assert_memory_equal(a, b, 32);
    assert_int_equal(
        cv_field_blind_index(kr, "accounts", "mobile", CV_FIELD_DIGITS, "13800138001", c), CV_OK);
    assert_memory_not_equal(a, c, 32);
    /* Per column and per table keys: the same value indexes differently. */
    assert_int_equal(
        cv_field_blind_index(kr, "accounts", "contact", CV_FIELD_DIGITS, "13800138000", c), CV_OK);
    assert_memory_not_equal(a, c, 32);
    assert_int_equal(cv_field_blind_index(kr, "cases", "mobile", CV_FIELD_DIGITS, "13800138000", c),
                     CV_OK);
    assert_memory_not_equal(a, c, 32);
    /* Not a bare hash of the value. */
    uint8_t plain[32];
    crypto_generichash(plain, 32, (const uint8_t *)"13800138000", 11, NULL, 0);
    assert_memory_not_equal(a, plain, 32);
    assert_int_equal(cv_field_blind_index(kr, "accounts", "id_number", CV_FIELD_ID_NUMBER,
                                          "11010519491231002x", c),
                     CV_OK);
    assert_int_equal(cv_field_blind_index(kr, "accounts", "id_number", CV_FIELD_ID_NUMBER,
                                          "110105 19491231 002X", d),
                     CV_OK);
    assert_memory_equal(c, d, 32);
    assert_int_equal(cv_field_blind_index(kr, "accounts", "name", CV_FIELD_NAME,
                                          "\xe5\xbc\xa0\xe3\x80\x80\xe4\xb8\x89", c),
                     CV_OK);
    assert_int_equal(cv_field_blind_index(kr, "accounts", "name", CV_FIELD_NAME,
                                          " \xe5\xbc\xa0 \xe4\xb8\x89", d),
                     CV_OK);
    assert_memory_equal(c, d, 32);
    assert_int_equal(cv_field_blind_index(kr, "accounts", "mobile", CV_FIELD_DIGITS, "none", d),
                     CV_E_INVALID_FIELD);
    char big[2000];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(cv_field_blind_index(kr, "accounts", "mobile", CV_FIELD_DIGITS, big, d),
                     CV_E_LIMIT);

    /* KEK rotation re-wraps the root key: sealed values still open and
     * blind indexes stay equal, in this process and a fresh one. */
    uint8_t *s = NULL;
    size_t n = 0, pl = 0;
    char *p = NULL;
    struct cv_rotate_stats st;
    struct cv_datadir *dd2 = NULL;
    struct cv_audit_event who = {.actor_id = "test", .actor_role = "operator"};
    assert_int_equal(cv_field_seal(kr, "accounts", "name", "R1", "Li Wei", 6, &s, &n), CV_OK);
    assert_int_equal(cv_keyring_rotate(kr, 10, &who, NULL, NULL, &st), CV_OK);
    assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_OK);
    assert_int_equal(cv_field_open(dd2->kr, "accounts", "name", "R1", s, n, &p, &pl), CV_OK);
    assert_string_equal(p, "Li Wei");
    free(p);
    free(s);
    assert_int_equal(
        cv_field_blind_index(dd2->kr, "accounts", "mobile", CV_FIELD_DIGITS, "13800138000", c),
        CV_OK);
    assert_memory_equal(a, c, 32);
    cv_datadir_free(dd2);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_phones),
        cmocka_unit_test(test_normalize_id_numbers),
        cmocka_unit_test(test_normalize_names),
        cmocka_unit_test_setup_teardown(test_seal_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blind_index, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
