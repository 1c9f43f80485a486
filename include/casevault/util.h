/*
 * Small shared helpers: ULID ids, RFC 3339 UTC times, hex and base64url
 * encodings, SHA-256 (OpenSSL libcrypto EVP: it uses the CPU's SHA
 * extensions), and durable file writes. Nothing here logs or allocates keys.
 */
#ifndef CASEVAULT_UTIL_H
#define CASEVAULT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "casevault/status.h"

#define CV_ULID_LEN   26 /* characters, without NUL */
#define CV_TIME_LEN   24 /* "2026-11-29T19:21:37.123Z", without NUL */
#define CV_SHA256_LEN 32 /* bytes */

/*
 * cv_ulid_new - a new ULID (https://github.com/ulid/spec): 48-bit Unix time in
 * milliseconds then 80 random bits, Crockford base32, 26 characters.
 * Out: out[CV_ULID_LEN + 1], NUL-terminated. Thread-safe. Never fails.
 */
void cv_ulid_new(char out[CV_ULID_LEN + 1]);

/* cv_ulid_valid - 1 if s is exactly a 26-character Crockford base32 ULID, else 0. */
int cv_ulid_valid(const char *s);

/* cv_now_ms - wall clock, milliseconds since the Unix epoch. */
int64_t cv_now_ms(void);

/* cv_mono_ms - monotonic clock in milliseconds (for durations and deadlines). */
int64_t cv_mono_ms(void);

/*
 * cv_time_format - RFC 3339 UTC time with milliseconds ("...T...Z").
 * In: ms since the epoch. Out: out[CV_TIME_LEN + 1]. Never fails.
 */
void cv_time_format(int64_t ms, char out[CV_TIME_LEN + 1]);

/*
 * cv_hex_encode - lowercase hex. In: bin (len bytes). Out: out, which must
 * hold 2*len+1 bytes; NUL-terminated.
 */
void cv_hex_encode(const uint8_t *bin, size_t len, char *out);

/*
 * cv_hex_decode - strict lowercase/uppercase hex. In: hex string of exactly
 * 2*len characters. Out: bin[len]. Errors: CV_E_ARG on wrong length or digit.
 */
cv_status cv_hex_decode(const char *hex, uint8_t *bin, size_t len);

/*
 * cv_b64url_encode - base64url without padding (RFC 4648 §5).
 * Out: out must hold cv_b64url_len(len) + 1 bytes; NUL-terminated.
 */
void cv_b64url_encode(const uint8_t *bin, size_t len, char *out);
size_t cv_b64url_len(size_t bin_len);

/*
 * cv_b64url_decode - decode unpadded base64url into exactly len bytes.
 * Errors: CV_E_ARG if the text is not canonical base64url of len bytes.
 */
cv_status cv_b64url_decode(const char *text, uint8_t *bin, size_t len);

/* SHA-256 (FIPS 180-4) over one buffer. Out: out[32]. */
void cv_sha256(const void *data, size_t len, uint8_t out[CV_SHA256_LEN]);

/* Streaming SHA-256. cv_sha256_new returns NULL on allocation failure. */
struct cv_sha256;
struct cv_sha256 *cv_sha256_new(void);
void cv_sha256_update(struct cv_sha256 *h, const void *data, size_t len);
/* Writes the digest and frees h. h may not be used afterwards. */
void cv_sha256_final(struct cv_sha256 *h, uint8_t out[CV_SHA256_LEN]);
/* Frees h without a digest; NULL is a no-op. */
void cv_sha256_free(struct cv_sha256 *h);

/*
 * cv_file_write_durable - create path with mode, write len bytes, fsync the
 * file, and fsync its directory. Writes to "path.tmp" then renames, so
 * readers never see a partial file. Errors: CV_E_EXISTS if path exists and
 * !overwrite, CV_E_IO otherwise.
 */
cv_status cv_file_write_durable(const char *path, const void *data, size_t len, unsigned mode,
                                int overwrite);

/*
 * cv_file_read - read a whole small file (at most max bytes) into a new
 * malloc'd buffer (NUL-terminated, *len excludes the NUL). Caller frees.
 * Errors: CV_E_NOT_FOUND, CV_E_LIMIT (larger than max), CV_E_IO, CV_E_NOMEM.
 */
cv_status cv_file_read(const char *path, size_t max, char **out, size_t *len);

/*
 * cv_parse_u64 - a decimal number of 1 to 19 ASCII digits and nothing else
 * (no sign, no spaces; leading zeros allowed) into *out; every such number
 * fits in 64 bits. Errors: CV_E_ARG (*out untouched).
 */
cv_status cv_parse_u64(const char *s, uint64_t *out);

/* cv_hex_digit - the value 0..15 of one hexadecimal digit (either case), or -1. */
int cv_hex_digit(int c);

/*
 * cv_write_all - write data[len] (bytes) to fd, resuming after short writes
 * and EINTR. Errors: CV_E_IO (write failed or wrote nothing; errno kept).
 */
cv_status cv_write_all(int fd, const void *data, size_t len);

/*
 * cv_read_full - read up to len bytes into buf, resuming after short reads
 * and EINTR, stopping only at end of file: *got < len means the data ended.
 * Errors: CV_E_IO (read failed; errno kept; *got holds what was read).
 */
cv_status cv_read_full(int fd, void *buf, size_t len, size_t *got);

/* cv_fsync_dir - fsync a directory (after a rename). Errors: CV_E_IO. */
cv_status cv_fsync_dir(const char *dir);

/*
 * cv_path_join - snprintf-style join "a/b" into out[cap].
 * Errors: CV_E_LIMIT if truncated.
 */
cv_status cv_path_join(char *out, size_t cap, const char *a, const char *b);

#endif
