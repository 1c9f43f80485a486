-- 007: backups. One row per backup stream (DESIGN §6). blob_seq is the
-- highest backup_blob_log.seq inside the backup's database snapshot: an
-- incremental backup "since" it carries exactly the blobs logged after it.
CREATE TABLE backups (
    id              TEXT PRIMARY KEY,        -- ULID
    base_id         TEXT REFERENCES backups(id),  -- NULL for a full backup
    created_at      TEXT NOT NULL,           -- RFC 3339 UTC
    schema_version  INTEGER NOT NULL,
    audit_size      INTEGER NOT NULL CHECK (audit_size >= 0),  -- tree size in the snapshot
    blob_seq        INTEGER NOT NULL CHECK (blob_seq >= 0),
    blobs           INTEGER NOT NULL CHECK (blobs >= 0),       -- blob files in the stream
    blob_bytes      INTEGER NOT NULL CHECK (blob_bytes >= 0),  -- their stored bytes
    db_bytes        INTEGER NOT NULL CHECK (db_bytes >= 0)     -- snapshot bytes
) STRICT;

-- Order in which blob rows were committed. AUTOINCREMENT never reuses a
-- number, even after the highest row is deleted, so "seq > watermark" is
-- exactly "committed after the snapshot that saw the watermark" (writes
-- are serialized by SQLite's single writer).
CREATE TABLE backup_blob_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    blob_id TEXT NOT NULL
) STRICT;
INSERT INTO backup_blob_log(blob_id) SELECT id FROM blobs ORDER BY rowid;
CREATE TRIGGER blobs_backup_log AFTER INSERT ON blobs
BEGIN
    INSERT INTO backup_blob_log(blob_id) VALUES (NEW.id);
END;
