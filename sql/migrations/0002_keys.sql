-- 0002: the key pool. Secret seeds are stored only KMS-wrapped (docs/KEYS.md, "Custody").
CREATE TABLE encryption_keys (
    id                  text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    suite               text NOT NULL CHECK (suite IN ('xwing', 'mlkem768')),
    public_key          bytea NOT NULL,
    wrapped_seed        bytea NOT NULL,
    kms_key_arn         text NOT NULL,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'rotation_queued', 'expired', 'revoked')),
    usage_count         bigint NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    bytes_encrypted     bigint NOT NULL DEFAULT 0 CHECK (bytes_encrypted >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    activated_at        timestamptz,
    rotate_after        timestamptz NOT NULL,
    rotation_queued_at  timestamptz,
    expired_at          timestamptz,
    revoked_at          timestamptz,
    revoke_reason       text,
    last_used_at        timestamptz,
    CONSTRAINT revoked_has_reason CHECK (
        status <> 'revoked'
        OR (revoked_at IS NOT NULL AND revoke_reason IS NOT NULL AND length(revoke_reason) > 0)
    )
);

-- The selection query scans only active keys of one suite, least used first.
CREATE INDEX encryption_keys_pick ON encryption_keys (suite, usage_count, id)
    WHERE status = 'active';
CREATE INDEX encryption_keys_status ON encryption_keys (suite, status);

-- Lifecycle enforced by the database itself:
--   active -> rotation_queued | expired | revoked
--   rotation_queued -> expired | revoked
--   expired -> revoked
-- Everything else (revoked -> *, expired -> active, ...) raises SQLSTATE PQ001.
CREATE FUNCTION encryption_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'encryption keys are never deleted (revoke instead)'
            USING ERRCODE = 'PQ002';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'active' THEN
            RAISE EXCEPTION 'a new key must be active, not %', NEW.status USING ERRCODE = 'PQ001';
        END IF;
        NEW.activated_at := coalesce(NEW.activated_at, now());
        RETURN NEW;
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.suite IS DISTINCT FROM OLD.suite
       OR NEW.public_key IS DISTINCT FROM OLD.public_key
       OR NEW.wrapped_seed IS DISTINCT FROM OLD.wrapped_seed
       OR NEW.kms_key_arn IS DISTINCT FROM OLD.kms_key_arn
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'key material and identity are immutable' USING ERRCODE = 'PQ002';
    END IF;
    IF OLD.status = 'revoked' AND NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'key % is revoked: nothing about it may change', OLD.id
            USING ERRCODE = 'PQ001';
    END IF;
    IF NEW.usage_count < OLD.usage_count OR NEW.bytes_encrypted < OLD.bytes_encrypted THEN
        RAISE EXCEPTION 'usage counters only grow' USING ERRCODE = 'PQ002';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT (
            (OLD.status = 'active' AND NEW.status IN ('rotation_queued', 'expired', 'revoked'))
            OR (OLD.status = 'rotation_queued' AND NEW.status IN ('expired', 'revoked'))
            OR (OLD.status = 'expired' AND NEW.status = 'revoked')
        ) THEN
            RAISE EXCEPTION 'illegal key status transition: % -> %', OLD.status, NEW.status
                USING ERRCODE = 'PQ001';
        END IF;
        IF NEW.status = 'rotation_queued' THEN
            NEW.rotation_queued_at := coalesce(NEW.rotation_queued_at, now());
        ELSIF NEW.status = 'expired' THEN
            NEW.expired_at := coalesce(NEW.expired_at, now());
        ELSIF NEW.status = 'revoked' THEN
            NEW.revoked_at := coalesce(NEW.revoked_at, now());
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER encryption_keys_guard
    BEFORE INSERT OR UPDATE OR DELETE ON encryption_keys
    FOR EACH ROW EXECUTE FUNCTION encryption_keys_guard();

CREATE TABLE key_rotations (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    old_key_id           text NOT NULL REFERENCES encryption_keys (id),
    new_key_id           text REFERENCES encryption_keys (id),
    reason               text NOT NULL,
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    documents_total      bigint NOT NULL DEFAULT 0 CHECK (documents_total >= 0),
    documents_rewrapped  bigint NOT NULL DEFAULT 0 CHECK (documents_rewrapped >= 0),
    documents_failed     bigint NOT NULL DEFAULT 0 CHECK (documents_failed >= 0),
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz
);
CREATE INDEX key_rotations_old_key ON key_rotations (old_key_id);
