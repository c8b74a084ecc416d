-- 0013: crypto-shredding, operator-queued rotations with a target suite (docs/KEYS.md,
-- "Rotation", "Revocation", "Shredding", "Roles and grants").
--
-- - encryption_keys: a terminal `shredded` status whose row holds no wrapped seed (check
--   constraint), stamped `shredded_at`; only key_shred() below gets a key there.
-- - documents: a `shredded` status; document_tombstones keeps one row per document lost
--   (document id, key id, tenant, reason, request, who, when), and each has an audit row.
-- - pqfile_shred: the shred function's own role (the one function allowed to delete
--   packages in S3): it lists what a shred destroys and calls key_shred(), nothing else.
-- - key_request('shred') opens no rotation run (a rewrap would keep the documents the
--   operator asked to destroy) and supersedes queued runs of the key; a revoked key may
--   still be shredded.
-- - key_rotations.to_suite: the suite a run moves its documents to (NULL: the old key's);
--   rotation_queue() lets an operator queue a key (due or not) with a target suite.
--
-- SQLSTATEs as in 0010: PQ001 illegal transition, PQ004 invariant violated, PQ005 not found.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pqfile_shred') THEN
        BEGIN
            CREATE ROLE pqfile_shred LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    ALTER ROLE pqfile_shred SET idle_in_transaction_session_timeout = '15s';
    ALTER ROLE pqfile_shred SET statement_timeout = '300s';
    ALTER ROLE pqfile_shred SET lock_timeout = '10s';
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO pqfile_shred;
    END IF;
END
$$;

-- The shred role is a function role: its own name is the actor of its audit rows.
CREATE OR REPLACE FUNCTION pqfile_function_role(p_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_role IN ('pqfile_fetch', 'pqfile_select_key', 'pqfile_encrypt', 'pqfile_store',
                      'pqfile_audit_writer', 'pqfile_record_failure', 'pqfile_retrieve',
                      'pqfile_maintain', 'pqfile_rewrap', 'pqfile_auditor', 'pqfile_shred')
$$;
REVOKE ALL ON FUNCTION pqfile_function_role(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Keys: `shredded` holds no seed
-- ---------------------------------------------------------------------------------------
ALTER TABLE encryption_keys DROP CONSTRAINT encryption_keys_status_check;
ALTER TABLE encryption_keys
    ADD CONSTRAINT encryption_keys_status_check
        CHECK (status IN ('active', 'rotation_queued', 'expired', 'revoked', 'shredded')),
    ALTER COLUMN wrapped_seed DROP NOT NULL,
    ADD COLUMN shredded_at timestamptz,
    ADD CONSTRAINT shredded_holds_no_seed CHECK ((status = 'shredded') = (wrapped_seed IS NULL)),
    ADD CONSTRAINT shredded_has_time CHECK (status <> 'shredded' OR shredded_at IS NOT NULL);

-- 0010's guard, plus: any status but shredded -> shredded (revoked included), and then
-- only with the seed destroyed; nothing about a shredded key changes again.
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
    IF OLD.status = 'shredded' AND NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'key % is shredded: nothing about it may change', OLD.id
            USING ERRCODE = 'PQ001';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.suite IS DISTINCT FROM OLD.suite
       OR NEW.public_key IS DISTINCT FROM OLD.public_key
       OR (NEW.wrapped_seed IS DISTINCT FROM OLD.wrapped_seed
           AND NOT (NEW.status = 'shredded' AND NEW.wrapped_seed IS NULL))
       OR NEW.kms_key_arn IS DISTINCT FROM OLD.kms_key_arn
       OR NEW.attestation IS DISTINCT FROM OLD.attestation
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'key material and identity are immutable' USING ERRCODE = 'PQ002';
    END IF;
    IF OLD.status = 'revoked' AND NEW IS DISTINCT FROM OLD AND NEW.status <> 'shredded' THEN
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
            OR NEW.status = 'shredded'
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
        ELSIF NEW.status = 'shredded' THEN
            NEW.shredded_at := coalesce(NEW.shredded_at, now());
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
        OLD.status IN ('revoked', 'shredded')
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

-- The new column is readable wherever the other key columns are (not wrapped_seed).
GRANT SELECT (shredded_at) ON encryption_keys
    TO pqfile_select_key, pqfile_encrypt, pqfile_store, pqfile_maintain, pqfile_auditor,
       pqfile_operator;

-- ---------------------------------------------------------------------------------------
-- Documents: `shredded`, and a tombstone per document lost
-- ---------------------------------------------------------------------------------------
ALTER TABLE documents DROP CONSTRAINT documents_status_check;
ALTER TABLE documents ADD CONSTRAINT documents_status_check
    CHECK (status IN ('pending', 'encrypted', 'stored', 'failed', 'shredded'));
CREATE INDEX documents_status ON documents (status);

CREATE TABLE document_tombstones (
    document_id   text PRIMARY KEY REFERENCES documents (document_id),
    key_id        text NOT NULL REFERENCES encryption_keys (id),
    tenant        text NOT NULL,
    request_id    bigint NOT NULL REFERENCES key_requests (id),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    requested_by  text NOT NULL,
    shredded_by   text NOT NULL,
    shredded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_tombstones_key ON document_tombstones (key_id);
REVOKE ALL ON document_tombstones FROM PUBLIC;

-- A tombstone is forever, like the audit trail.
CREATE FUNCTION document_tombstones_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tombstones are append-only (% refused)', TG_OP USING ERRCODE = 'PQ003';
END
$$;
REVOKE ALL ON FUNCTION document_tombstones_append_only() FROM PUBLIC;
CREATE TRIGGER document_tombstones_no_update_delete
    BEFORE UPDATE OR DELETE ON document_tombstones
    FOR EACH ROW EXECUTE FUNCTION document_tombstones_append_only();
CREATE TRIGGER document_tombstones_no_truncate
    BEFORE TRUNCATE ON document_tombstones
    FOR EACH STATEMENT EXECUTE FUNCTION document_tombstones_append_only();

-- ---------------------------------------------------------------------------------------
-- Rotation runs: a target suite; operators queue a key
-- ---------------------------------------------------------------------------------------
ALTER TABLE key_rotations ADD COLUMN IF NOT EXISTS to_suite text;
ALTER TABLE key_rotations ADD CONSTRAINT key_rotations_to_suite_known
    CHECK (to_suite IS NULL OR to_suite IN ('xwing', 'mlkem768', 'mlkem1024'));

-- operator (`pqfile keys rotate`): queue a key for rotation now, due or not, optionally
-- onto another suite. An active key stops encrypting; an open queued run of the key takes
-- the target suite; a running run keeps its own. Returns the run's id.
CREATE FUNCTION rotation_queue(
    p_key_id text, p_reason text, p_to_suite text, p_actor text, p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_status text;
    r        key_rotations%ROWTYPE;
BEGIN
    IF p_reason IS NULL OR p_reason NOT IN ('age', 'document_cap', 'bytes_cap', 'unattested',
                                            'operator') THEN
        RAISE EXCEPTION 'unknown rotation reason' USING ERRCODE = 'PQ004';
    END IF;
    IF p_to_suite IS NOT NULL AND p_to_suite NOT IN ('xwing', 'mlkem768', 'mlkem1024') THEN
        RAISE EXCEPTION 'unknown suite %', p_to_suite USING ERRCODE = 'PQ004';
    END IF;
    SELECT status INTO v_status FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no key %', p_key_id USING ERRCODE = 'PQ005';
    END IF;
    IF v_status NOT IN ('active', 'rotation_queued') THEN
        RAISE EXCEPTION 'key % is %: only an active or queued key is rotated', p_key_id, v_status
            USING ERRCODE = 'PQ001';
    END IF;
    IF EXISTS (SELECT 1 FROM key_requests WHERE key_id = p_key_id AND kind = 'shred'
                                             AND status = 'pending') THEN
        RAISE EXCEPTION 'key % has a pending shred: its documents are not moved', p_key_id
            USING ERRCODE = 'PQ001';
    END IF;
    IF v_status = 'active' THEN
        UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = p_key_id;
    END IF;
    SELECT * INTO r FROM key_rotations WHERE old_key_id = p_key_id
       AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1 FOR UPDATE;
    IF FOUND THEN
        IF r.status = 'queued' AND p_to_suite IS NOT NULL
           AND r.to_suite IS DISTINCT FROM p_to_suite THEN
            UPDATE key_rotations SET to_suite = p_to_suite, updated_at = now() WHERE id = r.id;
        ELSIF r.status = 'running' AND p_to_suite IS NOT NULL
              AND coalesce(r.to_suite, '') <> p_to_suite THEN
            RAISE EXCEPTION 'rotation run % of key % is already running', r.id, p_key_id
                USING ERRCODE = 'PQ001';
        END IF;
        RETURN r.id;
    END IF;
    INSERT INTO key_rotations (old_key_id, reason, to_suite)
    VALUES (p_key_id, p_reason, p_to_suite) RETURNING * INTO r;
    PERFORM audit_internal('key.rotation_queued', 'success', p_actor, NULL, p_key_id,
                           p_request_id,
                           jsonb_build_object('reason', p_reason, 'rotation_id', r.id,
                                              'to_suite', p_to_suite, 'from', v_status));
    RETURN r.id;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Requests: a shred opens no rotation run
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION key_request(
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
    IF p_kind IS NULL OR p_kind NOT IN ('revoke', 'shred', 'compromise') THEN
        RAISE EXCEPTION 'unknown request kind' USING ERRCODE = 'PQ004';
    END IF;
    SELECT status INTO v_status FROM encryption_keys WHERE id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no key %', p_key_id USING ERRCODE = 'PQ005';
    END IF;
    IF v_status = 'shredded' THEN
        RAISE EXCEPTION 'key % is already shredded', p_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF v_status = 'revoked' AND p_kind <> 'shred' THEN
        RAISE EXCEPTION 'key % is already revoked', p_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF v_status = 'active' THEN
        UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = p_key_id;
    END IF;
    IF p_kind = 'shred' THEN
        -- What the operator asked to destroy is not rewrapped first.
        UPDATE key_rotations SET status = 'failed', updated_at = now(),
               error = 'superseded by a shred request'
         WHERE old_key_id = p_key_id AND status = 'queued';
    ELSIF v_status IN ('active', 'rotation_queued') AND NOT EXISTS (
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

-- ---------------------------------------------------------------------------------------
-- Shredding (pqfile_shred)
-- ---------------------------------------------------------------------------------------

-- What a pending shred destroys, for the function to delete in S3 first: every document
-- stored on the key now (lost), and every document a rotation moved off it (its older
-- package versions are still wrapped to the key; the function reads each version's header
-- and deletes only those).
CREATE FUNCTION key_shred_candidates(p_request bigint)
RETURNS TABLE (document_id text, encrypted_bucket text, encrypted_key text, lost boolean)
LANGUAGE plpgsql SECURITY DEFINER STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r key_requests%ROWTYPE;
BEGIN
    SELECT * INTO r FROM key_requests WHERE id = p_request;
    IF NOT FOUND OR r.status <> 'pending' OR r.kind <> 'shred' THEN
        RAISE EXCEPTION 'no pending shred request %', p_request USING ERRCODE = 'PQ001';
    END IF;
    RETURN QUERY
        SELECT d.document_id, d.encrypted_bucket, d.encrypted_key,
               (d.key_id = r.key_id AND d.status IN ('stored', 'encrypted'))
          FROM documents d
         WHERE d.encrypted_key IS NOT NULL
           AND (d.key_id = r.key_id
                OR d.document_id IN (
                    SELECT a.document_id FROM access_logs a
                     WHERE a.operation = 'document.rewrap' AND a.outcome = 'success'
                       AND a.document_id IS NOT NULL
                       AND (a.details::jsonb ->> 'from_key_id') = r.key_id))
         ORDER BY d.document_id;
END
$$;

-- Complete a pending shred once its package versions are deleted: a tombstone and an audit
-- row per document still stored on the key, its row `shredded`; the key's wrapped seed is
-- destroyed (NULL, the check constraint) and its status `shredded`; every other pending
-- request of the key completes with it. Refused while a rotation of the key runs (its
-- documents may be moving). Returns the documents lost.
CREATE FUNCTION key_shred(p_request bigint, p_versions_deleted bigint, p_actor text,
                          p_request_id text)
RETURNS TABLE (document_id text, tenant text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r       key_requests%ROWTYPE;
    v_old   text;
    v_count bigint := 0;
    d       record;
BEGIN
    SELECT * INTO r FROM key_requests WHERE id = p_request FOR UPDATE;
    IF NOT FOUND OR r.status <> 'pending' OR r.kind <> 'shred' THEN
        RAISE EXCEPTION 'no pending shred request %', p_request USING ERRCODE = 'PQ001';
    END IF;
    IF p_versions_deleted IS NULL OR p_versions_deleted < 0 THEN
        RAISE EXCEPTION 'versions deleted out of range' USING ERRCODE = 'PQ004';
    END IF;
    SELECT status INTO v_old FROM encryption_keys WHERE id = r.key_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM key_rotations
                WHERE (old_key_id = r.key_id OR new_key_id = r.key_id)
                  AND status = 'running') THEN
        RAISE EXCEPTION 'a rotation run of key % is running: shred after it ends', r.key_id
            USING ERRCODE = 'PQ001';
    END IF;
    UPDATE key_rotations SET status = 'failed', updated_at = now(), error = 'key shredded'
     WHERE old_key_id = r.key_id AND status = 'queued';
    FOR d IN SELECT x.document_id, x.tenant FROM documents x
              WHERE x.key_id = r.key_id AND x.status IN ('stored', 'encrypted')
              ORDER BY x.document_id FOR UPDATE LOOP
        INSERT INTO document_tombstones (document_id, key_id, tenant, request_id, reason,
                                         requested_by, shredded_by)
        VALUES (d.document_id, r.key_id, d.tenant, r.id, r.reason, r.requested_by,
                session_user);
        UPDATE documents SET status = 'shredded', encrypted_version_id = NULL, error = NULL,
               updated_at = now()
         WHERE documents.document_id = d.document_id;
        PERFORM audit_internal('document.shred', 'success', p_actor, d.document_id, r.key_id,
                               p_request_id,
                               jsonb_build_object('request', r.id, 'tenant', d.tenant,
                                                  'reason', left(r.reason, 1000)));
        v_count := v_count + 1;
        document_id := d.document_id;
        tenant := d.tenant;
        RETURN NEXT;
    END LOOP;
    UPDATE encryption_keys SET status = 'shredded', wrapped_seed = NULL,
           revoke_reason = coalesce(revoke_reason, r.reason)
     WHERE id = r.key_id;
    UPDATE key_requests SET status = 'completed', completed_at = now()
     WHERE key_id = r.key_id AND status = 'pending';
    PERFORM audit_internal('key.shred', 'success', p_actor, NULL, r.key_id, p_request_id,
                           jsonb_build_object('request', r.id, 'from', v_old,
                                              'reason', left(r.reason, 1000),
                                              'requested_by', r.requested_by,
                                              'documents_lost', v_count,
                                              'versions_deleted', p_versions_deleted));
END
$$;

-- ---------------------------------------------------------------------------------------
-- Grants
-- ---------------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    rotation_queue(text, text, text, text, text),
    key_shred_candidates(bigint),
    key_shred(bigint, bigint, text, text)
FROM PUBLIC;

GRANT SELECT (id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted,
              created_at, activated_at, rotate_after, rotation_queued_at, expired_at,
              revoked_at, revoke_reason, last_used_at, attestation, shredded_at)
    ON encryption_keys TO pqfile_shred;
GRANT SELECT ON documents, key_requests, key_rotations TO pqfile_shred;
GRANT SELECT ON document_tombstones TO pqfile_shred, pqfile_auditor, pqfile_operator;
GRANT EXECUTE ON FUNCTION key_shred_candidates(bigint), key_shred(bigint, bigint, text, text)
    TO pqfile_shred;
GRANT EXECUTE ON FUNCTION rotation_queue(text, text, text, text, text) TO pqfile_operator;
