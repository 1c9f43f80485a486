-- 001: foundation. Instance metadata, wrapped root keys, operator and case tokens.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Root keys wrapped by a master key (KEK): XChaCha20-Poly1305-IETF,
-- nonce (24 bytes) || ciphertext, associated data "root/<purpose>/<kek_id>".
CREATE TABLE root_keys (
    purpose TEXT PRIMARY KEY,
    kek_id  TEXT NOT NULL,
    wrapped BLOB NOT NULL
) STRICT;

-- Bearer tokens: only a keyed BLAKE2b-256 hash is stored.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,             -- ULID
    role       TEXT NOT NULL CHECK (role IN ('admin','reviewer','auditor','backup','applicant')),
    name       TEXT NOT NULL,                -- operator-chosen label, never PII
    case_id    TEXT,                         -- applicant tokens only
    hash       BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at INTEGER,                      -- ms since epoch, NULL = never
    revoked_at TEXT
) STRICT;
CREATE INDEX tokens_case ON tokens(case_id) WHERE case_id IS NOT NULL;
