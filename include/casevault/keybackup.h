/*
 * storage/keybackup: the separate, passphrase-encrypted backup of the key
 * directory (DESIGN §4, §6: backups never hold keys; the operator keeps
 * this file apart from them).
 *
 * File format (all integers little-endian):
 *   "CVKEYS" 0x00 0x01        magic and version (8 bytes)
 *   opslimit u64, memlimit u64 Argon2id13 parameters (crypto_pwhash)
 *   salt[16], nonce[24]
 *   XChaCha20-Poly1305-IETF ciphertext + tag of the payload, with the 64
 *   header bytes above as associated data; key = Argon2id(passphrase, salt).
 * Payload: per key file: name_len u16, name, mode u16, len u32, bytes.
 * The plaintext payload lives only in sodium_malloc memory and is wiped.
 */
#ifndef CASEVAULT_KEYBACKUP_H
#define CASEVAULT_KEYBACKUP_H

#include <stddef.h>

#include "casevault/status.h"

#define CV_KEYBACKUP_MIN_PASS 8 /* bytes */

/*
 * cv_keybackup_export - encrypt every regular file of keys_dir (names of
 * [A-Za-z0-9._-], not starting with '.', at most 64 KiB each) under
 * pass[passlen] into out_path (created 0600, must not exist; written
 * durably). Errors: CV_E_ARG (passphrase shorter than
 * CV_KEYBACKUP_MIN_PASS), CV_E_NOT_FOUND (keys_dir missing or without key
 * files), CV_E_EXISTS (out_path exists), CV_E_IO, CV_E_NOMEM, CV_E_CRYPTO.
 */
cv_status cv_keybackup_export(const char *keys_dir, const char *pass, size_t passlen,
                              const char *out_path, unsigned *nfiles);

/*
 * cv_keybackup_import - decrypt in_path with pass[passlen] and write its
 * key files into keys_dir (created 0700 if missing; existing files are
 * never overwritten). Out: *nfiles (may be NULL). Errors:
 * CV_E_SIGNATURE_INVALID (wrong passphrase or tampered file),
 * CV_E_ARCHIVE_FORMAT (not a key backup), CV_E_EXISTS (a file of the same
 * name exists in keys_dir; nothing written), CV_E_IO, CV_E_NOMEM.
 */
cv_status cv_keybackup_import(const char *in_path, const char *pass, size_t passlen,
                              const char *keys_dir, unsigned *nfiles);

#endif
