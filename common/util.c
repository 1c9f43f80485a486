/*
 * Shared helpers: ids, times, encodings, hashing and durable writes. No
 * logging, no global state except what libsodium and OpenSSL keep.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "casevault/util.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void cv_ulid_new(char out[CV_ULID_LEN + 1])
{
    uint8_t b[16];
    uint64_t ms = (uint64_t)cv_now_ms();
    for (int i = 5; i >= 0; i--) {
        b[i] = (uint8_t)(ms & 0xff);
        ms >>= 8;
    }
    randombytes_buf(b + 6, 10);
    /* 128 bits -> 26 base32 digits, most significant first (2 pad bits). */
    for (int i = 0; i < CV_ULID_LEN; i++) {
        int bit = i * 5 - 2; /* first digit holds only 3 bits */
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int pos = bit + k;
            v <<= 1;
            if (pos >= 0)
                v |= (b[pos / 8] >> (7 - pos % 8)) & 1u;
        }
        out[i] = crockford[v];
    }
    out[CV_ULID_LEN] = '\0';
}

int cv_ulid_valid(const char *s)
{
    if (s == NULL || strlen(s) != CV_ULID_LEN)
        return 0;
    if (s[0] > '7')
        return 0;
    for (size_t i = 0; i < CV_ULID_LEN; i++)
        if (strchr(crockford, s[i]) == NULL || s[i] == '\0')
            return 0;
    return 1;
}

int64_t cv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cv_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cv_time_format(int64_t ms, char out[CV_TIME_LEN + 1])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms % 1000));
    memcpy(out, buf, CV_TIME_LEN);
    out[CV_TIME_LEN] = '\0';
}

void cv_hex_encode(const uint8_t *bin, size_t len, char *out)
{
    sodium_bin2hex(out, 2 * len + 1, bin, len);
}

cv_status cv_hex_decode(const char *hex, uint8_t *bin, size_t len)
{
    size_t got = 0;
    const char *end = NULL;
    if (hex == NULL || strlen(hex) != 2 * len)
        return CV_E_ARG;
    if (sodium_hex2bin(bin, len, hex, 2 * len, NULL, &got, &end) != 0 || got != len || *end != '\0')
        return CV_E_ARG;
    return CV_OK;
}

size_t cv_b64url_len(size_t bin_len)
{
    return sodium_base64_ENCODED_LEN(bin_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1;
}

void cv_b64url_encode(const uint8_t *bin, size_t len, char *out)
{
    sodium_bin2base64(out, cv_b64url_len(len) + 1, bin, len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

cv_status cv_b64url_decode(const char *text, uint8_t *bin, size_t len)
{
    size_t got = 0;
    const char *end = NULL;
    if (text == NULL || strlen(text) != cv_b64url_len(len))
        return CV_E_ARG;
    if (sodium_base642bin(bin, len, text, strlen(text), NULL, &got, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != len || *end != '\0')
        return CV_E_ARG;
    return CV_OK;
}

void cv_sha256(const void *data, size_t len, uint8_t out[CV_SHA256_LEN])
{
    unsigned int n = CV_SHA256_LEN;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

struct cv_sha256 *cv_sha256_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL)
        return NULL;
    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    return (struct cv_sha256 *)c;
}

void cv_sha256_update(struct cv_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate((EVP_MD_CTX *)h, data, len);
}

void cv_sha256_final(struct cv_sha256 *h, uint8_t out[CV_SHA256_LEN])
{
    unsigned int n = CV_SHA256_LEN;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h, out, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

void cv_sha256_free(struct cv_sha256 *h)
{
    if (h != NULL)
        EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

cv_status cv_path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return CV_E_LIMIT;
    return CV_OK;
}

cv_status cv_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CV_E_IO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? CV_OK : CV_E_IO;
}

cv_status cv_parse_u64(const char *s, uint64_t *out)
{
    uint64_t x = 0;
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 19)
        return CV_E_ARG;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CV_E_ARG;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *out = x;
    return CV_OK;
}

int cv_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

cv_status cv_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CV_E_IO;
        p += w;
        len -= (size_t)w;
    }
    return CV_OK;
}

cv_status cv_read_full(int fd, void *buf, size_t len, size_t *got)
{
    uint8_t *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t n = read(fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *got = off;
            return CV_E_IO;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    *got = off;
    return CV_OK;
}

cv_status cv_file_write_durable(const char *path, const void *data, size_t len, unsigned mode,
                                int overwrite)
{
    cv_status rc = CV_E_IO;
    char tmp[PATH_MAX];
    char dir[PATH_MAX];
    int fd = -1;
    struct stat st;

    if (!overwrite && stat(path, &st) == 0)
        return CV_E_EXISTS;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return CV_E_LIMIT;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (fd < 0)
        goto out;
    if (cv_write_all(fd, data, len) != CV_OK || fsync(fd) != 0)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    rc = cv_fsync_dir(dir);
    if (rc != CV_OK)
        goto out;
    rc = CV_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rc != CV_OK)
        unlink(tmp);
    return rc;
}

cv_status cv_file_read(const char *path, size_t max, char **out, size_t *len)
{
    cv_status rc = CV_E_IO;
    char *buf = NULL;
    size_t used = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CV_E_NOT_FOUND : CV_E_IO;
    buf = malloc(max + 1);
    if (buf == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    if (cv_read_full(fd, buf, max + 1, &used) != CV_OK)
        goto out;
    if (used > max) {
        rc = CV_E_LIMIT;
        goto out;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;
    rc = CV_OK;
out:
    free(buf);
    close(fd);
    return rc;
}
