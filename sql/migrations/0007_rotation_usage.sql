-- 0007: a rotation run counts the documents it moves onto the new key as uses of that key,
-- like the ingest pipeline does (docs/KEYS.md, "Rotation runs").
GRANT UPDATE (usage_count, bytes_encrypted, last_used_at) ON encryption_keys TO pqfile_rotate;
CREATE INDEX key_rotations_status ON key_rotations (status) WHERE status IN ('queued', 'running');
