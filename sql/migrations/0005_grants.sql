-- 0005: least privilege (docs/KEYS.md, "Roles"). Nothing is granted to PUBLIC.
--   pqfile_ingest   select keys, bump usage, insert/advance documents, append audit rows
--   pqfile_retrieve read keys and documents, append audit rows
--   pqfile_rotate   key lifecycle (refill, queue, expire, revoke), rotation runs, rewrap
--   pqfile_auditor  read everything, change nothing
-- Nobody but the owner (the migration role) may UPDATE, DELETE or TRUNCATE audit rows,
-- and audit rows are inserted only through audit_append().
REVOKE ALL ON encryption_keys, key_rotations, documents, access_logs, audit_chain_head
    FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_append(text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION encryption_keys_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION access_logs_append_only() FROM PUBLIC;

GRANT SELECT ON encryption_keys TO pqfile_ingest, pqfile_retrieve, pqfile_rotate, pqfile_auditor;
GRANT UPDATE (usage_count, bytes_encrypted, last_used_at) ON encryption_keys TO pqfile_ingest;
GRANT INSERT ON encryption_keys TO pqfile_rotate;
GRANT UPDATE (status, revoke_reason, rotation_queued_at, expired_at, revoked_at)
    ON encryption_keys TO pqfile_rotate;

GRANT SELECT, INSERT ON documents TO pqfile_ingest;
GRANT UPDATE (encrypted_bucket, encrypted_key, encrypted_version_id, key_id, suite,
              plaintext_size, encrypted_size, status, error, updated_at, stored_at,
              plaintext_deleted_at)
    ON documents TO pqfile_ingest;
GRANT SELECT ON documents TO pqfile_retrieve, pqfile_auditor;
GRANT SELECT ON documents TO pqfile_rotate;
GRANT UPDATE (key_id, suite, encrypted_version_id, encrypted_size, updated_at)
    ON documents TO pqfile_rotate;

GRANT SELECT, INSERT ON key_rotations TO pqfile_rotate;
GRANT UPDATE (new_key_id, status, documents_total, documents_rewrapped, documents_failed,
              error, started_at, updated_at, completed_at)
    ON key_rotations TO pqfile_rotate;
GRANT SELECT ON key_rotations TO pqfile_auditor;

GRANT SELECT ON access_logs, audit_chain_head TO pqfile_auditor;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, text, text, text)
    TO pqfile_ingest, pqfile_retrieve, pqfile_rotate;
