/* Unit tests: storage/export's made-safe client file names (NFC, no path
 * separators or control characters, bounded length cut at a character
 * boundary, always accepted by the archive reader's name check). The export
 * stream itself is tested end to end in tests/integration/test_export.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "casevault/archive.h"
#include "casevault/export.h"

static void expect_safe(const char *in, const char *want)
{
    char out[CV_EXPORT_SAFE_NAME_MAX + 1];
    assert_int_equal(cv_export_safe_name(in, out, sizeof out), CV_OK);
    assert_string_equal(out, want);
    char full[CV_EXPORT_SAFE_NAME_MAX + 40];
    snprintf(full, sizeof full, "originals/01JABCDEFGHJKMNPQRSTVWXYZ0-%s", out);
    assert_true(cv_archive_name_safe(full));
}

static void test_nfc(void **state)
{
    (void)state;
    /* "Führerschein_überprüft.jpg" sent decomposed (u + U+0308) */
    expect_safe("Fu\xCC\x88hrerschein_u\xCC\x88"
                "berpru\xCC\x88"
                "ft.jpg",
                "F\xC3\xBChrerschein_\xC3\xBC"
                "berpr\xC3\xBC"
                "ft.jpg");
    expect_safe("营业执照_正本.jpg", "营业执照_正本.jpg");
    expect_safe("selfie-ID ✓.jpg", "selfie-ID ✓.jpg");
    expect_safe("ascii_only.jpg", "ascii_only.jpg");
}

static void test_separators_and_controls(void **state)
{
    (void)state;
    expect_safe("../../etc/passwd", "_.._etc_passwd");
    expect_safe("C:\\Users\\a\"b.jpg", "C__Users_a\"b.jpg");
    expect_safe("a\nb\tc\x7f"
                "d.jpg",
                "a_b_c_d.jpg");
    expect_safe("a\xE2\x80\xAE"
                "gpj.exe",
                "a_gpj.exe"); /* U+202E right-to-left override */
    expect_safe("...", "file");
    expect_safe("", "file");
    expect_safe(" . x ", "x");
    expect_safe(".hidden", "hidden");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    /* Latin-1 "F\xfchrerschein" (C16c) */
    expect_safe("F\xFChrer.jpg", "F\xEF\xBF\xBDhrer.jpg");
    expect_safe("\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD");
}

static void test_length_cut_at_boundary(void **state)
{
    (void)state;
    char in[1024] = "", out[CV_EXPORT_SAFE_NAME_MAX + 1];
    for (int i = 0; i < 100; i++)
        strcat(in, "本"); /* 3 bytes each: 300 bytes */
    assert_int_equal(cv_export_safe_name(in, out, sizeof out), CV_OK);
    assert_int_equal(strlen(out), 198); /* 66 whole characters, no extension */
    strcat(in, ".jpg");
    assert_int_equal(cv_export_safe_name(in, out, sizeof out), CV_OK);
    assert_int_equal(strlen(out), 195 + 4); /* 65 characters + ".jpg" */
    assert_string_equal(out + 195, ".jpg");
    assert_int_equal(cv_export_safe_name(in, out, 100), CV_E_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nfc),
        cmocka_unit_test(test_separators_and_controls),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_length_cut_at_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
