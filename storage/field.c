/*
 * storage/field: AEAD of PII columns and blind indexes. Normalization of
 * names uses utf8proc (NFC); no other Unicode handling is written here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <utf8proc.h>

#include "casevault/field.h"
#include "casevault/keyring.h"

static cv_status column_key(struct cv_keyring *kr, enum cv_key_purpose purpose, const char *table,
                            const char *column, uint8_t key[32])
{
    char label[160];
    snprintf(label, sizeof label, "%s.%s", table, column);
    return cv_keyring_keyed_hash(kr, purpose, "column", label, strlen(label), key);
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Whitespace for names: ASCII whitespace and every Unicode space separator
 * (Zs: U+00A0 no-break space, U+3000 ideographic space, ...). */
static int is_unicode_space(utf8proc_int32_t cp)
{
    if (cp < 0x80)
        return is_space((unsigned char)cp);
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x85;
}

/* Table and column names: [A-Za-z0-9_]+; row ids: no '/' (the AD separator). */
static int valid_ident(const char *s, int is_row)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return 0;
    for (const char *p = s; *p; p++) {
        if (is_row ? *p == '/'
                   : !(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                       (*p >= 'A' && *p <= 'Z')))
            return 0;
    }
    return 1;
}

/* Phones and ID numbers: NFKC first, so full-width digits, letters and
 * punctuation typed by an input method become ASCII. */
static cv_status normalize_ascii(enum cv_field_kind kind, const char *in, char *out, size_t cap,
                                 size_t *olen)
{
    utf8proc_uint8_t *k = utf8proc_NFKC((const utf8proc_uint8_t *)in);
    size_t o = 0;
    cv_status rc = CV_E_LIMIT;
    if (k == NULL)
        return CV_E_INVALID_FIELD;
    for (const char *p = (const char *)k; *p; p++) {
        char c = *p;
        if (kind == CV_FIELD_DIGITS) {
            if (c < '0' || c > '9')
                continue;
        } else {
            if (c == '-' || is_space((unsigned char)c))
                continue;
            if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
        }
        if (o + 1 >= cap)
            goto out;
        out[o++] = c;
    }
    out[o] = '\0';
    if (kind == CV_FIELD_DIGITS) {
        /* +86 / 0086 country prefix in front of an 11-digit mainland number. */
        if (o == 13 && strncmp(out, "86", 2) == 0) {
            memmove(out, out + 2, 12);
            o = 11;
        } else if (o == 15 && strncmp(out, "0086", 4) == 0) {
            memmove(out, out + 4, 12);
            o = 11;
        }
    }
    *olen = o;
    rc = CV_OK;
out:
    free(k);
    return rc;
}

/* Names: NFC, Unicode whitespace trimmed, inner runs collapsed to one space. */
static cv_status normalize_name(const char *in, char *out, size_t cap, size_t *olen)
{
    utf8proc_uint8_t *nfc = utf8proc_NFC((const utf8proc_uint8_t *)in);
    const utf8proc_uint8_t *p = nfc;
    size_t o = 0;
    int pending_space = 0;
    cv_status rc = CV_E_LIMIT;
    if (nfc == NULL)
        return CV_E_INVALID_FIELD;
    while (*p) {
        utf8proc_int32_t cp = -1;
        utf8proc_ssize_t n = utf8proc_iterate(p, -1, &cp);
        if (n <= 0) {
            rc = CV_E_INVALID_FIELD;
            goto out;
        }
        if (is_unicode_space(cp)) {
            pending_space = o > 0;
            p += n;
            continue;
        }
        if (pending_space) {
            if (o + 1 >= cap)
                goto out;
            out[o++] = ' ';
            pending_space = 0;
        }
        if (o + (size_t)n >= cap)
            goto out;
        memcpy(out + o, p, (size_t)n);
        o += (size_t)n;
        p += n;
    }
    out[o] = '\0';
    *olen = o;
    rc = CV_OK;
out:
    free(nfc);
    return rc;
}

cv_status cv_field_normalize(enum cv_field_kind kind, const char *in, char *out, size_t cap)
{
    size_t o = 0;
    cv_status rc = CV_E_INVALID_FIELD;
    if (in == NULL || cap == 0)
        return CV_E_INVALID_FIELD;
    size_t n = strlen(in);
    if (utf8proc_decompose((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, NULL, 0, 0) < 0)
        return CV_E_INVALID_FIELD;
    switch (kind) {
    case CV_FIELD_EXACT:
        if (n + 1 > cap)
            return CV_E_LIMIT;
        memcpy(out, in, n + 1);
        o = n;
        rc = CV_OK;
        break;
    case CV_FIELD_DIGITS:
    case CV_FIELD_ID_NUMBER: rc = normalize_ascii(kind, in, out, cap, &o); break;
    case CV_FIELD_NAME: rc = normalize_name(in, out, cap, &o); break;
    }
    if (rc != CV_OK)
        return rc;
    return o == 0 ? CV_E_INVALID_FIELD : CV_OK;
}

static void make_ad(char *ad, size_t cap, const char *table, const char *column, const char *row)
{
    snprintf(ad, cap, "%s/%s/%s", table, column, row);
}

cv_status cv_field_seal(struct cv_keyring *kr, const char *table, const char *column,
                        const char *row_id, const void *plain, size_t len, uint8_t **out,
                        size_t *out_len)
{
    cv_status rc = CV_E_NOMEM;
    uint8_t *key = sodium_malloc(32);
    uint8_t *buf = malloc(len + CV_FIELD_OVERHEAD);
    char ad[256];
    unsigned long long clen = 0;
    if (!valid_ident(table, 0) || !valid_ident(column, 0) || !valid_ident(row_id, 1) ||
        (plain == NULL && len > 0)) {
        rc = CV_E_ARG;
        goto out;
    }
    if (key == NULL || buf == NULL)
        goto out;
    if ((rc = column_key(kr, CV_KEY_FIELD, table, column, key)) != CV_OK)
        goto out;
    make_ad(ad, sizeof ad, table, column, row_id);
    randombytes_buf(buf, 24);
    rc = CV_E_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(buf + 24, &clen, plain, len, (const uint8_t *)ad,
                                                   strlen(ad), NULL, buf, key) != 0)
        goto out;
    *out = buf;
    *out_len = (size_t)clen + 24;
    buf = NULL;
    rc = CV_OK;
out:
    if (key)
        sodium_free(key);
    free(buf);
    return rc;
}

cv_status cv_field_open(struct cv_keyring *kr, const char *table, const char *column,
                        const char *row_id, const uint8_t *sealed, size_t len, char **plain,
                        size_t *plain_len)
{
    cv_status rc = CV_E_CRYPTO;
    uint8_t *key = NULL;
    char *buf = NULL;
    char ad[256];
    unsigned long long mlen = 0;
    if (!valid_ident(table, 0) || !valid_ident(column, 0) || !valid_ident(row_id, 1))
        return CV_E_ARG;
    if (sealed == NULL || len < CV_FIELD_OVERHEAD)
        return CV_E_CRYPTO;
    rc = CV_E_NOMEM;
    key = sodium_malloc(32);
    buf = malloc(len - CV_FIELD_OVERHEAD + 1);
    if (key == NULL || buf == NULL)
        goto out;
    if ((rc = column_key(kr, CV_KEY_FIELD, table, column, key)) != CV_OK)
        goto out;
    make_ad(ad, sizeof ad, table, column, row_id);
    rc = CV_E_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)buf, &mlen, NULL, sealed + 24,
                                                   len - 24, (const uint8_t *)ad, strlen(ad),
                                                   sealed, key) != 0)
        goto out;
    buf[mlen] = '\0';
    *plain = buf;
    *plain_len = (size_t)mlen;
    buf = NULL;
    rc = CV_OK;
out:
    if (key)
        sodium_free(key);
    free(buf);
    return rc;
}

cv_status cv_field_blind_index(struct cv_keyring *kr, const char *table, const char *column,
                               enum cv_field_kind kind, const char *value,
                               uint8_t out[CV_BLIND_BYTES])
{
    cv_status rc = CV_E_NOMEM;
    char norm[1024];
    uint8_t *key = NULL;
    if (!valid_ident(table, 0) || !valid_ident(column, 0)) {
        rc = CV_E_ARG;
        goto out;
    }
    if ((key = sodium_malloc(32)) == NULL)
        goto out;
    if ((rc = cv_field_normalize(kind, value, norm, sizeof norm)) != CV_OK)
        goto out;
    if ((rc = column_key(kr, CV_KEY_BLIND, table, column, key)) != CV_OK)
        goto out;
    rc = crypto_generichash(out, CV_BLIND_BYTES, (const uint8_t *)norm, strlen(norm), key, 32) == 0
             ? CV_OK
             : CV_E_CRYPTO;
out:
    sodium_memzero(norm, sizeof norm);
    if (key)
        sodium_free(key);
    return rc;
}
