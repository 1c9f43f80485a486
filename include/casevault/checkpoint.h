/*
 * storage/checkpoint: C2SP signed notes (c2sp.org/signed-note) with Ed25519
 * signatures, and C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint)
 * as their text. Pure: no database, no files, no secret keys; signing is
 * done by the caller (cv_keyring_sign over the exact text) and the
 * signature handed to cv_note_assemble. Verification is what an auditor
 * runs offline, so it is strict: a signature line from the trusted key
 * that does not verify rejects the whole note.
 *
 * Formats:
 *   key ID     = SHA-256(name || 0x0A || 0x01 || 32-byte Ed25519 key)[:4]
 *   signature  = "\xE2\x80\x94 " name " " base64(key ID (big endian) || sig64) "\n"
 *   signed note = text (ends in "\n") "\n" signature lines
 *   verifier key (keys/checkpoint.vkey) = name "+" hex8(key ID) "+"
 *                base64(0x01 || public key)   (golang.org/x/mod/sumdb/note)
 *   checkpoint text = origin "\n" decimal size "\n" base64(root) "\n"
 * base64 is RFC 4648 §4 with padding. Everything is thread-safe.
 */
#ifndef CASEVAULT_CHECKPOINT_H
#define CASEVAULT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

#define CV_NOTE_NAME_MAX    128  /* bytes of a key name / checkpoint origin */
#define CV_NOTE_MAX_BYTES   8192 /* largest note accepted by the verifier */
#define CV_NOTE_VKEY_MAX    (CV_NOTE_NAME_MAX + 1 + 8 + 1 + 44 + 1)
#define CV_NOTE_ED25519_PK  32
#define CV_NOTE_ED25519_SIG 64

/*
 * cv_note_name_valid - 1 if name is usable as our key name / origin:
 * 1..CV_NOTE_NAME_MAX bytes of printable ASCII without space or '+'
 * (stricter than the spec, which also allows other non-space UTF-8).
 */
int cv_note_name_valid(const char *name);

/* cv_note_key_id - the Ed25519 key ID of (name, pk), as a big-endian uint32. */
uint32_t cv_note_key_id(const char *name, const uint8_t pk[CV_NOTE_ED25519_PK]);

/*
 * cv_note_vkey - the verifier key text "name+hash+base64" (no newline).
 * Out: out[cap] (CV_NOTE_VKEY_MAX is enough). Errors: CV_E_ARG (invalid
 * name), CV_E_LIMIT (cap too small).
 */
cv_status cv_note_vkey(const char *name, const uint8_t pk[CV_NOTE_ED25519_PK], char *out,
                       size_t cap);

/*
 * cv_note_vkey_parse - parse a verifier key (a trailing "\n" is allowed).
 * Out: name[CV_NOTE_NAME_MAX + 1], *key_id, pk. Errors: CV_E_ARG (malformed,
 * not Ed25519, or the hash does not match name and key).
 */
cv_status cv_note_vkey_parse(const char *vkey, char name[CV_NOTE_NAME_MAX + 1], uint32_t *key_id,
                             uint8_t pk[CV_NOTE_ED25519_PK]);

/*
 * cv_note_assemble - text "\n" "— name base64(id || sig)\n". The caller
 * signed exactly `text` (which must end in "\n"). Out: *out (malloc'd,
 * NUL-terminated, caller frees). Errors: CV_E_ARG, CV_E_NOMEM.
 */
cv_status cv_note_assemble(const char *text, const char *name, uint32_t key_id,
                           const uint8_t sig[CV_NOTE_ED25519_SIG], char **out);

/*
 * cv_note_verify - check a signed note against one trusted verifier key.
 * In: note[len] (need not be NUL-terminated), vkey text. Out: *text_len,
 * the length of the signed text (the prefix of note). Accepts at most 16
 * signature lines, ignores lines of unknown keys, rejects if the trusted
 * key's line does not verify or is absent. Errors: CV_E_ARG (bad vkey),
 * CV_E_SIGNATURE_INVALID (malformed note, no or bad signature).
 */
cv_status cv_note_verify(const char *note, size_t len, const char *vkey, size_t *text_len);

struct cv_checkpoint {
    char origin[CV_NOTE_NAME_MAX + 1];
    uint64_t size;
    uint8_t root[32];
};

/*
 * cv_checkpoint_body - the checkpoint text for (origin, size, root).
 * Out: out[cap] NUL-terminated, *len (may be NULL). Errors: CV_E_ARG
 * (invalid origin), CV_E_LIMIT.
 */
cv_status cv_checkpoint_body(const char *origin, uint64_t size, const uint8_t root[32], char *out,
                             size_t cap, size_t *len);

/*
 * cv_checkpoint_parse - parse checkpoint text (origin, size, root, optional
 * non-empty extension lines which are ignored). Errors: CV_E_ARG.
 */
cv_status cv_checkpoint_parse(const char *text, size_t len, struct cv_checkpoint *out);

/*
 * cv_checkpoint_verify - cv_note_verify, then parse the text as a
 * checkpoint whose origin must equal the key name. Out: *out.
 * Errors: CV_E_ARG (bad vkey), CV_E_SIGNATURE_INVALID (bad signature, bad
 * checkpoint text or origin differs from the key name).
 */
cv_status cv_checkpoint_verify(const char *note, size_t len, const char *vkey,
                               struct cv_checkpoint *out);

#endif
