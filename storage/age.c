/*
 * storage/age: age v1 writer (X25519 recipient, STREAM payload). Section
 * references are to C2SP age.md.
 *
 * DESIGN NOTES
 * 1. file key = 16 random bytes; stanza: ephemeral share = X25519(e, base),
 *    wrap key = HKDF-SHA-256(ikm = X25519(e, recipient), salt = share ||
 *    recipient, info "age-encryption.org/v1/X25519"), body =
 *    ChaCha20-Poly1305(wrap key, zero nonce, file key).
 * 2. Header MAC = HMAC-SHA-256(HKDF(file key, "", "header"), header bytes up
 *    to and including "---").
 * 3. Payload: 16-byte nonce, key = HKDF(file key, nonce, "payload"); chunks
 *    of 64 KiB, nonce = 11-byte big-endian counter || last flag. The final
 *    chunk is empty only for an empty payload, so one full chunk is held
 *    back until more data or finish arrives.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/age.h"

#define CHUNK 65536

struct cv_age_writer {
    cv_age_sink_fn sink;
    void *arg;
    uint8_t key[32]; /* payload key */
    uint64_t counter;
    uint8_t *buf; /* CHUNK plaintext + 16 tag */
    size_t used;
    int finished;
};

/* HKDF-SHA-256 (RFC 5869) for a 32-byte output: extract then one expand block. */
static void hkdf32(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                   const char *info, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    uint8_t prk[32];
    const uint8_t one = 1;
    crypto_auth_hmacsha256_init(&st, salt, salt_len);
    crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    crypto_auth_hmacsha256_init(&st, prk, sizeof prk);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)info, strlen(info));
    crypto_auth_hmacsha256_update(&st, &one, 1);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(&st, sizeof st);
}

static const char b32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod(const uint8_t *v, size_t n)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t chk = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ v[i];
        for (int j = 0; j < 5; j++)
            if ((top >> j) & 1)
                chk ^= gen[j];
    }
    return chk;
}

cv_status cv_age_recipient_parse(const char *text, uint8_t pk[32])
{
    /* "age" + "1" + 52 data characters (32 bytes) + 6 checksum characters. */
    uint8_t v[3 * 2 + 1 + 64];
    size_t n = text ? strlen(text) : 0;
    if (n != 62 || strncmp(text, "age1", 4) != 0)
        return CV_E_INVALID_FIELD;
    size_t k = 0;
    const char *hrp = "age";
    for (size_t i = 0; i < 3; i++)
        v[k++] = (uint8_t)(hrp[i] >> 5);
    v[k++] = 0;
    for (size_t i = 0; i < 3; i++)
        v[k++] = (uint8_t)(hrp[i] & 31);
    uint8_t data[58];
    for (size_t i = 0; i < 58; i++) {
        const char *p = strchr(b32, text[4 + i]);
        if (p == NULL || text[4 + i] == '\0')
            return CV_E_INVALID_FIELD;
        data[i] = (uint8_t)(p - b32);
        v[k++] = data[i];
    }
    if (polymod(v, k) != 1)
        return CV_E_INVALID_FIELD;
    /* 52 five-bit groups -> 32 bytes (260 bits, 4 padding bits must be 0). */
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < 52; i++) {
        acc = (acc << 5) | data[i];
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            pk[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (o != 32 || acc != 0)
        return CV_E_INVALID_FIELD;
    return CV_OK;
}

static void b64(const uint8_t *in, size_t len, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, in, len, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

cv_status cv_age_writer_new(const uint8_t pk[32], cv_age_sink_fn sink, void *arg,
                            struct cv_age_writer **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_age_writer *w = sodium_malloc(sizeof *w);
    uint8_t file_key[16], eph[32], share[32], shared[32], wrap[32], body[32], salt[64];
    uint8_t hkey[32], mac[32], nonce[16];
    uint8_t zero12[12] = {0};
    char header[512], s1[64], s2[64], s3[64];
    if (w == NULL)
        goto out;
    memset(w, 0, sizeof *w);
    w->buf = malloc(CHUNK + 16);
    if (w->buf == NULL)
        goto out;
    w->sink = sink;
    w->arg = arg;
    rc = CV_E_CRYPTO;
    randombytes_buf(file_key, sizeof file_key);
    randombytes_buf(eph, sizeof eph);
    if (crypto_scalarmult_base(share, eph) != 0 || crypto_scalarmult(shared, eph, pk) != 0)
        goto out;
    memcpy(salt, share, 32);
    memcpy(salt + 32, pk, 32);
    hkdf32(salt, sizeof salt, shared, sizeof shared, "age-encryption.org/v1/X25519", wrap);
    if (crypto_aead_chacha20poly1305_ietf_encrypt(body, NULL, file_key, sizeof file_key, NULL, 0,
                                                  NULL, zero12, wrap) != 0)
        goto out;
    b64(share, 32, s1, sizeof s1);
    b64(body, 32, s2, sizeof s2);
    int hl =
        snprintf(header, sizeof header, "age-encryption.org/v1\n-> X25519 %s\n%s\n---", s1, s2);
    static const uint8_t empty_salt[1] = {0}; /* zero-length salt (RFC 5869 §2.2) */
    hkdf32(empty_salt, 0, file_key, sizeof file_key, "header", hkey);
    crypto_auth_hmacsha256(mac, (const uint8_t *)header, (size_t)hl, hkey);
    b64(mac, 32, s3, sizeof s3);
    hl += snprintf(header + hl, sizeof header - (size_t)hl, " %s\n", s3);
    randombytes_buf(nonce, sizeof nonce);
    hkdf32(nonce, sizeof nonce, file_key, sizeof file_key, "payload", w->key);
    if ((rc = sink(arg, (const uint8_t *)header, (size_t)hl)) != CV_OK)
        goto out;
    if ((rc = sink(arg, nonce, sizeof nonce)) != CV_OK)
        goto out;
    *out = w;
    w = NULL;
    rc = CV_OK;
out:
    sodium_memzero(file_key, sizeof file_key);
    sodium_memzero(eph, sizeof eph);
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(wrap, sizeof wrap);
    sodium_memzero(hkey, sizeof hkey);
    cv_age_writer_free(w);
    return rc;
}

static cv_status emit(struct cv_age_writer *w, int last)
{
    uint8_t nonce[12] = {0};
    uint64_t c = w->counter;
    for (int i = 10; i >= 3; i--) {
        nonce[i] = (uint8_t)(c & 0xff);
        c >>= 8;
    }
    nonce[11] = last ? 1 : 0;
    unsigned long long clen = 0;
    if (crypto_aead_chacha20poly1305_ietf_encrypt(w->buf, &clen, w->buf, w->used, NULL, 0, NULL,
                                                  nonce, w->key) != 0)
        return CV_E_CRYPTO;
    w->counter++;
    w->used = 0;
    cv_status rc = w->sink(w->arg, w->buf, (size_t)clen);
    sodium_memzero(w->buf, CHUNK + 16);
    return rc;
}

cv_status cv_age_writer_write(struct cv_age_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (w->finished)
        return CV_E_ARG;
    while (len > 0) {
        if (w->used == CHUNK) {
            cv_status rc = emit(w, 0);
            if (rc != CV_OK)
                return rc;
        }
        size_t n = CHUNK - w->used < len ? CHUNK - w->used : len;
        memcpy(w->buf + w->used, p, n);
        w->used += n;
        p += n;
        len -= n;
    }
    return CV_OK;
}

cv_status cv_age_writer_finish(struct cv_age_writer *w)
{
    if (w->finished)
        return CV_E_ARG;
    w->finished = 1;
    return emit(w, 1);
}

void cv_age_writer_free(struct cv_age_writer *w)
{
    if (w == NULL)
        return;
    if (w->buf) {
        sodium_memzero(w->buf, CHUNK + 16);
        free(w->buf);
    }
    sodium_free(w);
}
