/*
 * storage/checkpoint: C2SP signed-note and tlog-checkpoint encoding and
 * verification. Never holds a secret key; never trusts a note whose
 * trusted-key signature is missing or wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/checkpoint.h"
#include "casevault/util.h"

#define EM_DASH     "\xE2\x80\x94"
#define MAX_SIGS    16
#define ALG_ED25519 0x01

int cv_note_name_valid(const char *name)
{
    if (name == NULL)
        return 0;
    size_t n = strlen(name);
    if (n == 0 || n > CV_NOTE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == '+')
            return 0;
    }
    return 1;
}

uint32_t cv_note_key_id(const char *name, const uint8_t pk[CV_NOTE_ED25519_PK])
{
    size_t n = strlen(name);
    uint8_t buf[CV_NOTE_NAME_MAX + 2 + CV_NOTE_ED25519_PK];
    uint8_t h[32];
    if (n > CV_NOTE_NAME_MAX)
        n = CV_NOTE_NAME_MAX; /* callers validate names; never overflow */
    memcpy(buf, name, n);
    buf[n] = 0x0A;
    buf[n + 1] = ALG_ED25519;
    memcpy(buf + n + 2, pk, CV_NOTE_ED25519_PK);
    cv_sha256(buf, n + 2 + CV_NOTE_ED25519_PK, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

cv_status cv_note_vkey(const char *name, const uint8_t pk[CV_NOTE_ED25519_PK], char *out,
                       size_t cap)
{
    uint8_t blob[1 + CV_NOTE_ED25519_PK];
    char b64[sodium_base64_ENCODED_LEN(sizeof blob, sodium_base64_VARIANT_ORIGINAL)];
    if (!cv_note_name_valid(name))
        return CV_E_ARG;
    blob[0] = ALG_ED25519;
    memcpy(blob + 1, pk, CV_NOTE_ED25519_PK);
    sodium_bin2base64(b64, sizeof b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, cap, "%s+%08x+%s", name, (unsigned)cv_note_key_id(name, pk), b64);
    if (n < 0 || (size_t)n >= cap)
        return CV_E_LIMIT;
    return CV_OK;
}

/* Strict standard base64 (with padding) of exactly `want` bytes. */
static int b64_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (len == 0 || len != sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1)
        return 0;
    if (sodium_base642bin(out, want, s, len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return 0;
    return bin_len == want && end == s + len;
}

cv_status cv_note_vkey_parse(const char *vkey, char name[CV_NOTE_NAME_MAX + 1], uint32_t *key_id,
                             uint8_t pk[CV_NOTE_ED25519_PK])
{
    uint8_t blob[1 + CV_NOTE_ED25519_PK];
    char nm[CV_NOTE_NAME_MAX + 1];
    if (vkey == NULL)
        return CV_E_ARG;
    size_t len = strlen(vkey);
    if (len > 0 && vkey[len - 1] == '\n')
        len--;
    const char *p1 = memchr(vkey, '+', len);
    if (p1 == NULL || (size_t)(p1 - vkey) > CV_NOTE_NAME_MAX)
        return CV_E_ARG;
    memcpy(nm, vkey, (size_t)(p1 - vkey));
    nm[p1 - vkey] = '\0';
    if (!cv_note_name_valid(nm))
        return CV_E_ARG;
    const char *hex = p1 + 1;
    const char *end = vkey + len;
    if (end - hex < 10 || hex[8] != '+')
        return CV_E_ARG;
    uint32_t id = 0;
    for (int i = 0; i < 8; i++) {
        char c = hex[i];
        unsigned v;
        if (c >= '0' && c <= '9')
            v = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = (unsigned)(c - 'a' + 10);
        else
            return CV_E_ARG;
        id = id << 4 | v;
    }
    const char *b64 = hex + 9;
    if (!b64_exact(b64, (size_t)(end - b64), blob, sizeof blob) || blob[0] != ALG_ED25519)
        return CV_E_ARG;
    if (cv_note_key_id(nm, blob + 1) != id)
        return CV_E_ARG;
    memcpy(name, nm, strlen(nm) + 1);
    *key_id = id;
    memcpy(pk, blob + 1, CV_NOTE_ED25519_PK);
    return CV_OK;
}

cv_status cv_note_assemble(const char *text, const char *name, uint32_t key_id,
                           const uint8_t sig[CV_NOTE_ED25519_SIG], char **out)
{
    uint8_t blob[4 + CV_NOTE_ED25519_SIG];
    char b64[sodium_base64_ENCODED_LEN(sizeof blob, sodium_base64_VARIANT_ORIGINAL)];
    size_t tl = text ? strlen(text) : 0;
    if (tl == 0 || text[tl - 1] != '\n' || !cv_note_name_valid(name))
        return CV_E_ARG;
    blob[0] = (uint8_t)(key_id >> 24);
    blob[1] = (uint8_t)(key_id >> 16);
    blob[2] = (uint8_t)(key_id >> 8);
    blob[3] = (uint8_t)key_id;
    memcpy(blob + 4, sig, CV_NOTE_ED25519_SIG);
    sodium_bin2base64(b64, sizeof b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    size_t cap = tl + 1 + strlen(EM_DASH " ") + strlen(name) + 1 + strlen(b64) + 2;
    char *s = malloc(cap);
    if (s == NULL)
        return CV_E_NOMEM;
    snprintf(s, cap, "%s\n" EM_DASH " %s %s\n", text, name, b64);
    *out = s;
    return CV_OK;
}

/* Valid UTF-8 without control characters other than newline. */
static int text_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\n') || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            n = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n > len)
            return 0;
        for (size_t j = 1; j < n; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return 0;
        i += n;
    }
    return 1;
}

cv_status cv_note_verify(const char *note, size_t len, const char *vkey, size_t *text_len)
{
    char name[CV_NOTE_NAME_MAX + 1];
    uint8_t pk[CV_NOTE_ED25519_PK];
    uint32_t id;
    if (cv_note_vkey_parse(vkey, name, &id, pk) != CV_OK)
        return CV_E_ARG;
    if (note == NULL || len < 3 || len > CV_NOTE_MAX_BYTES || note[len - 1] != '\n' ||
        !text_ok((const unsigned char *)note, len))
        return CV_E_SIGNATURE_INVALID;
    /* The text ends at the last blank line: find the last "\n\n". */
    size_t split = 0;
    int found = 0;
    for (size_t i = len - 1; i-- > 0;) {
        if (note[i] == '\n' && note[i + 1] == '\n') {
            split = i + 1; /* text = note[0, split) ends with '\n' */
            found = 1;
            break;
        }
    }
    if (!found)
        return CV_E_SIGNATURE_INVALID;
    size_t nsigs = 0;
    int verified = 0;
    const char *p = note + split + 1;
    const char *end = note + len;
    const size_t dash = strlen(EM_DASH " ");
    if (p >= end)
        return CV_E_SIGNATURE_INVALID; /* no signature lines */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || ++nsigs > MAX_SIGS)
            return CV_E_SIGNATURE_INVALID;
        if ((size_t)(nl - p) < dash || memcmp(p, EM_DASH " ", dash) != 0)
            return CV_E_SIGNATURE_INVALID;
        const char *nm = p + dash;
        const char *sp = memchr(nm, ' ', (size_t)(nl - nm));
        if (sp == NULL || sp == nm)
            return CV_E_SIGNATURE_INVALID;
        const char *b64 = sp + 1;
        size_t b64len = (size_t)(nl - b64);
        if (memchr(b64, ' ', b64len) != NULL)
            return CV_E_SIGNATURE_INVALID;
        size_t nmlen = (size_t)(sp - nm);
        if (nmlen == strlen(name) && memcmp(nm, name, nmlen) == 0) {
            uint8_t blob[4 + CV_NOTE_ED25519_SIG];
            /* The first 8 characters carry the key ID (6 bytes, no padding).
             * Too short for that: malformed. Another key ID: ignored. */
            uint8_t head[6];
            size_t hl = 0;
            if (b64len < 8 ||
                sodium_base642bin(head, sizeof head, b64, 8, NULL, &hl, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0 ||
                hl != 6)
                return CV_E_SIGNATURE_INVALID;
            uint32_t got = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
                           (uint32_t)head[2] << 8 | head[3];
            if (got == id) {
                if (!b64_exact(b64, b64len, blob, sizeof blob) ||
                    crypto_sign_verify_detached(blob + 4, (const unsigned char *)note, split, pk) !=
                        0)
                    return CV_E_SIGNATURE_INVALID;
                verified = 1;
            }
        }
        p = nl + 1;
    }
    if (!verified)
        return CV_E_SIGNATURE_INVALID;
    *text_len = split;
    return CV_OK;
}

cv_status cv_checkpoint_body(const char *origin, uint64_t size, const uint8_t root[32], char *out,
                             size_t cap, size_t *len)
{
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    if (!cv_note_name_valid(origin))
        return CV_E_ARG;
    sodium_bin2base64(b64, sizeof b64, root, 32, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, cap, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b64);
    if (n < 0 || (size_t)n >= cap)
        return CV_E_LIMIT;
    if (len)
        *len = (size_t)n;
    return CV_OK;
}

cv_status cv_checkpoint_parse(const char *text, size_t len, struct cv_checkpoint *out)
{
    struct cv_checkpoint c;
    const char *line[3];
    size_t llen[3];
    const char *p = text, *end = text + len;
    if (len == 0 || text[len - 1] != '\n')
        return CV_E_ARG;
    for (int i = 0; i < 3; i++) {
        const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (nl == NULL || nl == p)
            return CV_E_ARG;
        line[i] = p;
        llen[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    /* Extension lines: opaque but non-empty. */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || nl == p)
            return CV_E_ARG;
        p = nl + 1;
    }
    if (llen[0] > CV_NOTE_NAME_MAX)
        return CV_E_ARG;
    memcpy(c.origin, line[0], llen[0]);
    c.origin[llen[0]] = '\0';
    if (strlen(c.origin) != llen[0])
        return CV_E_ARG;
    if (llen[1] > 19 || (llen[1] > 1 && line[1][0] == '0'))
        return CV_E_ARG;
    c.size = 0;
    for (size_t i = 0; i < llen[1]; i++) {
        if (line[1][i] < '0' || line[1][i] > '9')
            return CV_E_ARG;
        c.size = c.size * 10 + (uint64_t)(line[1][i] - '0');
    }
    if (!b64_exact(line[2], llen[2], c.root, sizeof c.root))
        return CV_E_ARG;
    *out = c;
    return CV_OK;
}

cv_status cv_checkpoint_verify(const char *note, size_t len, const char *vkey,
                               struct cv_checkpoint *out)
{
    char name[CV_NOTE_NAME_MAX + 1];
    uint8_t pk[CV_NOTE_ED25519_PK];
    uint32_t id;
    size_t tl = 0;
    struct cv_checkpoint c;
    cv_status rc = cv_note_vkey_parse(vkey, name, &id, pk);
    if (rc != CV_OK)
        return rc;
    if ((rc = cv_note_verify(note, len, vkey, &tl)) != CV_OK)
        return rc;
    if (cv_checkpoint_parse(note, tl, &c) != CV_OK || strcmp(c.origin, name) != 0)
        return CV_E_SIGNATURE_INVALID;
    *out = c;
    return CV_OK;
}
