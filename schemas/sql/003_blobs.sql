-- 003: encrypted blobs. One row per blob file under DATA/blobs; the file
-- holds only ciphertext. The blob's data key (DEK) is wrapped by a master key
-- (KEK): XChaCha20-Poly1305-IETF, nonce (24) || ciphertext (32) || tag (16),
-- associated data "blob/<id>/<kek_id>". Key rotation rewrites kek_id and
-- wrapped_dek, never the file.
CREATE TABLE blobs (
    id          TEXT PRIMARY KEY,            -- ULID, also the file name
    size        INTEGER NOT NULL CHECK (size >= 0),  -- plaintext bytes
    sha256      BLOB NOT NULL CHECK (length(sha256) = 32),  -- of the plaintext
    kek_id      TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL CHECK (length(wrapped_dek) = 72),
    created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX blobs_kek ON blobs(kek_id);
