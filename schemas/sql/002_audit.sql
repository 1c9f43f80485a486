-- 002: the audit log. Each row is one leaf of the RFC 6962 Merkle tree.
CREATE TABLE audit_entries (
    seq        INTEGER PRIMARY KEY,          -- 0-based leaf index
    entry      TEXT NOT NULL,                -- canonical JSON, the leaf's bytes
    leaf_hash  BLOB NOT NULL,                -- SHA-256(0x00 || entry)
    -- Hashes of the perfect subtrees that this leaf completes: levels 1..k,
    -- k = number of trailing one bits of seq, 32 bytes each, level 1 first.
    -- The subtree of level l ending at leaf seq covers leaves
    -- [seq + 1 - 2^l, seq]. Together with leaf_hash these are every node of
    -- the tree that never changes again, so any root, inclusion proof or
    -- consistency proof needs O(log n) row reads.
    subtrees   BLOB NOT NULL,
    action     TEXT NOT NULL,
    case_id    TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX audit_entries_case ON audit_entries(case_id, seq) WHERE case_id IS NOT NULL;

-- Signed checkpoints (C2SP tlog-checkpoint bodies as C2SP signed notes).
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    origin     TEXT NOT NULL,                -- first line of the note, also the key name
    size       INTEGER NOT NULL CHECK (size >= 0),
    root_hash  BLOB NOT NULL,                -- 32 bytes
    note       TEXT NOT NULL,                -- the whole signed note
    created_ms INTEGER NOT NULL,             -- ms since the epoch
    UNIQUE (origin, size)
) STRICT;
