-- 0010: least privilege between components (docs/KEYS.md, "Roles and grants").
--
-- One database role per Lambda function (the three rewrap-workflow steps and its failure
-- step share pqfile_rewrap; docs say why), plus pqfile_operator for people. No function
-- role holds INSERT, UPDATE or DELETE on encryption_keys, documents, key_rotations or
-- access_logs: every write goes through a SECURITY DEFINER function below (owned by the
-- migration role, search_path pinned) that checks the transition and its invariants and
-- appends the audit row in the same transaction. The grants matrix in docs/KEYS.md lists
-- what each role may do; tests/integration/test_grants_matrix.py tries every cell.
--
-- SQLSTATEs: PQ001 illegal transition / key not usable, PQ002 immutable, PQ003 append-only
-- (0004), PQ004 invariant violated (key id, lengths), PQ005 not found, PQ006 no active key
-- to rotate onto, PQ007 audit input refused (size, operation not allowed for the role,
-- malformed actor).

-- Roles (cluster-wide, idempotent: another database on the server may have made them).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pqfile_fetch', 'pqfile_select_key', 'pqfile_encrypt',
                             'pqfile_store', 'pqfile_audit_writer', 'pqfile_record_failure',
                             'pqfile_retrieve', 'pqfile_maintain', 'pqfile_rewrap',
                             'pqfile_auditor', 'pqfile_operator']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
        -- A stuck transaction must not hold the audit chain head (or a key row) for long.
        EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L', r, '15s');
        EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', r,
                       CASE WHEN r IN ('pqfile_auditor', 'pqfile_operator') THEN '300s'
                            ELSE '30s' END);
        EXECUTE format('ALTER ROLE %I SET lock_timeout = %L', r, '10s');
        -- On RDS, functions log in with IAM tokens: the grant is part of the schema, not a
        -- manual step.
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam') THEN
            EXECUTE format('GRANT rds_iam TO %I', r);
        END IF;
    END LOOP;
END
$$;

-- The roles of 0001 that several functions shared keep no rights in this database.
REVOKE ALL ON encryption_keys, key_rotations, documents, access_logs, audit_chain_head
    FROM pqfile_ingest, pqfile_rotate, pqfile_retrieve, pqfile_auditor;
REVOKE ALL ON FUNCTION audit_append(text, text, text, text, text, text, text)
    FROM pqfile_ingest, pqfile_rotate, pqfile_retrieve;

-- New keys carry an attestation: HMAC-SHA256 made in KMS by the maintain function over the
-- key's identity (keys/attestation.py). The database stores it; selection verifies it in
-- the function, so a row planted by SQL (no KMS MAC) is never used to encrypt.
ALTER TABLE encryption_keys ADD COLUMN attestation bytea
    CHECK (attestation IS NULL OR length(attestation) BETWEEN 16 AND 64);

-- The attestation is part of the key's identity: immutable like its public key (0002's
-- guard, with the attestation added; the update trigger's WHEN clause too).
CREATE OR REPLACE FUNCTION encryption_keys_guard() RETURNS trigger
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
       OR NEW.attestation IS DISTINCT FROM OLD.attestation
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

DROP TRIGGER encryption_keys_guard_update ON encryption_keys;
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
        OR OLD.attestation IS DISTINCT FROM NEW.attestation
        OR OLD.created_at IS DISTINCT FROM NEW.created_at
        OR NEW.usage_count < OLD.usage_count
        OR NEW.bytes_encrypted < OLD.bytes_encrypted
    )
    EXECUTE FUNCTION encryption_keys_guard();

-- Operator requests: revocation (and later shredding, compromise) starts only from a
-- person; a workflow may complete a pending request, never start one.
CREATE TABLE key_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id        text NOT NULL REFERENCES encryption_keys (id),
    kind          text NOT NULL CHECK (kind IN ('revoke', 'shred', 'compromise')),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    requested_by  text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE UNIQUE INDEX key_requests_one_pending ON key_requests (key_id, kind)
    WHERE status = 'pending';
REVOKE ALL ON key_requests FROM PUBLIC;

-- Which role may append which (operation, outcome) through audit_append(). Operations
-- written by the SECURITY DEFINER functions below (key.create, key.revoke, ...) are not
-- listed: nobody may append them by hand.
CREATE TABLE audit_permissions (
    role_name  text NOT NULL,
    operation  text NOT NULL,
    outcome    text NOT NULL,
    PRIMARY KEY (role_name, operation, outcome)
);
REVOKE ALL ON audit_permissions FROM PUBLIC;
INSERT INTO audit_permissions (role_name, operation, outcome) VALUES
    ('pqfile_audit_writer',   'document.encrypt',    'success'),
    ('pqfile_retrieve',       'document.decrypt',    'success'),
    ('pqfile_retrieve',       'document.decrypt',    'refused'),
    ('pqfile_retrieve',       'document.decrypt',    'failure'),
    ('pqfile_maintain',       'key.pool_maintained', 'success'),
    ('pqfile_rewrap',         'document.rewrap',     'failure'),
    ('pqfile_rewrap',         'key.rotation_failed', 'failure');

-- Function roles: their own name is their actor. Anything else that logs in (a person, the
-- migration owner) is recorded as session_user with any claimed name kept as a detail.
CREATE FUNCTION pqfile_function_role(p_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_role IN ('pqfile_fetch', 'pqfile_select_key', 'pqfile_encrypt', 'pqfile_store',
                      'pqfile_audit_writer', 'pqfile_record_failure', 'pqfile_retrieve',
                      'pqfile_maintain', 'pqfile_rewrap', 'pqfile_auditor')
$$;

-- The chain append itself. Not executable by anyone but the owner: callers go through
-- audit_append() (checked) or the SECURITY DEFINER functions (which pass session_user).
CREATE FUNCTION audit_write(
    p_operation text, p_outcome text, p_actor text, p_document_id text, p_key_id text,
    p_request_id text, p_details text, p_db_role text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_prev  bytea;
    v_seq   bigint;
    v_at    timestamptz;
    v_hash  bytea;
BEGIN
    SELECT seq + 1, row_hash INTO v_seq, v_prev
      FROM audit_chain_head WHERE singleton FOR UPDATE;
    v_at := clock_timestamp();
    v_hash := audit_row_hash_v2(v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id,
                                p_key_id, p_request_id, p_details, p_db_role, v_prev);
    INSERT INTO access_logs (seq, occurred_at, operation, outcome, actor, document_id, key_id,
                             request_id, details, db_role, prev_hash, row_hash)
    VALUES (v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id, p_key_id,
            p_request_id, p_details, p_db_role, v_prev, v_hash);
    UPDATE audit_chain_head SET seq = v_seq, row_hash = v_hash WHERE singleton;
    RETURN v_seq;
END
$$;
REVOKE ALL ON FUNCTION audit_write(text, text, text, text, text, text, text, text) FROM PUBLIC;

-- Bounded, well-formed audit input (a row is kept forever: no 5 MB details).
CREATE FUNCTION audit_check_fields(
    p_operation text, p_outcome text, p_document_id text, p_key_id text, p_request_id text,
    p_details text
) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_json jsonb;
    v_key  text;
    v_val  jsonb;
BEGIN
    IF p_operation IS NULL OR p_operation !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'
       OR length(p_operation) > 64 THEN
        RAISE EXCEPTION 'audit operation is malformed' USING ERRCODE = 'PQ007';
    END IF;
    IF p_outcome IS NULL OR p_outcome NOT IN ('success', 'failure', 'refused') THEN
        RAISE EXCEPTION 'audit outcome is malformed' USING ERRCODE = 'PQ007';
    END IF;
    IF length(p_document_id) > 256 OR length(p_key_id) > 64 OR length(p_request_id) > 256 THEN
        RAISE EXCEPTION 'audit field too long' USING ERRCODE = 'PQ007';
    END IF;
    IF p_details IS NOT NULL THEN
        IF octet_length(p_details) > 4096 THEN
            RAISE EXCEPTION 'audit details over 4096 bytes' USING ERRCODE = 'PQ007';
        END IF;
        v_json := p_details::jsonb;
        IF jsonb_typeof(v_json) <> 'object' THEN
            RAISE EXCEPTION 'audit details must be a JSON object' USING ERRCODE = 'PQ007';
        END IF;
        FOR v_key, v_val IN SELECT key, value FROM jsonb_each(v_json) LOOP
            IF length(v_key) > 64 OR octet_length(v_val::text) > 1024 THEN
                RAISE EXCEPTION 'audit detail field over its cap' USING ERRCODE = 'PQ007';
            END IF;
        END LOOP;
    END IF;
END
$$;

-- The public append: the (operation, outcome) must be allowed for the calling role; the
-- actor is the role itself, except that retrieve may name its verified caller (an ARN).
CREATE OR REPLACE FUNCTION audit_append(
    p_operation text, p_outcome text, p_actor text, p_document_id text, p_key_id text,
    p_request_id text, p_details text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_role    text := session_user;
    v_actor   text;
    v_details text := p_details;
BEGIN
    PERFORM audit_check_fields(p_operation, p_outcome, p_document_id, p_key_id, p_request_id,
                               p_details);
    IF pqfile_function_role(v_role) THEN
        IF NOT EXISTS (SELECT 1 FROM audit_permissions
                        WHERE role_name = v_role AND operation = p_operation
                          AND outcome = p_outcome) THEN
            RAISE EXCEPTION 'role % may not append %/%', v_role, p_operation, p_outcome
                USING ERRCODE = 'PQ007';
        END IF;
        IF v_role = 'pqfile_retrieve' AND p_actor IS NOT NULL THEN
            -- (PostgreSQL regular expressions cap a bound at 255: the length apart.)
            IF length(p_actor) > 1000
               OR p_actor !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$' THEN
                RAISE EXCEPTION 'the actor must be a verified principal ARN'
                    USING ERRCODE = 'PQ007';
            END IF;
            v_actor := p_actor;
        ELSE
            v_actor := v_role;
        END IF;
    ELSE
        -- A person or the owner: session_user is the actor, a claimed name only a detail.
        v_actor := v_role;
        IF p_actor IS NOT NULL AND p_actor <> v_role THEN
            v_details := (coalesce(p_details::jsonb, '{}'::jsonb)
                          || jsonb_build_object('claimed_by', left(p_actor, 256)))::text;
        END IF;
    END IF;
    RETURN audit_write(p_operation, p_outcome, v_actor, p_document_id, p_key_id, p_request_id,
                       v_details, v_role);
END
$$;
REVOKE ALL ON FUNCTION audit_append(text, text, text, text, text, text, text) FROM PUBLIC;

-- Internal: an audit row from inside a SECURITY DEFINER function (actor = the caller's
-- role, or session_user for people, with the claimed name as a detail as above).
CREATE FUNCTION audit_internal(
    p_operation text, p_outcome text, p_claimed text, p_document_id text, p_key_id text,
    p_request_id text, p_details jsonb
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_role    text := session_user;
    v_details jsonb := p_details;
BEGIN
    IF NOT pqfile_function_role(v_role) AND p_claimed IS NOT NULL AND p_claimed <> v_role THEN
        v_details := coalesce(v_details, '{}'::jsonb)
                     || jsonb_build_object('claimed_by', left(p_claimed, 256));
    END IF;
    RETURN audit_write(p_operation, p_outcome, v_role, p_document_id, p_key_id,
                       left(p_request_id, 256), v_details::text, v_role);
END
$$;
REVOKE ALL ON FUNCTION audit_internal(text, text, text, text, text, text, jsonb) FROM PUBLIC;

-- The key id is H(public key) (docs/CONTRACTS.md): checked by the database for every key.
CREATE FUNCTION pqfile_key_id(p_suite text, p_public_key bytea) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT substr(encode(sha256(convert_to('pqfile/key-id/v1', 'UTF8')
                                || CASE p_suite WHEN 'xwing' THEN '\x647a'::bytea
                                                WHEN 'mlkem768' THEN '\x0041'::bytea END
                                || p_public_key), 'hex'), 1, 32)
$$;

-- ---------------------------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------------------------

-- maintain: insert one generated key (seed already KMS-wrapped, attestation made in KMS).
CREATE FUNCTION key_create(
    p_id text, p_suite text, p_public_key bytea, p_wrapped_seed bytea, p_kms_key_arn text,
    p_attestation bytea, p_max_age_seconds double precision, p_actor text, p_request_id text
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_suite NOT IN ('xwing', 'mlkem768') THEN
        RAISE EXCEPTION 'unknown suite' USING ERRCODE = 'PQ004';
    END IF;
    IF octet_length(p_public_key) <> (CASE p_suite WHEN 'xwing' THEN 1216 ELSE 1184 END) THEN
        RAISE EXCEPTION 'public key has the wrong length for %', p_suite USING ERRCODE = 'PQ004';
    END IF;
    IF p_id IS DISTINCT FROM pqfile_key_id(p_suite, p_public_key) THEN
        RAISE EXCEPTION 'key id is not H(public key)' USING ERRCODE = 'PQ004';
    END IF;
    IF p_wrapped_seed IS NULL OR octet_length(p_wrapped_seed) NOT BETWEEN 32 AND 4096 THEN
        RAISE EXCEPTION 'wrapped seed is malformed' USING ERRCODE = 'PQ004';
    END IF;
    IF p_kms_key_arn IS NULL OR p_kms_key_arn !~ '^arn:aws[a-z-]*:kms:' THEN
        RAISE EXCEPTION 'the seed must be wrapped by a KMS key (ARN)' USING ERRCODE = 'PQ004';
    END IF;
    IF p_attestation IS NULL THEN
        RAISE EXCEPTION 'a new key needs its attestation' USING ERRCODE = 'PQ004';
    END IF;
    IF p_max_age_seconds IS NULL OR p_max_age_seconds < 60
       OR p_max_age_seconds > 400 * 86400 THEN
        RAISE EXCEPTION 'key lifetime out of range' USING ERRCODE = 'PQ004';
    END IF;
    INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn,
                                 attestation, rotate_after)
    VALUES (p_id, p_suite, p_public_key, p_wrapped_seed, p_kms_key_arn, p_attestation,
            now() + make_interval(secs => p_max_age_seconds));
    PERFORM audit_internal('key.create', 'success', p_actor, NULL, p_id, p_request_id,
                           jsonb_build_object('suite', p_suite, 'kms_key_arn', p_kms_key_arn));
    RETURN p_id;
END
$$;

-- select_key: take the least-used active, attested key of a suite and count one use.
-- Concurrent callers skip each other's locked rows; the last attempt waits.
CREATE FUNCTION key_select(
    p_suite text, p_nbytes bigint, p_max_documents bigint, p_max_bytes bigint, p_wait boolean,
    p_exclude text[]
) RETURNS TABLE (id text, suite text, usage_count bigint, bytes_encrypted bigint,
                 public_key bytea, attestation bytea)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id text;
BEGIN
    IF p_wait THEN
        SELECT c.id INTO v_id FROM encryption_keys AS c
         WHERE c.suite = p_suite AND c.status = 'active' AND c.rotate_after > now()
           AND c.attestation IS NOT NULL
           AND c.usage_count < p_max_documents AND c.bytes_encrypted < p_max_bytes
           AND NOT (c.id = ANY (coalesce(p_exclude, '{}')))
         ORDER BY c.usage_count, c.id LIMIT 1 FOR UPDATE;
    ELSE
        SELECT c.id INTO v_id FROM encryption_keys AS c
         WHERE c.suite = p_suite AND c.status = 'active' AND c.rotate_after > now()
           AND c.attestation IS NOT NULL
           AND c.usage_count < p_max_documents AND c.bytes_encrypted < p_max_bytes
           AND NOT (c.id = ANY (coalesce(p_exclude, '{}')))
         ORDER BY c.usage_count, c.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF v_id IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        UPDATE encryption_keys AS k
           SET usage_count = k.usage_count + 1,
               bytes_encrypted = k.bytes_encrypted + greatest(p_nbytes, 0),
               last_used_at = now()
         WHERE k.id = v_id AND k.status = 'active'
        RETURNING k.id, k.suite, k.usage_count, k.bytes_encrypted, k.public_key, k.attestation;
END
$$;

-- maintain: queue an active key for rotation. Only a key that is due (age, usage caps, or
-- no attestation) may be queued: a stolen maintain credential cannot drain the pool.
CREATE FUNCTION key_queue_rotation(
    p_key_id text, p_reason text, p_max_documents bigint, p_max_bytes bigint,
    p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    k encryption_keys%ROWTYPE;
BEGIN
    SELECT * INTO k FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND OR k.status <> 'active' THEN
        RETURN false;
    END IF;
    IF NOT (
        (p_reason = 'age' AND k.rotate_after <= now())
        OR (p_reason = 'document_cap' AND p_max_documents >= 1000
            AND k.usage_count >= p_max_documents)
        OR (p_reason = 'bytes_cap' AND p_max_bytes >= 1073741824
            AND k.bytes_encrypted >= p_max_bytes)
        OR (p_reason = 'unattested' AND k.attestation IS NULL)
    ) THEN
        RAISE EXCEPTION 'key % is not due for rotation (%)', p_key_id, p_reason
            USING ERRCODE = 'PQ001';
    END IF;
    UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = p_key_id;
    INSERT INTO key_rotations (old_key_id, reason) VALUES (p_key_id, p_reason);
    PERFORM audit_internal('key.rotation_queued', 'success', p_actor, NULL, p_key_id,
                           p_request_id,
                           jsonb_build_object('reason', p_reason, 'usage_count', k.usage_count,
                                              'bytes_encrypted', k.bytes_encrypted));
    RETURN true;
END
$$;

-- operator: revoke a key at once (its documents are refused from now on).
CREATE FUNCTION key_revoke(p_key_id text, p_reason text, p_actor text, p_request_id text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_old text;
BEGIN
    IF p_reason IS NULL OR length(btrim(p_reason)) = 0 OR length(p_reason) > 1000 THEN
        RAISE EXCEPTION 'a revocation needs a reason (at most 1000 characters)'
            USING ERRCODE = 'PQ004';
    END IF;
    SELECT status INTO v_old FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no key %', p_key_id USING ERRCODE = 'PQ005';
    END IF;
    IF v_old = 'revoked' THEN
        RAISE EXCEPTION 'key % is already revoked', p_key_id USING ERRCODE = 'PQ001';
    END IF;
    UPDATE encryption_keys SET status = 'revoked', revoke_reason = p_reason WHERE id = p_key_id;
    UPDATE key_requests SET status = 'completed', completed_at = now()
     WHERE key_id = p_key_id AND kind = 'revoke' AND status = 'pending';
    PERFORM audit_internal('key.revoke', 'success', p_actor, NULL, p_key_id, p_request_id,
                           jsonb_build_object('from', v_old, 'to', 'revoked',
                                              'reason', left(p_reason, 1000)));
    RETURN v_old;
END
$$;

-- operator: expire a key at once (it decrypts, never encrypts again).
CREATE FUNCTION key_expire(p_key_id text, p_actor text, p_request_id text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_old text;
BEGIN
    SELECT status INTO v_old FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no key %', p_key_id USING ERRCODE = 'PQ005';
    END IF;
    IF v_old NOT IN ('active', 'rotation_queued') THEN
        RAISE EXCEPTION 'key % is already %', p_key_id, v_old USING ERRCODE = 'PQ001';
    END IF;
    UPDATE encryption_keys SET status = 'expired' WHERE id = p_key_id;
    PERFORM audit_internal('key.expire', 'success', p_actor, NULL, p_key_id, p_request_id,
                           jsonb_build_object('from', v_old, 'to', 'expired'));
    RETURN v_old;
END
$$;

-- operator: record a pending request (the key stops encrypting at once: rotation_queued,
-- with a rotation run so the rotate-keys workflow moves its documents to another key); the
-- workflow completes a revocation with key_complete_request() once no document uses it.
CREATE FUNCTION key_request(
    p_key_id text, p_kind text, p_reason text, p_actor text, p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_status text;
    v_id     bigint;
BEGIN
    IF p_reason IS NULL OR length(btrim(p_reason)) = 0 OR length(p_reason) > 1000 THEN
        RAISE EXCEPTION 'a request needs a reason (at most 1000 characters)'
            USING ERRCODE = 'PQ004';
    END IF;
    SELECT status INTO v_status FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no key %', p_key_id USING ERRCODE = 'PQ005';
    END IF;
    IF v_status = 'revoked' THEN
        RAISE EXCEPTION 'key % is already revoked', p_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('revoke', 'shred', 'compromise') THEN
        RAISE EXCEPTION 'unknown request kind' USING ERRCODE = 'PQ004';
    END IF;
    IF v_status = 'active' THEN
        UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = p_key_id;
    END IF;
    IF v_status IN ('active', 'rotation_queued') AND NOT EXISTS (
        SELECT 1 FROM key_rotations WHERE old_key_id = p_key_id
           AND status IN ('queued', 'running')) THEN
        INSERT INTO key_rotations (old_key_id, reason) VALUES (p_key_id, 'request:' || p_kind);
    END IF;
    INSERT INTO key_requests (key_id, kind, reason, requested_by)
    VALUES (p_key_id, p_kind, p_reason, session_user)
    ON CONFLICT (key_id, kind) WHERE status = 'pending' DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM key_requests
         WHERE key_id = p_key_id AND kind = p_kind AND status = 'pending';
        RETURN v_id;
    END IF;
    PERFORM audit_internal('key.' || p_kind || '_requested', 'success', p_actor, NULL, p_key_id,
                           p_request_id,
                           jsonb_build_object('request_id', v_id, 'reason', left(p_reason, 1000)));
    RETURN v_id;
END
$$;

-- rewrap workflow: complete a pending revocation once no document uses the key any more.
CREATE FUNCTION key_complete_request(p_request_id bigint, p_actor text, p_req text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r key_requests%ROWTYPE;
BEGIN
    SELECT * INTO r FROM key_requests WHERE id = p_request_id FOR UPDATE;
    IF NOT FOUND OR r.status <> 'pending' THEN
        RAISE EXCEPTION 'no pending request %', p_request_id USING ERRCODE = 'PQ001';
    END IF;
    IF r.kind <> 'revoke' THEN
        RAISE EXCEPTION 'request % (%) is not completed by this workflow', p_request_id, r.kind
            USING ERRCODE = 'PQ001';
    END IF;
    IF EXISTS (SELECT 1 FROM documents WHERE key_id = r.key_id) THEN
        RETURN false;
    END IF;
    UPDATE encryption_keys SET status = 'revoked', revoke_reason = r.reason
     WHERE id = r.key_id AND status <> 'revoked';
    UPDATE key_requests SET status = 'completed', completed_at = now() WHERE id = r.id;
    PERFORM audit_internal('key.revoke', 'success', p_actor, NULL, r.key_id, p_req,
                           jsonb_build_object('request', r.id, 'reason', r.reason,
                                              'requested_by', r.requested_by));
    RETURN true;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Rotation runs (pqfile_rewrap)
-- ---------------------------------------------------------------------------------------

-- plan: start a queued run onto the new key the function chose (it verified that key's
-- attestation, which SQL cannot): an active, attested key of the same suite, not the old one.
CREATE FUNCTION rotation_begin(
    p_rotation_id bigint, p_new_key_id text, p_actor text, p_request_id text
) RETURNS SETOF key_rotations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r key_rotations%ROWTYPE;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rotation run %', p_rotation_id USING ERRCODE = 'PQ005';
    END IF;
    IF r.status <> 'queued' THEN
        RETURN NEXT r;
        RETURN;
    END IF;
    IF p_new_key_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM encryption_keys n JOIN encryption_keys o ON o.id = r.old_key_id
         WHERE n.id = p_new_key_id AND n.suite = o.suite AND n.status = 'active'
           AND n.id <> o.id AND n.attestation IS NOT NULL AND n.rotate_after > now())
    THEN
        RAISE EXCEPTION 'no active key to rotate % onto', r.old_key_id USING ERRCODE = 'PQ006';
    END IF;
    UPDATE key_rotations SET status = 'running', new_key_id = p_new_key_id, started_at = now(),
           updated_at = now(),
           documents_total = (SELECT count(*) FROM documents WHERE key_id = r.old_key_id)
     WHERE id = p_rotation_id RETURNING * INTO r;
    PERFORM audit_internal('key.rotation_started', 'success', p_actor, NULL, r.old_key_id,
                           p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'new_key_id', r.new_key_id,
                                              'documents_total', r.documents_total));
    RETURN NEXT r;
END
$$;

CREATE FUNCTION rotation_record_rewrap(
    p_rotation_id bigint, p_document_id text, p_encrypted_version_id text,
    p_encrypted_size bigint, p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r       key_rotations%ROWTYPE;
    v_bytes bigint;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id;
    IF NOT FOUND OR r.status <> 'running' OR r.new_key_id IS NULL THEN
        RAISE EXCEPTION 'rotation run % is not running', p_rotation_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 THEN
        RAISE EXCEPTION 'encrypted size out of range' USING ERRCODE = 'PQ004';
    END IF;
    UPDATE documents SET key_id = r.new_key_id, encrypted_version_id = p_encrypted_version_id,
           encrypted_size = p_encrypted_size, updated_at = now()
     WHERE document_id = p_document_id AND key_id = r.old_key_id AND status = 'stored'
    RETURNING plaintext_size INTO v_bytes;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE encryption_keys SET usage_count = usage_count + 1,
           bytes_encrypted = bytes_encrypted + coalesce(v_bytes, 0), last_used_at = now()
     WHERE id = r.new_key_id;
    UPDATE key_rotations SET documents_rewrapped = documents_rewrapped + 1, updated_at = now()
     WHERE id = p_rotation_id;
    PERFORM audit_internal('document.rewrap', 'success', p_actor, p_document_id, r.new_key_id,
                           p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'from_key_id', r.old_key_id));
    RETURN true;
END
$$;

CREATE FUNCTION rotation_finish(p_rotation_id bigint, p_actor text, p_request_id text)
RETURNS SETOF key_rotations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r       key_rotations%ROWTYPE;
    v_left  bigint;
    v_state text;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rotation run %', p_rotation_id USING ERRCODE = 'PQ005';
    END IF;
    IF r.status <> 'running' THEN
        RETURN NEXT r;
        RETURN;
    END IF;
    SELECT count(*) INTO v_left FROM documents WHERE key_id = r.old_key_id;
    IF v_left > 0 THEN
        v_state := 'failed';
    ELSE
        v_state := 'completed';
        UPDATE encryption_keys SET status = 'expired'
         WHERE id = r.old_key_id AND status IN ('active', 'rotation_queued');
    END IF;
    UPDATE key_rotations SET status = v_state,
           error = CASE WHEN v_left > 0 THEN v_left || ' document(s) still use the old key' END,
           updated_at = now(),
           completed_at = CASE WHEN v_state = 'completed' THEN now() END,
           documents_failed = v_left
     WHERE id = p_rotation_id RETURNING * INTO r;
    IF v_state = 'completed' THEN
        PERFORM audit_internal('key.expire', 'success', p_actor, NULL, r.old_key_id,
                               p_request_id,
                               jsonb_build_object('rotation_id', r.id, 'to', 'expired'));
    END IF;
    PERFORM audit_internal('key.rotation_finished',
                           CASE WHEN v_state = 'completed' THEN 'success' ELSE 'failure' END,
                           p_actor, NULL, r.old_key_id, p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'new_key_id', r.new_key_id,
                                              'documents_rewrapped', r.documents_rewrapped,
                                              'documents_left', v_left));
    RETURN NEXT r;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Documents
-- ---------------------------------------------------------------------------------------

-- fetch: a pending row for an upload, or the existing row for the same source identity.
CREATE FUNCTION document_begin(
    p_document_id text, p_bucket text, p_key text, p_version_id text, p_etag text,
    p_size bigint
) RETURNS SETOF documents
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_version_id IS NULL AND p_etag IS NULL THEN
        RAISE EXCEPTION 'a document source needs a version id or an ETag' USING ERRCODE = 'PQ004';
    END IF;
    IF length(p_bucket) > 63 OR length(p_key) > 1024 OR length(p_version_id) > 1024
       OR length(p_etag) > 128 OR p_size < 0 THEN
        RAISE EXCEPTION 'document source out of range' USING ERRCODE = 'PQ004';
    END IF;
    RETURN QUERY
        INSERT INTO documents (document_id, source_bucket, source_key, source_version_id,
                               source_etag, plaintext_size)
        VALUES (p_document_id, p_bucket, p_key, p_version_id, p_etag, p_size)
        ON CONFLICT DO NOTHING RETURNING *;
END
$$;

-- select_key: give a pending document its key. A key already on the row stays, unless it is
-- no longer active for encryption (revoked, expired or queued meanwhile): then the new one
-- replaces it (a replay after revocation re-selects instead of reusing a dead key).
CREATE FUNCTION document_assign_key(p_document_id text, p_key_id text)
RETURNS SETOF documents
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    d        documents%ROWTYPE;
    v_suite  text;
    v_status text;
BEGIN
    SELECT * INTO d FROM documents WHERE document_id = p_document_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no document %', p_document_id USING ERRCODE = 'PQ005';
    END IF;
    SELECT suite, status INTO v_suite, v_status FROM encryption_keys
     WHERE id = p_key_id AND attestation IS NOT NULL;
    IF NOT FOUND OR v_status <> 'active' THEN
        RAISE EXCEPTION 'key % is not active for encryption', p_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF d.status = 'pending' OR d.status = 'failed' THEN
        IF d.key_id IS NULL OR EXISTS (SELECT 1 FROM encryption_keys
                                        WHERE id = d.key_id AND status <> 'active') THEN
            UPDATE documents SET key_id = p_key_id, suite = v_suite, updated_at = now()
             WHERE document_id = p_document_id RETURNING * INTO d;
        END IF;
    END IF;
    RETURN NEXT d;
END
$$;

-- store: commit `stored` for a pending (or failed, replayed) document whose key is still
-- usable for encryption. A document on a revoked key is never stored.
CREATE FUNCTION document_mark_stored(
    p_document_id text, p_encrypted_bucket text, p_encrypted_key text,
    p_encrypted_version_id text, p_encrypted_size bigint
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    d documents%ROWTYPE;
BEGIN
    SELECT * INTO d FROM documents WHERE document_id = p_document_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no document %', p_document_id USING ERRCODE = 'PQ005';
    END IF;
    IF d.status = 'stored' THEN
        RETURN false;
    END IF;
    IF d.key_id IS NULL OR NOT EXISTS (SELECT 1 FROM encryption_keys
                                        WHERE id = d.key_id AND status = 'active') THEN
        RAISE EXCEPTION 'key % is not active for encryption', d.key_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 OR length(p_encrypted_key) > 1024 THEN
        RAISE EXCEPTION 'encrypted object out of range' USING ERRCODE = 'PQ004';
    END IF;
    UPDATE documents SET status = 'stored', encrypted_bucket = p_encrypted_bucket,
           encrypted_key = p_encrypted_key, encrypted_version_id = p_encrypted_version_id,
           encrypted_size = p_encrypted_size, error = NULL, stored_at = now(),
           updated_at = now()
     WHERE document_id = p_document_id;
    RETURN true;
END
$$;

CREATE FUNCTION document_mark_plaintext_deleted(p_document_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    UPDATE documents SET plaintext_deleted_at = coalesce(plaintext_deleted_at, now()),
           updated_at = now()
     WHERE document_id = p_document_id AND status = 'stored';
    RETURN FOUND;
END
$$;

-- record_failure: a failure is recorded on a document that is not stored; never on one
-- that is (a stored document stays available), with the audit row in the same transaction.
CREATE FUNCTION document_record_failure(
    p_document_id text, p_error text, p_details text, p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_document_id IS NOT NULL THEN
        UPDATE documents SET status = 'failed', error = left(p_error, 2000), updated_at = now()
         WHERE document_id = p_document_id AND status <> 'stored';
    END IF;
    PERFORM audit_check_fields('document.encrypt', 'failure', p_document_id, NULL,
                               p_request_id, p_details);
    RETURN audit_write('document.encrypt', 'failure', session_user, p_document_id, NULL,
                       p_request_id, p_details, session_user);
END
$$;

-- ---------------------------------------------------------------------------------------
-- Grants: nothing to PUBLIC; each role gets exactly the functions its step calls.
-- ---------------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    pqfile_function_role(text), audit_check_fields(text, text, text, text, text, text),
    pqfile_key_id(text, bytea),
    key_create(text, text, bytea, bytea, text, bytea, double precision, text, text),
    key_select(text, bigint, bigint, bigint, boolean, text[]),
    key_queue_rotation(text, text, bigint, bigint, text, text),
    key_revoke(text, text, text, text), key_expire(text, text, text),
    key_request(text, text, text, text, text),
    key_complete_request(bigint, text, text),
    rotation_begin(bigint, text, text, text),
    rotation_record_rewrap(bigint, text, text, bigint, text, text),
    rotation_finish(bigint, text, text),
    document_begin(text, text, text, text, text, bigint),
    document_assign_key(text, text),
    document_mark_stored(text, text, text, text, bigint),
    document_mark_plaintext_deleted(text),
    document_record_failure(text, text, text, text)
FROM PUBLIC;

-- The hash helpers of 0004/0008 are pure, but nobody needs to call them directly.
REVOKE ALL ON FUNCTION audit_field_text(text), audit_field_bytes(bytea),
    audit_row_hash(bigint, timestamptz, text, text, text, text, text, text, text, bytea),
    audit_row_hash_v2(bigint, timestamptz, text, text, text, text, text, text, text, text, bytea)
FROM PUBLIC;

-- Reads (column lists: only retrieve and rewrap, which unwrap seeds, see wrapped_seed).
GRANT SELECT (id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted,
              created_at, activated_at, rotate_after, rotation_queued_at, expired_at,
              revoked_at, revoke_reason, last_used_at, attestation)
    ON encryption_keys
    TO pqfile_select_key, pqfile_encrypt, pqfile_store, pqfile_maintain, pqfile_auditor,
       pqfile_operator;
GRANT SELECT ON encryption_keys TO pqfile_retrieve, pqfile_rewrap;
GRANT SELECT ON documents
    TO pqfile_fetch, pqfile_select_key, pqfile_encrypt, pqfile_store, pqfile_audit_writer,
       pqfile_record_failure, pqfile_retrieve, pqfile_rewrap, pqfile_auditor, pqfile_operator;
GRANT SELECT ON key_rotations TO pqfile_maintain, pqfile_rewrap, pqfile_auditor, pqfile_operator;
GRANT SELECT ON key_requests TO pqfile_maintain, pqfile_rewrap, pqfile_auditor, pqfile_operator;
GRANT SELECT ON access_logs, audit_chain_head, audit_permissions
    TO pqfile_auditor, pqfile_operator;

-- Writes, only through the functions above.
GRANT EXECUTE ON FUNCTION document_begin(text, text, text, text, text, bigint) TO pqfile_fetch;
GRANT EXECUTE ON FUNCTION key_select(text, bigint, bigint, bigint, boolean, text[])
    TO pqfile_select_key;
GRANT EXECUTE ON FUNCTION document_assign_key(text, text) TO pqfile_select_key;
GRANT EXECUTE ON FUNCTION document_mark_stored(text, text, text, text, bigint) TO pqfile_store;
GRANT EXECUTE ON FUNCTION document_mark_plaintext_deleted(text) TO pqfile_store;
GRANT EXECUTE ON FUNCTION document_record_failure(text, text, text, text)
    TO pqfile_record_failure;
GRANT EXECUTE ON FUNCTION
    key_create(text, text, bytea, bytea, text, bytea, double precision, text, text),
    key_queue_rotation(text, text, bigint, bigint, text, text)
    TO pqfile_maintain;
GRANT EXECUTE ON FUNCTION
    rotation_begin(bigint, text, text, text),
    rotation_record_rewrap(bigint, text, text, bigint, text, text),
    rotation_finish(bigint, text, text),
    key_complete_request(bigint, text, text)
    TO pqfile_rewrap;
GRANT EXECUTE ON FUNCTION key_revoke(text, text, text, text), key_expire(text, text, text),
    key_request(text, text, text, text, text)
    TO pqfile_operator;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, text, text, text)
    TO pqfile_audit_writer, pqfile_retrieve, pqfile_maintain, pqfile_rewrap, pqfile_operator;
