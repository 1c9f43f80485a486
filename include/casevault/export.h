/*
 * storage/export: the case archive an auditor takes away (DESIGN §6), and
 * its offline verifier.
 *
 * An export is a tar (pax-restricted) or zip stream, optionally wrapped in
 * age v1 for one X25519 recipient, holding, in bytewise name order:
 *   MANIFEST.sha256          `sha256sum -c` lines for every other file
 *   MANIFEST.sha256.minisig  minisign (prehashed Ed25519) signature of it,
 *                            trusted comment "casevault export case=<id> as_of=<N>"
 *   audit/checkpoint         signed note (C2SP checkpoint) at tree size N
 *   audit/entries.jsonl      every entry about the case with seq < N, one a line
 *   audit/proofs.json        an RFC 9162 inclusion proof of each entry in N
 *   case.json                decrypted identity fields, status history as of N
 *   documents/<doc id>-<kind>.jpg   normalized image of each document uploaded
 *                            by N (superseded ones too)
 *   originals/<doc id>-<client file name, NFC, made safe>
 * Everything is a function of (case, N): entries sorted, every mtime = the
 * case's last change as of N, owner 0, modes 0644/0755, STORE for images in
 * zip, deflate for text; Ed25519 signatures are deterministic. So the same
 * case exported as of the same N gives the same bytes (the age wrapper adds
 * random keys and nonces, by design).
 *
 * cv_export_prepare does every check and the audit writes (case.view for
 * the identity it decrypts, export.create) BEFORE the first byte: once it
 * succeeds, cv_export_write only reads (entries < N, document rows, blobs)
 * and can run in another thread (it starts one helper thread that decrypts
 * the blobs in member order while the caller writes the archive; the
 * plaintext is authenticated chunk by chunk, see storage/export.c, and not
 * hashed again). Memory is about 1 MiB of buffers plus per-document
 * metadata, whatever the documents' sizes. Nothing here logs.
 */
#ifndef CASEVAULT_EXPORT_H
#define CASEVAULT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/archive.h"
#include "casevault/case.h"
#include "casevault/status.h"

#define CV_EXPORT_SAFE_NAME_MAX 200 /* bytes of a made-safe name */

struct cv_datadir;
struct cv_export;

struct cv_export_params {
    const char *case_id;
    enum cv_archive_format format;
    uint64_t as_of;           /* tree size N; 0 = the size before export.create */
    const uint8_t *recipient; /* 32-byte X25519 key (cv_age_recipient_parse), or NULL */
    const struct cv_case_actor *actor;
};

/*
 * cv_export_prepare - validate and audit an export of p->case_id as of N:
 * in one write transaction, N = p->as_of or the current tree size, decrypt
 * the identity (appends case.view) and append export.create (details:
 * as_of, format, encrypted), both landing after N; then the signed
 * checkpoint at N (signed on demand). dd is borrowed and must outlive the
 * export. Out: *out (free with cv_export_free; holds the identity in
 * sodium_malloc memory). Errors: CV_E_NOT_FOUND (no such case),
 * CV_E_RANGE (N beyond the tree, 0, or before the case's first entry),
 * CV_E_DB, CV_E_DB_BUSY, CV_E_CRYPTO, CV_E_NOMEM.
 */
cv_status cv_export_prepare(struct cv_datadir *dd, const struct cv_export_params *p,
                            struct cv_export **out);

/* cv_export_as_of - the tree size N the export covers. */
uint64_t cv_export_as_of(const struct cv_export *x);

/*
 * cv_export_write - produce the whole stream through sink (which may be
 * called many times with pieces of any size). Call once per export.
 * A blob that fails its checks (authentication, size, SHA-256) cuts the
 * stream with that error; the partial output then fails verify-export.
 * Errors: CV_E_ARG (called twice), the blob store's errors, CV_E_DB,
 * CV_E_ARCHIVE_FORMAT, CV_E_CRYPTO, CV_E_NOMEM, or the sink's error.
 */
cv_status cv_export_write(struct cv_export *x, cv_archive_sink_fn sink, void *arg);

/* cv_export_write_fd - cv_export_write to a blocking fd (file or pipe).
 * Errors: as cv_export_write, CV_E_IO (write failed, e.g. EPIPE). */
cv_status cv_export_write_fd(struct cv_export *x, int fd);

/* cv_export_free - wipe and free. NULL is a no-op. */
void cv_export_free(struct cv_export *x);

/*
 * cv_export_safe_name - the "made safe" form of a client file name for
 * originals/: invalid UTF-8 replaced by U+FFFD, NFC (utf8proc), '/', '\\',
 * ':', control and format characters replaced by '_', leading dots and
 * spaces dropped, at most CV_EXPORT_SAFE_NAME_MAX bytes (the stem cut at a
 * character boundary, a short ASCII extension kept), "file" if nothing is
 * left. Out: out[cap] (cap >= CV_EXPORT_SAFE_NAME_MAX + 1). Errors: CV_E_LIMIT,
 * CV_E_NOMEM.
 */
cv_status cv_export_safe_name(const char *in, char *out, size_t cap);

/* ---- offline verification (casevault verify-export) ---- */

/* Called once per check: name ("archive", "manifest", "signature",
 * "checkpoint", "proofs"), ok, and a one-line message saying what was
 * checked or exactly what failed (member names, entry index). */
typedef void (*cv_export_report_fn)(void *arg, const char *check, int ok, const char *msg);

/*
 * cv_export_verify_fd - read an export (tar or zip; a pipe is fine, zip is
 * then read through its local headers) from fd and check: the archive
 * reads to its end; every MANIFEST.sha256 line's hash; no file present
 * but absent from the manifest; the minisign signature over the manifest
 * with pubkey_text (a minisign .pub file), whose trusted comment names the
 * case and N; the checkpoint's signed note with vkey_text
 * (DATA/keys/checkpoint.vkey), whose size is N; every entry of
 * audit/entries.jsonl against its inclusion proof and the checkpoint's
 * root. Every failure is reported through report; checks go on after a
 * failure where they still mean something. Returns CV_OK only if all
 * passed. Errors: CV_E_MANIFEST_MISMATCH (archive or manifest),
 * CV_E_SIGNATURE_INVALID (either signature), CV_E_PROOF_INVALID, CV_E_NOMEM
 * — the first failure's status.
 */
cv_status cv_export_verify_fd(int fd, int seekable, const char *pubkey_text, const char *vkey_text,
                              cv_export_report_fn report, void *arg);

#endif
