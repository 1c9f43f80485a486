/*
 * storage/validate: pure validators and canonical forms of the identity
 * fields of real-name records and cases (DESIGN §2). No I/O, no keys, no
 * allocation that outlives a call; safe from any thread.
 *
 * Every validator takes the value as the client sent it and writes its
 * canonical form (the form that is sealed and blind-indexed), so "the same
 * identity" means "the same canonical bytes". On failure nothing is written
 * to `out` and the status is CV_E_INVALID_FIELD; `why` (if not NULL) gets a
 * fixed English reason that never repeats the input.
 */
#ifndef CASEVAULT_VALIDATE_H
#define CASEVAULT_VALIDATE_H

#include <stddef.h>

#include <jansson.h>

#include "casevault/status.h"

#define CV_ID_NUMBER_MAX             32 /* bytes of a canonical ID number (passports are shorter) */
#define CV_RESIDENT_ID_LEN           18 /* characters of a Chinese resident ID (GB 11643-1999) */
#define CV_USCC_LEN                  18 /* characters of a USCC (GB 32100-2015) */
#define CV_MOBILE_LEN                11 /* digits of a mainland mobile number */
#define CV_NAME_MAX_CHARS            64 /* code points of a person's name */
#define CV_ENTERPRISE_NAME_MAX_CHARS 128 /* code points of an enterprise name */
#define CV_NAME_MAX_BYTES            (CV_ENTERPRISE_NAME_MAX_CHARS * 4 + 1) /* buffer for any name, NUL */

/*
 * cv_validate_resident_id - Chinese resident identity number, GB 11643-1999:
 * 6-digit region code (first two digits a province code), 8-digit birth date
 * YYYYMMDD that is a real Gregorian date from 1800-01-01 up to today (UTC),
 * 3-digit sequence, and the ISO 7064 MOD 11-2 check character (0-9 or X).
 * Spaces and dashes are ignored, a lowercase x is accepted.
 * In: in (NUL-terminated), today_yyyymmdd (e.g. 20261129; 0 = the current
 * UTC date). Out: out[CV_RESIDENT_ID_LEN + 1], uppercase.
 * Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_resident_id(const char *in, int today_yyyymmdd,
                                  char out[CV_RESIDENT_ID_LEN + 1], const char **why);

/*
 * cv_validate_mod11_2 - 1 if the 18-character string s ends with the
 * correct ISO 7064 MOD 11-2 check character for its first 17 digits.
 */
int cv_validate_mod11_2(const char *s);

/*
 * cv_validate_uscc - Unified Social Credit Code, GB 32100-2015: 18
 * characters over the 31-character alphabet 0-9 A-H J-N P-R T U W-Y
 * (no I, O, S, V, Z), characters 3-8 a region code (digits), and the last
 * character the check character: weights 3^i mod 31 over the first 17,
 * check = 31 - (sum mod 31), 31 -> '0'. Spaces and dashes are ignored,
 * lowercase is uppercased. Out: out[CV_USCC_LEN + 1].
 * Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_uscc(const char *in, char out[CV_USCC_LEN + 1], const char **why);

/*
 * cv_validate_mobile - mainland China mobile number: 11 digits starting 1
 * and then 3-9, optionally preceded by +86, 0086 or 86 (with or without a
 * space), with spaces and dashes anywhere. Out: out[CV_MOBILE_LEN + 1], the
 * 11 digits. Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_mobile(const char *in, char out[CV_MOBILE_LEN + 1], const char **why);

/*
 * cv_validate_passport - a passport number: 5-20 ASCII letters and digits
 * after removing spaces and dashes, uppercased. Out: out[cap].
 * Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_passport(const char *in, char *out, size_t cap, const char **why);

/*
 * cv_validate_name - a person's or an enterprise's name: valid UTF-8,
 * Unicode NFC (utf8proc), surrounding whitespace trimmed and inner runs
 * collapsed to one space, no control characters, 1..max_chars code points.
 * In: max_chars (CV_NAME_MAX_CHARS or CV_ENTERPRISE_NAME_MAX_CHARS).
 * Out: out[cap] (cap >= max_chars * 4 + 1). Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_name(const char *in, size_t max_chars, char *out, size_t cap,
                           const char **why);

/*
 * cv_validate_id_number - dispatch on id_type: "cn_resident_id" ->
 * cv_validate_resident_id (today = current date), "passport" ->
 * cv_validate_passport. Out: out[cap] (cap >= CV_ID_NUMBER_MAX + 1).
 * Errors: CV_E_INVALID_FIELD (also for an unknown id_type).
 */
cv_status cv_validate_id_number(const char *id_type, const char *in, char *out, size_t cap,
                                const char **why);

/*
 * cv_validate_account_id - an account id as the cloud names it: 1-64
 * characters of A-Z a-z 0-9 . _ - @ :. Errors: CV_E_INVALID_FIELD.
 */
cv_status cv_validate_account_id(const char *in, const char **why);

/*
 * cv_validate_json_string - the optional string member `key` of object j.
 * Out: *s = its value (borrowed from j) or NULL when absent or null.
 * Errors: CV_E_INVALID_FIELD when present with another JSON type.
 */
cv_status cv_validate_json_string(const json_t *j, const char *key, const char **s);

#endif
