-- 004: real-name records, MFA disassociation cases, their documents, and
-- the failed identity checks that rate-limit case creation (DESIGN §2, §7).
-- Every *_enc column is XChaCha20-Poly1305 ciphertext (storage/field.c) with
-- associated data "table/column/row id"; every *_bi column is a keyed
-- BLAKE2b-256 blind index of the canonical value. No PII is stored in clear.

CREATE TABLE accounts (
  account_id TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('personal','enterprise','sub')),
  primary_account_id TEXT,
  real_name_verified INTEGER NOT NULL CHECK (real_name_verified IN (0,1)),
  id_type TEXT CHECK (id_type IN ('cn_resident_id','passport')),
  name_enc BLOB,
  name_bi BLOB,
  id_number_enc BLOB,
  id_number_bi BLOB,
  enterprise_name_enc BLOB,
  enterprise_name_bi BLOB,
  uscc_enc BLOB,
  uscc_bi BLOB,
  mobile_enc BLOB,
  mobile_bi BLOB,
  mfa_bound INTEGER NOT NULL CHECK (mfa_bound IN (0,1)),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  CHECK ((type = 'sub') = (primary_account_id IS NOT NULL))
) STRICT;

CREATE TABLE cases (
  id TEXT PRIMARY KEY, -- ULID
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  applicant_type TEXT NOT NULL CHECK (applicant_type IN ('personal','enterprise')),
  status TEXT NOT NULL CHECK (status IN ('draft','submitted','needs_resubmission',
                                   'approval_pending','approved','rejected','closed')),
  id_type TEXT NOT NULL CHECK (id_type IN ('cn_resident_id','passport')),
  name_enc BLOB NOT NULL,
  id_number_enc BLOB NOT NULL,
  mobile_enc BLOB NOT NULL,
  contact_mobile_enc BLOB NOT NULL,
  enterprise_name_enc BLOB,
  uscc_enc BLOB,
  round INTEGER NOT NULL DEFAULT 0, -- +1 per resubmission request
  resubmit_kinds TEXT, -- comma list of kinds asked for again
  first_approver TEXT, -- token id (four-eyes)
  decision TEXT CHECK (decision IN ('approve','reject','resubmit')),
  decided_by TEXT,
  reason_enc BLOB,
  created_ms INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX cases_status ON cases(status, id);
-- One open case per account (DESIGN §2): open = not yet decided or closed.
CREATE UNIQUE INDEX cases_one_open ON cases(account_id)
  WHERE status IN ('draft','submitted','needs_resubmission','approval_pending');

CREATE TABLE documents (
  id TEXT PRIMARY KEY,
  case_id TEXT NOT NULL REFERENCES cases(id),
  kind TEXT NOT NULL CHECK (kind IN ('id_in_hand','business_license')),
  original_blob_id TEXT NOT NULL,
  normalized_blob_id TEXT NOT NULL,
  source_format TEXT NOT NULL,
  original_size INTEGER NOT NULL CHECK (original_size >= 0),
  original_sha256 TEXT NOT NULL, -- lowercase hex
  normalized_sha256 TEXT NOT NULL,
  width INTEGER NOT NULL CHECK (width > 0),
  height INTEGER NOT NULL CHECK (height > 0),
  orientation_applied INTEGER NOT NULL DEFAULT 1,
  file_name_enc BLOB, -- client file name, sealed
  round INTEGER NOT NULL DEFAULT 0, -- case round it was uploaded in
  created_at TEXT NOT NULL,
  superseded INTEGER NOT NULL DEFAULT 0 CHECK (superseded IN (0,1))
) STRICT;
CREATE INDEX documents_case ON documents(case_id, kind, superseded);

-- Failed identity checks at case creation, per account, for the rate limit.
CREATE TABLE identity_failures (
  account_id TEXT NOT NULL,
  at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX identity_failures_account ON identity_failures(account_id, at_ms);
