-- 0006: the key-selection hot path (docs/KEYS.md, "Pool").
-- A selection only bumps usage_count / bytes_encrypted / last_used_at. With no index on
-- those columns and free room on every page, each bump is a HOT update (no index writes,
-- little bloat); and the lifecycle guard runs only when a guarded column changes,
-- decided by the trigger's WHEN clause without entering PL/pgSQL.
DROP INDEX encryption_keys_pick;
ALTER TABLE encryption_keys SET (fillfactor = 50);

DROP TRIGGER encryption_keys_guard ON encryption_keys;
CREATE TRIGGER encryption_keys_guard_insert
    BEFORE INSERT ON encryption_keys
    FOR EACH ROW EXECUTE FUNCTION encryption_keys_guard();
CREATE TRIGGER encryption_keys_guard_delete
    BEFORE DELETE ON encryption_keys
    FOR EACH ROW EXECUTE FUNCTION encryption_keys_guard();
CREATE TRIGGER encryption_keys_guard_update
    BEFORE UPDATE ON encryption_keys
    FOR EACH ROW
    WHEN (
        OLD.status = 'revoked'
        OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.id IS DISTINCT FROM NEW.id
        OR OLD.suite IS DISTINCT FROM NEW.suite
        OR OLD.public_key IS DISTINCT FROM NEW.public_key
        OR OLD.wrapped_seed IS DISTINCT FROM NEW.wrapped_seed
        OR OLD.kms_key_arn IS DISTINCT FROM NEW.kms_key_arn
        OR OLD.created_at IS DISTINCT FROM NEW.created_at
        OR NEW.usage_count < OLD.usage_count
        OR NEW.bytes_encrypted < OLD.bytes_encrypted
    )
    EXECUTE FUNCTION encryption_keys_guard();
