/*
 * storage/validate: check characters and canonical forms of identity
 * numbers, mobile numbers and names. Pure functions: no I/O, no logging,
 * and no reason string ever repeats the input.
 */
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "casevault/field.h"
#include "casevault/validate.h"

static cv_status refuse(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return CV_E_INVALID_FIELD;
}

/* Copy `in` without spaces and dashes, uppercasing ASCII letters. Returns
 * the length, or (size_t)-1 when it does not fit in cap - 1 or holds a byte
 * outside printable ASCII. */
static size_t compact_upper(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == ' ' || c == '-')
            continue;
        if (c < 0x21 || c > 0x7e)
            return (size_t)-1;
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        if (o + 1 >= cap)
            return (size_t)-1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int cv_validate_mod11_2(const char *s)
{
    /* ISO 7064 MOD 11-2: weight of position i (0-based from the left, 17
     * digits) is 2^(17-i) mod 11; check value (12 - sum mod 11) mod 11, with
     * 10 written as X. */
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char check[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};
    int sum = 0;
    if (s == NULL || strlen(s) != 18)
        return 0;
    for (int i = 0; i < 17; i++) {
        if (!is_digit(s[i]))
            return 0;
        sum += (s[i] - '0') * w[i];
    }
    /* The table maps sum mod 11 directly to the check character. */
    return s[17] == check[sum % 11];
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int today_utc(void)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

static int province_ok(int p)
{
    /* GB/T 2260 province-level codes, plus 71 (Taiwan), 81 (Hong Kong),
     * 82 (Macao) and 83 (residence permits of Taiwan residents). */
    return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
           (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) || p == 71 ||
           p == 81 || p == 82 || p == 83;
}

cv_status cv_validate_resident_id(const char *in, int today_yyyymmdd,
                                  char out[CV_RESIDENT_ID_LEN + 1], const char **why)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char s[CV_RESIDENT_ID_LEN + 2];
    if (in == NULL)
        return refuse(why, "is required");
    size_t n = compact_upper(in, s, sizeof s);
    if (n != CV_RESIDENT_ID_LEN)
        return refuse(why, "must be 18 characters");
    for (int i = 0; i < 17; i++)
        if (!is_digit(s[i]))
            return refuse(why, "must be 17 digits and a check character");
    if (!is_digit(s[17]) && s[17] != 'X')
        return refuse(why, "must be 17 digits and a check character");
    if (!province_ok((s[0] - '0') * 10 + (s[1] - '0')))
        return refuse(why, "has an unknown region code");
    int y = 0, m = 0, d = 0;
    for (int i = 6; i < 10; i++)
        y = y * 10 + (s[i] - '0');
    m = (s[10] - '0') * 10 + (s[11] - '0');
    d = (s[12] - '0') * 10 + (s[13] - '0');
    if (y < 1800 || m < 1 || m > 12 || d < 1)
        return refuse(why, "has an invalid birth date");
    int dim = mdays[m - 1] + (m == 2 && leap(y) ? 1 : 0);
    if (d > dim)
        return refuse(why, "has an invalid birth date");
    int today = today_yyyymmdd > 0 ? today_yyyymmdd : today_utc();
    if (y * 10000 + m * 100 + d > today)
        return refuse(why, "has a birth date in the future");
    if (!cv_validate_mod11_2(s))
        return refuse(why, "check character does not match (ISO 7064 MOD 11-2)");
    memcpy(out, s, CV_RESIDENT_ID_LEN + 1);
    return CV_OK;
}

static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

static int uscc_value(char c)
{
    const char *p = c ? strchr(uscc_alphabet, c) : NULL;
    return p ? (int)(p - uscc_alphabet) : -1;
}

cv_status cv_validate_uscc(const char *in, char out[CV_USCC_LEN + 1], const char **why)
{
    static const int w[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};
    char s[CV_USCC_LEN + 2];
    if (in == NULL)
        return refuse(why, "is required");
    size_t n = compact_upper(in, s, sizeof s);
    if (n != CV_USCC_LEN)
        return refuse(why, "must be 18 characters");
    int sum = 0;
    for (int i = 0; i < 18; i++) {
        if (uscc_value(s[i]) < 0)
            return refuse(why, "may use only 0-9 and A-Y without I, O, S, V, Z");
        if (i < 17)
            sum += uscc_value(s[i]) * w[i];
    }
    for (int i = 2; i < 8; i++)
        if (!is_digit(s[i]))
            return refuse(why, "characters 3-8 must be a region code");
    int c = 31 - sum % 31;
    if (c == 31)
        c = 0;
    if (s[17] != uscc_alphabet[c])
        return refuse(why, "check character does not match (GB 32100)");
    memcpy(out, s, CV_USCC_LEN + 1);
    return CV_OK;
}

cv_status cv_validate_mobile(const char *in, char out[CV_MOBILE_LEN + 1], const char **why)
{
    char d[24];
    size_t o = 0;
    const char *p = in;
    if (in == NULL)
        return refuse(why, "is required");
    while (*p == ' ')
        p++;
    int plus = 0;
    if (*p == '+') {
        plus = 1;
        p++;
    }
    for (; *p; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        if (!is_digit(*p))
            return refuse(why, "may contain only digits, spaces, dashes and a leading +");
        if (o + 1 >= sizeof d)
            return refuse(why, "must be an 11-digit mainland mobile number");
        d[o++] = *p;
    }
    d[o] = '\0';
    const char *num = d;
    if (plus) {
        if (o != 13 || strncmp(d, "86", 2) != 0)
            return refuse(why, "must be a mainland number (+86)");
        num = d + 2;
    } else if (o == 15 && strncmp(d, "0086", 4) == 0) {
        num = d + 4;
    } else if (o == 13 && strncmp(d, "86", 2) == 0) {
        num = d + 2;
    }
    if (strlen(num) != CV_MOBILE_LEN || num[0] != '1' || num[1] < '3')
        return refuse(why, "must be an 11-digit mainland mobile number (1[3-9]xxxxxxxxx)");
    memcpy(out, num, CV_MOBILE_LEN + 1);
    return CV_OK;
}

cv_status cv_validate_passport(const char *in, char *out, size_t cap, const char **why)
{
    char s[CV_ID_NUMBER_MAX + 1];
    if (in == NULL)
        return refuse(why, "is required");
    size_t n = compact_upper(in, s, sizeof s);
    if (n == (size_t)-1 || n < 5 || n > 20)
        return refuse(why, "must be 5-20 letters and digits");
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]) && !(s[i] >= 'A' && s[i] <= 'Z'))
            return refuse(why, "must be 5-20 letters and digits");
    if (n + 1 > cap)
        return refuse(why, "is too long");
    memcpy(out, s, n + 1);
    return CV_OK;
}

cv_status cv_validate_name(const char *in, size_t max_chars, char *out, size_t cap,
                           const char **why)
{
    char buf[CV_NAME_MAX_BYTES * 2];
    if (in == NULL)
        return refuse(why, "is required");
    if (strlen(in) > sizeof buf - 1)
        return refuse(why, "is too long");
    cv_status st = cv_field_normalize(CV_FIELD_NAME, in, buf, sizeof buf);
    if (st == CV_E_LIMIT)
        return refuse(why, "is too long");
    if (st != CV_OK)
        return refuse(why, "must be non-empty UTF-8 text");
    size_t chars = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)buf;
    utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(buf);
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k <= 0)
            return refuse(why, "must be valid UTF-8");
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CS ||
            cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN)
            return refuse(why, "must not contain control or unassigned characters");
        chars++;
        p += k;
        left -= k;
    }
    if (chars > max_chars)
        return refuse(why, "is too long");
    size_t n = strlen(buf);
    if (n + 1 > cap)
        return refuse(why, "is too long");
    memcpy(out, buf, n + 1);
    return CV_OK;
}

cv_status cv_validate_id_number(const char *id_type, const char *in, char *out, size_t cap,
                                const char **why)
{
    if (id_type != NULL && strcmp(id_type, "cn_resident_id") == 0) {
        char s[CV_RESIDENT_ID_LEN + 1];
        cv_status st = cv_validate_resident_id(in, 0, s, why);
        if (st != CV_OK)
            return st;
        if (cap < sizeof s)
            return refuse(why, "is too long");
        memcpy(out, s, sizeof s);
        return CV_OK;
    }
    if (id_type != NULL && strcmp(id_type, "passport") == 0)
        return cv_validate_passport(in, out, cap, why);
    return refuse(why, "id_type must be cn_resident_id or passport");
}

cv_status cv_validate_account_id(const char *in, const char **why)
{
    size_t n = in ? strlen(in) : 0;
    if (n == 0 || n > 64)
        return refuse(why, "must be 1-64 characters of A-Z a-z 0-9 . _ - @ :");
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '_' || c == '-' || c == '@' || c == ':'))
            return refuse(why, "must be 1-64 characters of A-Z a-z 0-9 . _ - @ :");
    }
    return CV_OK;
}

cv_status cv_validate_json_string(const json_t *j, const char *key, const char **s)
{
    const json_t *v = json_object_get(j, key);
    *s = NULL;
    if (v == NULL || json_is_null(v))
        return CV_OK;
    if (!json_is_string(v))
        return CV_E_INVALID_FIELD;
    *s = json_string_value(v);
    return CV_OK;
}
