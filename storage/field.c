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

cv_status cv_field_normalize(enum cv_field_kind kind, const char *in, char *out, size_t cap)
{
    size_t o = 0;
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
        break;
    case CV_FIELD_DIGITS:
        for (const char *p = in; *p; p++) {
            if (*p >= '0' && *p <= '9') {
                if (o + 1 >= cap)
                    return CV_E_LIMIT;
                out[o++] = *p;
            }
        }
        out[o] = '\0';
        /* +86 / 0086 country prefix in front of an 11-digit mainland number. */
        if (o == 13 && strncmp(out, "86", 2) == 0) {
            memmove(out, out + 2, 12);
            o = 11;
        } else if (o == 15 && strncmp(out, "0086", 4) == 0) {
            memmove(out, out + 4, 12);
            o = 11;
        }
        break;
    case CV_FIELD_ID_NUMBER:
        for (const char *p = in; *p; p++) {
            char c = *p;
            if (c == ' ' || c == '-')
                continue;
            if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
            if (o + 1 >= cap)
                return CV_E_LIMIT;
            out[o++] = c;
        }
        out[o] = '\0';
        break;
    case CV_FIELD_NAME: {
        utf8proc_uint8_t *nfc = utf8proc_NFC((const utf8proc_uint8_t *)in);
        if (nfc == NULL)
            return CV_E_INVALID_FIELD;
        const char *p = (const char *)nfc;
        while (is_space((unsigned char)*p))
            p++;
        int pending_space = 0;
        for (; *p; p++) {
            if (is_space((unsigned char)*p)) {
                pending_space = 1;
                continue;
            }
            if (pending_space) {
                if (o + 1 >= cap) {
                    free(nfc);
                    return CV_E_LIMIT;
                }
                out[o++] = ' ';
                pending_space = 0;
            }
            if (o + 1 >= cap) {
                free(nfc);
                return CV_E_LIMIT;
            }
            out[o++] = *p;
        }
        out[o] = '\0';
        free(nfc);
        break;
    }
    }
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
    uint8_t *key = sodium_malloc(32);
    if (key == NULL)
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
