-- 002: the audit log. Each row is one leaf of the RFC 6962 Merkle tree.
CREATE TABLE audit_entries (
    seq        INTEGER PRIMARY KEY,          -- 0-based leaf index
    entry      TEXT NOT NULL,                -- canonical JSON, the leaf's bytes
    leaf_hash  BLOB NOT NULL,                -- SHA-256(0x00 || entry)
    action     TEXT NOT NULL,
    case_id    TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX audit_entries_case ON audit_entries(case_id, seq) WHERE case_id IS NOT NULL;
