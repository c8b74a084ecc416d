-- 0009: only the roles that unwrap seeds (retrieve: decrypt; rotate: rewrap) may read the
-- wrapped seeds. Ingest and the auditor read every other column of encryption_keys.
REVOKE SELECT ON encryption_keys FROM pqfile_ingest, pqfile_auditor;
GRANT SELECT (id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted,
              created_at, activated_at, rotate_after, rotation_queued_at, expired_at,
              revoked_at, revoke_reason, last_used_at)
    ON encryption_keys TO pqfile_ingest, pqfile_auditor;
