/*
 * storage/keybackup: passphrase-encrypted export and import of DATA/keys.
 *
 * DESIGN NOTES
 * 1. Argon2id (crypto_pwhash, libsodium's MODERATE limits: 3 passes,
 *    256 MiB) and XChaCha20-Poly1305-IETF with a random 24-byte nonce; the
 *    parameters are in the authenticated header so that they can be raised
 *    later without a format change. Import accepts only sane limits, so a
 *    hostile file cannot ask for unbounded memory.
 * 2. Key bytes are read into and assembled in sodium_malloc memory; only
 *    ciphertext reaches ordinary buffers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "casevault/keybackup.h"
#include "casevault/util.h"

#define MAGIC        "CVKEYS\x00\x01"
#define HDR_LEN      64
#define MAX_FILE     (64u << 10)
#define MAX_FILES    256u
#define MAX_PAYLOAD  (MAX_FILES * (MAX_FILE + 300u))
#define MAX_MEMLIMIT (1024ULL << 20)
#define MAX_OPSLIMIT 16ULL

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int name_ok(const char *nm)
{
    size_t n = strlen(nm);
    if (n == 0 || n > 200 || nm[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = nm[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static cv_status derive(const char *pass, size_t passlen, const uint8_t *salt, uint64_t ops,
                        uint64_t mem, uint8_t *key)
{
    if (crypto_pwhash(key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, pass, passlen, salt, ops,
                      (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return CV_E_NOMEM;
    return CV_OK;
}

cv_status cv_keybackup_export(const char *keys_dir, const char *pass, size_t passlen,
                              const char *out_path, unsigned *nfiles)
{
    cv_status rc = CV_E_ARG;
    uint8_t *payload = NULL, *key = NULL, *out = NULL;
    size_t plen = 0, outlen = 0;
    unsigned n = 0;
    DIR *d = NULL;
    struct stat sb;
    if (pass == NULL || passlen < CV_KEYBACKUP_MIN_PASS || keys_dir == NULL || out_path == NULL)
        goto out;
    rc = CV_E_EXISTS;
    if (lstat(out_path, &sb) == 0)
        goto out;
    rc = CV_E_NOMEM;
    if ((payload = sodium_malloc(MAX_PAYLOAD)) == NULL ||
        (key = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)) == NULL)
        goto out;
    rc = CV_E_NOT_FOUND;
    if ((d = opendir(keys_dir)) == NULL)
        goto out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (!name_ok(e->d_name) || cv_path_join(path, sizeof path, keys_dir, e->d_name) != CV_OK)
            continue;
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (off_t)MAX_FILE ||
            n >= MAX_FILES) {
            close(fd);
            continue;
        }
        size_t nl = strlen(e->d_name), len = (size_t)sb.st_size, got = 0;
        uint8_t *p = payload + plen;
        p[0] = (uint8_t)nl;
        p[1] = (uint8_t)(nl >> 8);
        memcpy(p + 2, e->d_name, nl);
        p += 2 + nl;
        unsigned mode = (unsigned)(sb.st_mode & 0644);
        p[0] = (uint8_t)mode;
        p[1] = (uint8_t)(mode >> 8);
        for (int i = 0; i < 4; i++)
            p[2 + i] = (uint8_t)(len >> (8 * i));
        p += 6;
        int bad = cv_read_full(fd, p, len, &got) != CV_OK || got != len;
        close(fd);
        if (bad) {
            rc = CV_E_IO;
            goto out;
        }
        plen += 2 + nl + 6 + len;
        n++;
    }
    if (n == 0)
        goto out;
    rc = CV_E_NOMEM;
    outlen = HDR_LEN + plen + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    if ((out = malloc(outlen)) == NULL)
        goto out;
    memcpy(out, MAGIC, 8);
    put64(out + 8, crypto_pwhash_OPSLIMIT_MODERATE);
    put64(out + 16, crypto_pwhash_MEMLIMIT_MODERATE);
    randombytes_buf(out + 24, 16);
    randombytes_buf(out + 40, 24);
    if ((rc = derive(pass, passlen, out + 24, crypto_pwhash_OPSLIMIT_MODERATE,
                     crypto_pwhash_MEMLIMIT_MODERATE, key)) != CV_OK)
        goto out;
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + HDR_LEN, &clen, payload, plen, out, HDR_LEN,
                                               NULL, out + 40, key);
    if ((rc = cv_file_write_durable(out_path, out, outlen, 0600, 0)) != CV_OK)
        goto out;
    if (nfiles)
        *nfiles = n;
    rc = CV_OK;
out:
    if (d)
        closedir(d);
    sodium_free(payload);
    sodium_free(key);
    free(out);
    return rc;
}

cv_status cv_keybackup_import(const char *in_path, const char *pass, size_t passlen,
                              const char *keys_dir, unsigned *nfiles)
{
    cv_status rc = CV_E_ARG;
    char *in = NULL;
    size_t inlen = 0;
    uint8_t *payload = NULL, *key = NULL;
    unsigned long long plen = 0;
    unsigned n = 0;
    char path[PATH_MAX];
    struct stat sb;
    if (in_path == NULL || pass == NULL || keys_dir == NULL)
        goto out;
    if ((rc = cv_file_read(in_path, HDR_LEN + MAX_PAYLOAD + 64, &in, &inlen)) != CV_OK)
        goto out;
    const uint8_t *u = (const uint8_t *)in;
    rc = CV_E_ARCHIVE_FORMAT;
    if (inlen < HDR_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES || memcmp(u, MAGIC, 8) != 0)
        goto out;
    uint64_t ops = get64(u + 8), mem = get64(u + 16);
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > MAX_OPSLIMIT ||
        mem < crypto_pwhash_MEMLIMIT_MIN || mem > MAX_MEMLIMIT)
        goto out;
    rc = CV_E_NOMEM;
    if ((payload = sodium_malloc(inlen)) == NULL ||
        (key = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)) == NULL)
        goto out;
    if ((rc = derive(pass, passlen, u + 24, ops, mem, key)) != CV_OK)
        goto out;
    rc = CV_E_SIGNATURE_INVALID;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(payload, &plen, NULL, u + HDR_LEN,
                                                   inlen - HDR_LEN, u, HDR_LEN, u + 40, key) != 0)
        goto out;
    /* Two passes: validate everything (and refuse collisions), then write. */
    for (int pass_no = 0; pass_no < 2; pass_no++) {
        size_t off = 0;
        n = 0;
        if (pass_no == 1 && mkdir(keys_dir, 0700) != 0 && errno != EEXIST) {
            rc = CV_E_IO;
            goto out;
        }
        while (off < plen) {
            char name[256];
            rc = CV_E_ARCHIVE_FORMAT;
            if (plen - off < 2)
                goto out;
            size_t nl = (size_t)payload[off] | ((size_t)payload[off + 1] << 8);
            if (nl == 0 || nl > 200 || plen - off < 2 + nl + 6)
                goto out;
            memcpy(name, payload + off + 2, nl);
            name[nl] = '\0';
            const uint8_t *p = payload + off + 2 + nl;
            unsigned mode = (unsigned)p[0] | ((unsigned)p[1] << 8);
            size_t len =
                (size_t)p[2] | ((size_t)p[3] << 8) | ((size_t)p[4] << 16) | ((size_t)p[5] << 24);
            if (!name_ok(name) || strlen(name) != nl || len > MAX_FILE ||
                plen - off - 2 - nl - 6 < len)
                goto out;
            if (cv_path_join(path, sizeof path, keys_dir, name) != CV_OK) {
                rc = CV_E_LIMIT;
                goto out;
            }
            if (pass_no == 0) {
                if (lstat(path, &sb) == 0) {
                    rc = CV_E_EXISTS;
                    goto out;
                }
            } else if ((rc = cv_file_write_durable(path, p + 6, len, mode & 0644, 0)) != CV_OK) {
                goto out;
            }
            off += 2 + nl + 6 + len;
            n++;
        }
    }
    if (nfiles)
        *nfiles = n;
    rc = CV_OK;
out:
    sodium_free(payload);
    sodium_free(key);
    free(in);
    return rc;
}
