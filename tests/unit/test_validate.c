/* Unit tests: storage/validate. Published examples (GB 11643-1999's
 * 11010519491231002X and 440524188001010014; the USCC 91350100M000100Y43
 * quoted in GB 32100 explanations) and invented identities that pass the
 * check characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "casevault/validate.h"

static void test_resident_id_published(void **state)
{
    (void)state;
    char out[CV_RESIDENT_ID_LEN + 1];
    const char *why = NULL;
    assert_int_equal(cv_validate_resident_id("11010519491231002X", 20261129, out, &why), CV_OK);
    assert_string_equal(out, "11010519491231002X");
    assert_int_equal(cv_validate_resident_id("440524188001010014", 20261129, out, &why), CV_OK);
    assert_string_equal(out, "440524188001010014");
    /* lowercase x, spaces and dashes are accepted and canonicalized */
    assert_int_equal(cv_validate_resident_id("110105 19491231 002x", 20261129, out, &why), CV_OK);
    assert_string_equal(out, "11010519491231002X");
    assert_int_equal(cv_validate_resident_id("110105-19491231-002X", 20261129, out, &why), CV_OK);
    assert_string_equal(out, "11010519491231002X");
    assert_int_equal(cv_validate_mod11_2("11010519491231002X"), 1);
    assert_int_equal(cv_validate_mod11_2("110105194912310021"), 0);
}

static void test_resident_id_invented(void **state)
{
    (void)state;
    static const char *good[] = {"110105199003071239", "310115198511204566", "440306200002297892",
                                 "51010719780615321X", "33010219920101777X"};
    char out[CV_RESIDENT_ID_LEN + 1];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(cv_validate_resident_id(good[i], 20261129, out, NULL), CV_OK);
        assert_string_equal(out, good[i]);
    }
}

static void test_resident_id_refused(void **state)
{
    (void)state;
    char out[CV_RESIDENT_ID_LEN + 1] = "untouched";
    const char *why = NULL;
    struct {
        const char *in;
        const char *why_part;
    } bad[] = {
        {"110105199003071238", "check character"}, /* wrong check digit */
        {"11010519900307123", "18 characters"},    /* 17 */
        {"1101051990030712391", "18 characters"},  /* 19 */
        {"11010519900307123A", "check character"}, /* letter other than X */
        {"1101051990O307123X", "17 digits"},       /* letter O inside */
        {"110105199002301232", "birth date"},      /* 30 February */
        {"110105190002291235", "birth date"},      /* 1900 is not a leap year */
        {"110105199013011234", "birth date"},      /* month 13 */
        {"110105179001011234", "birth date"},      /* before 1800 */
        {"110105203001011231", "future"},          /* 2030 */
        {"000105199003071231", "region"},          /* province 00 */
        {"991050199003071231", "region"},          /* province 99 */
        {"", "18 characters"},
        {"11010519900307123\xe4", "18 characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(cv_validate_resident_id(bad[i].in, 20261129, out, &why),
                         CV_E_INVALID_FIELD);
        assert_non_null(why);
        if (strstr(why, bad[i].why_part) == NULL)
            fail_msg("case %zu: reason '%s' lacks '%s'", i, why, bad[i].why_part);
    }
    assert_string_equal(out, "untouched");
    assert_int_equal(cv_validate_resident_id(NULL, 0, out, &why), CV_E_INVALID_FIELD);
    /* 2000-02-29 is a leap day; a birth date of today is allowed. */
    assert_int_equal(cv_validate_resident_id("440306200002297892", 20000229, out, &why), CV_OK);
    assert_int_equal(cv_validate_resident_id("440306200002297892", 20000228, out, &why),
                     CV_E_INVALID_FIELD);
}

static void test_uscc(void **state)
{
    (void)state;
    char out[CV_USCC_LEN + 1] = "untouched";
    const char *why = NULL;
    assert_int_equal(cv_validate_uscc("91350100M000100Y43", out, &why), CV_OK);
    assert_string_equal(out, "91350100M000100Y43");
    assert_int_equal(cv_validate_uscc("91350100m000100y43", out, &why), CV_OK);
    assert_string_equal(out, "91350100M000100Y43");
    assert_int_equal(cv_validate_uscc("9135 0100-M000 100Y43", out, &why), CV_OK);
    /* invented, check characters computed by the GB 32100 rule */
    assert_int_equal(cv_validate_uscc("91110000MA01ABCD1M", out, &why), CV_OK);
    assert_int_equal(cv_validate_uscc("91310115MA1K3YJ12G", out, &why), CV_OK);
    assert_int_equal(cv_validate_uscc("12100000400000000W", out, &why), CV_OK);
    struct {
        const char *in;
        const char *why_part;
    } bad[] = {
        {"91350100M000100Y44", "check character"},
        {"91350100M000100Y4", "18 characters"},
        {"91350100M000100Y433", "18 characters"},
        {"91350100I000100Y43", "without I"}, /* I is not in the alphabet */
        {"91350100O000100Y43", "without I"},
        {"91350100S000100Y43", "without I"},
        {"91350100V000100Y43", "without I"},
        {"91350100Z000100Y43", "without I"},
        {"913A0100M000100Y43", "region code"},
        {"", "18 characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(cv_validate_uscc(bad[i].in, out, &why), CV_E_INVALID_FIELD);
        if (why == NULL || strstr(why, bad[i].why_part) == NULL)
            fail_msg("case %zu: reason '%s' lacks '%s'", i, why ? why : "(null)", bad[i].why_part);
    }
}

static void test_uscc_check_zero(void **state)
{
    (void)state;
    /* Search a prefix whose check value is 0, to pin the 31 -> '0' rule. */
    static const char al[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    char s[CV_USCC_LEN + 1] = "91110000MA01ABC0";
    char out[CV_USCC_LEN + 1];
    int found = 0;
    for (int a = 0; a < 31 && !found; a++) {
        s[16] = al[a];
        s[17] = '0';
        s[18] = '\0';
        if (cv_validate_uscc(s, out, NULL) == CV_OK)
            found = 1;
    }
    assert_true(found);
}

static void test_mobile(void **state)
{
    (void)state;
    char out[CV_MOBILE_LEN + 1];
    const char *why = NULL;
    const char *good[] = {"13800138000",      "+8613800138000",  "+86 138 0013 8000",
                          "0086 13800138000", "008613800138000", "86 138-0013-8000",
                          "138-0013-8000",    " 13800138000",    "+86-138-0013-8000"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(cv_validate_mobile(good[i], out, &why), CV_OK);
        assert_string_equal(out, "13800138000");
    }
    assert_int_equal(cv_validate_mobile("19912345678", out, &why), CV_OK);
    const char *bad[] = {"12800138000",  "1380013800",    "138001380001",   "+1 13800138000",
                         "+85213800138", "(138)00138000", "138OO138000",    "",
                         "+86",          "23800138000",   "+8613800138000x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cv_validate_mobile(bad[i], out, &why) != CV_E_INVALID_FIELD)
            fail_msg("accepted bad mobile #%zu", i);
    }
}

static void test_name(void **state)
{
    (void)state;
    char out[CV_NAME_MAX_BYTES];
    const char *why = NULL;
    /* NFC: e + U+0301 composes to U+00E9 */
    assert_int_equal(
        cv_validate_name("  Zo\x65\xcc\x81  Test ", CV_NAME_MAX_CHARS, out, sizeof out, &why),
        CV_OK);
    assert_string_equal(out, "Zo\xc3\xa9 Test");
    assert_int_equal(cv_validate_name("测试\t 甲", CV_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_OK);
    assert_string_equal(out, "测试 甲");
    assert_int_equal(cv_validate_name("   ", CV_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_name("a\x01"
                                      "b",
                                      CV_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_name("\xff\xfe", CV_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    /* 64 CJK characters fit, 65 do not */
    char big[65 * 3 + 1];
    for (int i = 0; i < 65; i++)
        memcpy(big + i * 3, "测", 3);
    big[64 * 3] = '\0';
    assert_int_equal(cv_validate_name(big, CV_NAME_MAX_CHARS, out, sizeof out, &why), CV_OK);
    memcpy(big + 64 * 3, "测", 3);
    big[65 * 3] = '\0';
    assert_int_equal(cv_validate_name(big, CV_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_non_null(strstr(why, "too long"));
    assert_int_equal(cv_validate_name(big, CV_ENTERPRISE_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_OK);
    char huge[4096];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(cv_validate_name(huge, CV_ENTERPRISE_NAME_MAX_CHARS, out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
}

static void test_passport_and_dispatch(void **state)
{
    (void)state;
    char out[CV_ID_NUMBER_MAX + 1];
    const char *why = NULL;
    assert_int_equal(cv_validate_id_number("passport", "e1234 5678", out, sizeof out, &why), CV_OK);
    assert_string_equal(out, "E12345678");
    assert_int_equal(cv_validate_id_number("passport", "E1", out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_id_number("passport", "E1234_5678", out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_int_equal(
        cv_validate_id_number("cn_resident_id", "11010519491231002x", out, sizeof out, &why),
        CV_OK);
    assert_string_equal(out, "11010519491231002X");
    assert_int_equal(cv_validate_id_number("ssn", "123", out, sizeof out, &why),
                     CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_id_number(NULL, "123", out, sizeof out, &why), CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_account_id("acct-1.x@y:z", &why), CV_OK);
    assert_int_equal(cv_validate_account_id("", &why), CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_account_id("a b", &why), CV_E_INVALID_FIELD);
    assert_int_equal(cv_validate_account_id("a/b", &why), CV_E_INVALID_FIELD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resident_id_published),
        cmocka_unit_test(test_resident_id_invented),
        cmocka_unit_test(test_resident_id_refused),
        cmocka_unit_test(test_uscc),
        cmocka_unit_test(test_uscc_check_zero),
        cmocka_unit_test(test_mobile),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_passport_and_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
