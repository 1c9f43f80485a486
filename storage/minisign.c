/*
 * storage/minisign: minisign signature files. No library exists in Debian
 * for the format; it is two base64 lines over fixed binary layouts:
 *   public key: "Ed" || key id (8) || Ed25519 public key (32)
 *   signature:  "ED" || key id (8) || Ed25519(BLAKE2b-512(message)) (64)
 *   global:     Ed25519(signature (64) || trusted comment bytes)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/keyring.h"
#include "casevault/minisign.h"

#define TC_MAX 512

static void key_id_hex(const uint8_t id[8], char out[17])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | id[i];
    snprintf(out, 17, "%016llX", (unsigned long long)v);
}

cv_status cv_minisign_pubkey_text(struct cv_keyring *kr, char *out, size_t cap)
{
    uint8_t pk[32], id[8], blob[42];
    char b64[64], hex[17];
    cv_keyring_sign_pk(kr, pk, id);
    blob[0] = 'E';
    blob[1] = 'd';
    memcpy(blob + 2, id, 8);
    memcpy(blob + 10, pk, 32);
    sodium_bin2base64(b64, sizeof b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    key_id_hex(id, hex);
    int n = snprintf(out, cap, "untrusted comment: minisign public key %s\n%s\n", hex, b64);
    return n > 0 && (size_t)n < cap ? CV_OK : CV_E_LIMIT;
}

cv_status cv_minisign_sign(struct cv_keyring *kr, const void *msg, size_t len,
                           const char *trusted_comment, char **sig_text)
{
    cv_status rc = CV_E_ARG;
    uint8_t hash[64], sig[64], blob[74], pk[32], id[8];
    uint8_t *global_msg = NULL;
    uint8_t global[64];
    char b64a[128], b64b[128], hex[17];
    char *text = NULL;
    size_t tcl = trusted_comment ? strlen(trusted_comment) : 0;
    if (trusted_comment == NULL || tcl > TC_MAX || strpbrk(trusted_comment, "\r\n") != NULL)
        goto out;
    crypto_generichash(hash, sizeof hash, msg, len, NULL, 0);
    if ((rc = cv_keyring_sign(kr, hash, sizeof hash, sig)) != CV_OK)
        goto out;
    rc = CV_E_NOMEM;
    global_msg = malloc(64 + tcl);
    text = malloc(2048);
    if (global_msg == NULL || text == NULL)
        goto out;
    memcpy(global_msg, sig, 64);
    memcpy(global_msg + 64, trusted_comment, tcl);
    if ((rc = cv_keyring_sign(kr, global_msg, 64 + tcl, global)) != CV_OK)
        goto out;
    cv_keyring_sign_pk(kr, pk, id);
    blob[0] = 'E';
    blob[1] = 'D';
    memcpy(blob + 2, id, 8);
    memcpy(blob + 10, sig, 64);
    sodium_bin2base64(b64a, sizeof b64a, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(b64b, sizeof b64b, global, sizeof global, sodium_base64_VARIANT_ORIGINAL);
    key_id_hex(id, hex);
    snprintf(text, 2048,
             "untrusted comment: signature from casevault secret key %s\n%s\ntrusted comment: "
             "%s\n%s\n",
             hex, b64a, trusted_comment, b64b);
    *sig_text = text;
    text = NULL;
    rc = CV_OK;
out:
    free(global_msg);
    free(text);
    return rc;
}

/* Line i (0-based) of text into out[cap] without the newline; -1 if absent. */
static int get_line(const char *text, int i, char *out, size_t cap)
{
    const char *p = text;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '\n');
        if (p == NULL)
            return -1;
        p++;
    }
    size_t n = strcspn(p, "\r\n");
    if (n >= cap || (n == 0 && *p == '\0'))
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static int b64_exact(const char *in, uint8_t *out, size_t want)
{
    size_t got = 0;
    if (sodium_base642bin(out, want, in, strlen(in), NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return got == want ? 0 : -1;
}

cv_status cv_minisign_verify(const char *pubkey_text, const char *sig_text, const void *msg,
                             size_t len, char *trusted, size_t cap)
{
    char line[1024], tc[TC_MAX + 32];
    uint8_t pkb[42], sigb[74], global[64], hash[64];
    uint8_t *global_msg = NULL;
    cv_status rc = CV_E_ARG;
    if (pubkey_text == NULL || sig_text == NULL)
        return CV_E_ARG;
    if (get_line(pubkey_text, 1, line, sizeof line) != 0 || b64_exact(line, pkb, 42) != 0 ||
        pkb[0] != 'E' || pkb[1] != 'd')
        goto out;
    if (get_line(sig_text, 1, line, sizeof line) != 0 || b64_exact(line, sigb, 74) != 0 ||
        sigb[0] != 'E' || (sigb[1] != 'D' && sigb[1] != 'd'))
        goto out;
    if (get_line(sig_text, 2, tc, sizeof tc) != 0 || strncmp(tc, "trusted comment: ", 17) != 0)
        goto out;
    if (get_line(sig_text, 3, line, sizeof line) != 0 || b64_exact(line, global, 64) != 0)
        goto out;
    rc = CV_E_SIGNATURE_INVALID;
    if (memcmp(pkb + 2, sigb + 2, 8) != 0)
        goto out;
    if (sigb[1] == 'D') {
        crypto_generichash(hash, sizeof hash, msg, len, NULL, 0);
        if (crypto_sign_verify_detached(sigb + 10, hash, sizeof hash, pkb + 10) != 0)
            goto out;
    } else if (crypto_sign_verify_detached(sigb + 10, msg, len, pkb + 10) != 0) {
        goto out;
    }
    const char *t = tc + 17;
    size_t tl = strlen(t);
    global_msg = malloc(64 + tl);
    if (global_msg == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    memcpy(global_msg, sigb + 10, 64);
    memcpy(global_msg + 64, t, tl);
    if (crypto_sign_verify_detached(global, global_msg, 64 + tl, pkb + 10) != 0)
        goto out;
    if (trusted != NULL) {
        if (tl >= cap) {
            rc = CV_E_LIMIT;
            goto out;
        }
        memcpy(trusted, t, tl + 1);
    }
    rc = CV_OK;
out:
    free(global_msg);
    return rc;
}
