/*
 * storage/age: streaming encryption to one X25519 recipient in the age v1
 * format (C2SP age.md, https://age-encryption.org/v1), built from libsodium
 * 1.0.18 primitives (X25519, ChaCha20-Poly1305-IETF, HMAC-SHA-256 for HKDF),
 * so that `age -d -i KEY` decrypts the output byte-exactly. Memory: one
 * 64 KiB chunk, whatever the stream length.
 *
 * Why not a library: Debian 12 ships no C age implementation; the format is
 * small and this file follows the spec section by section. Interop is
 * tested against Debian's age 1.1.1.
 */
#ifndef CASEVAULT_AGE_H
#define CASEVAULT_AGE_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

struct cv_age_writer;

/* Where encrypted bytes go; return CV_OK or an error that aborts the stream. */
typedef cv_status (*cv_age_sink_fn)(void *arg, const uint8_t *data, size_t len);

/*
 * cv_age_recipient_parse - decode an "age1…" X25519 recipient (Bech32,
 * BIP 173, lowercase, HRP "age"). Out: pk[32]. Errors: CV_E_INVALID_FIELD
 * (bad characters, mixed case, checksum, length, HRP).
 */
cv_status cv_age_recipient_parse(const char *text, uint8_t pk[32]);

/*
 * cv_age_writer_new - start a stream to recipient pk: writes the header
 * (one X25519 stanza and the header MAC) through sink right away.
 * Out: *out (free with cv_age_writer_free). Errors: CV_E_CRYPTO (e.g. a
 * low-order recipient), CV_E_NOMEM, or the sink's error.
 */
cv_status cv_age_writer_new(const uint8_t pk[32], cv_age_sink_fn sink, void *arg,
                            struct cv_age_writer **out);

/* cv_age_writer_write - encrypt len bytes (any size); full 64 KiB chunks are
 * emitted once the next byte arrives (the last chunk is held back). */
cv_status cv_age_writer_write(struct cv_age_writer *w, const void *data, size_t len);

/* cv_age_writer_finish - emit the final chunk. The writer can only be freed after. */
cv_status cv_age_writer_finish(struct cv_age_writer *w);

/* cv_age_writer_free - wipe keys and free. NULL is a no-op. */
void cv_age_writer_free(struct cv_age_writer *w);

#endif
