-- 0015: re-encryption (issue 12, items 3 and 4; docs/KEYS.md, "Re-encryption", "Compromise").
--
-- - A pending `compromise` request (key_request, 0010/0013) makes every run of the key a
--   re-encryption: each document gets a fresh data key under a pool key of the target suite
--   (rotation_record_reencrypt); rotation_record_rewrap refuses such a run's documents (a
--   rewrap keeps the data key the compromise may have exposed).
-- - Moves between hash families are re-encryptions, decided per document by the function
--   from the package header's KDF byte: rotation_suite_check no longer refuses them, it
--   keeps the downgrade guard only.
-- - The shred function's role (pqfile_shred, the one role allowed to delete packages in S3)
--   completes a compromise: key_compromise_candidates lists the documents a re-encryption
--   moved off the key (every other version of their package is deleted), then
--   key_compromise_complete audits the versions deleted per document and revokes the key.
--
-- SQLSTATEs as in 0010: PQ001 refused transition, PQ004 invariant violated, PQ005 not found,
-- PQ006 no key available.

-- The downgrade guard only (mlkem768 < xwing < mlkem1024); a move across hash families is a
-- re-encryption, which the rewrap function chooses per document. Granted to nobody.
CREATE OR REPLACE FUNCTION rotation_suite_check(p_from text, p_to text, p_allow_downgrade boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_rank constant jsonb := '{"mlkem768": 1, "xwing": 2, "mlkem1024": 3}';
BEGIN
    IF NOT (v_rank ? p_from) OR NOT (v_rank ? p_to) THEN
        RAISE EXCEPTION 'unknown suite % or %', p_from, p_to USING ERRCODE = 'PQ004';
    END IF;
    IF (v_rank ->> p_to)::int < (v_rank ->> p_from)::int AND NOT coalesce(p_allow_downgrade, false)
    THEN
        RAISE EXCEPTION 'moving % to % is a downgrade (the run does not allow it)', p_from, p_to
            USING ERRCODE = 'PQ001';
    END IF;
END
$$;

-- Whether a key has a pending compromise request. Granted to nobody.
CREATE FUNCTION key_compromised(p_key_id text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM key_requests
                    WHERE key_id = p_key_id AND kind = 'compromise' AND status = 'pending');
$$;

-- rewrap: as in 0014, and refused for a compromised key's documents (they are re-encrypted).
CREATE OR REPLACE FUNCTION rotation_record_rewrap(
    p_rotation_id bigint, p_document_id text, p_new_key_id text, p_encrypted_version_id text,
    p_encrypted_size bigint, p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r        key_rotations%ROWTYPE;
    v_from   text;
    v_target text;
    v_bytes  bigint;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id;
    IF NOT FOUND OR r.status <> 'running' OR r.new_key_id IS NULL THEN
        RAISE EXCEPTION 'rotation run % is not running', p_rotation_id USING ERRCODE = 'PQ001';
    END IF;
    IF key_compromised(r.old_key_id) THEN
        RAISE EXCEPTION 'key % is compromised: its documents are re-encrypted, not rewrapped',
            r.old_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 THEN
        RAISE EXCEPTION 'encrypted size out of range' USING ERRCODE = 'PQ004';
    END IF;
    SELECT suite INTO v_from FROM encryption_keys WHERE id = r.old_key_id;
    v_target := coalesce(r.to_suite, v_from);
    PERFORM 1 FROM encryption_keys n
     WHERE n.id = p_new_key_id AND n.suite = v_target AND n.status = 'active'
       AND n.id <> r.old_key_id AND n.attestation IS NOT NULL
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'key % is not an active key of suite %', p_new_key_id, v_target
            USING ERRCODE = 'PQ006';
    END IF;
    UPDATE documents SET key_id = p_new_key_id, encrypted_version_id = p_encrypted_version_id,
           encrypted_size = p_encrypted_size, updated_at = now()
     WHERE document_id = p_document_id AND key_id = r.old_key_id AND status = 'stored'
    RETURNING plaintext_size INTO v_bytes;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE encryption_keys SET usage_count = usage_count + 1,
           bytes_encrypted = bytes_encrypted + coalesce(v_bytes, 0), last_used_at = now()
     WHERE id = p_new_key_id;
    UPDATE key_rotations SET documents_rewrapped = documents_rewrapped + 1, updated_at = now()
     WHERE id = p_rotation_id;
    PERFORM audit_internal('document.rewrap', 'success', p_actor, p_document_id, p_new_key_id,
                           p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'from_key_id', r.old_key_id,
                                              'from_suite', v_from, 'to_suite', v_target));
    RETURN true;
END
$$;

-- re-encrypt: point one stored document still on the run's old key at the key its new
-- package (a fresh data key) was sealed to, and that package's version. Same checks as a
-- rewrap; audited `document.reencrypt` with both keys, both suites, both KDFs, and whether
-- a compromise asked for it.
CREATE FUNCTION rotation_record_reencrypt(
    p_rotation_id bigint, p_document_id text, p_new_key_id text, p_encrypted_version_id text,
    p_encrypted_size bigint, p_from_kdf text, p_to_kdf text, p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r        key_rotations%ROWTYPE;
    v_from   text;
    v_target text;
    v_bytes  bigint;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id;
    IF NOT FOUND OR r.status <> 'running' OR r.new_key_id IS NULL THEN
        RAISE EXCEPTION 'rotation run % is not running', p_rotation_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 THEN
        RAISE EXCEPTION 'encrypted size out of range' USING ERRCODE = 'PQ004';
    END IF;
    IF p_from_kdf IS NULL OR p_from_kdf NOT IN ('hkdf-sha256', 'hkdf-sha384')
       OR p_to_kdf IS NULL OR p_to_kdf NOT IN ('hkdf-sha256', 'hkdf-sha384') THEN
        RAISE EXCEPTION 'unknown KDF' USING ERRCODE = 'PQ004';
    END IF;
    SELECT suite INTO v_from FROM encryption_keys WHERE id = r.old_key_id;
    v_target := coalesce(r.to_suite, v_from);
    PERFORM rotation_suite_check(v_from, v_target, r.allow_downgrade);
    PERFORM 1 FROM encryption_keys n
     WHERE n.id = p_new_key_id AND n.suite = v_target AND n.status = 'active'
       AND n.id <> r.old_key_id AND n.attestation IS NOT NULL
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'key % is not an active key of suite %', p_new_key_id, v_target
            USING ERRCODE = 'PQ006';
    END IF;
    UPDATE documents SET key_id = p_new_key_id, suite = v_target,
           encrypted_version_id = p_encrypted_version_id,
           encrypted_size = p_encrypted_size, updated_at = now()
     WHERE document_id = p_document_id AND key_id = r.old_key_id AND status = 'stored'
    RETURNING plaintext_size INTO v_bytes;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE encryption_keys SET usage_count = usage_count + 1,
           bytes_encrypted = bytes_encrypted + coalesce(v_bytes, 0), last_used_at = now()
     WHERE id = p_new_key_id;
    UPDATE key_rotations SET documents_rewrapped = documents_rewrapped + 1, updated_at = now()
     WHERE id = p_rotation_id;
    PERFORM audit_internal('document.reencrypt', 'success', p_actor, p_document_id,
                           p_new_key_id, p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'from_key_id', r.old_key_id,
                                              'to_key_id', p_new_key_id,
                                              'from_suite', v_from, 'to_suite', v_target,
                                              'from_kdf', p_from_kdf, 'to_kdf', p_to_kdf,
                                              'compromise', key_compromised(r.old_key_id)));
    RETURN true;
END
$$;

-- shred function: what a pending compromise purges. Every document a re-encryption moved off
-- the key (its `document.reencrypt` audit rows), with the one version its row commits to (the
-- function deletes every other version), once no document is left on the key.
CREATE FUNCTION key_compromise_candidates(p_request bigint)
RETURNS TABLE (document_id text, encrypted_bucket text, encrypted_key text,
               keep_version_id text)
LANGUAGE plpgsql SECURITY DEFINER STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r key_requests%ROWTYPE;
BEGIN
    SELECT * INTO r FROM key_requests WHERE id = p_request;
    IF NOT FOUND OR r.status <> 'pending' OR r.kind <> 'compromise' THEN
        RAISE EXCEPTION 'no pending compromise request %', p_request USING ERRCODE = 'PQ001';
    END IF;
    IF EXISTS (SELECT 1 FROM documents d WHERE d.key_id = r.key_id) THEN
        RETURN;  -- not yet: documents are still on the key
    END IF;
    RETURN QUERY
        SELECT d.document_id, d.encrypted_bucket, d.encrypted_key, d.encrypted_version_id
          FROM documents d
         WHERE d.encrypted_key IS NOT NULL AND d.encrypted_version_id IS NOT NULL
           AND d.status = 'stored'
           AND d.document_id IN (
                SELECT a.document_id FROM access_logs a
                 WHERE a.operation = 'document.reencrypt' AND a.outcome = 'success'
                   AND a.document_id IS NOT NULL
                   AND (a.details::jsonb ->> 'from_key_id') = r.key_id)
         ORDER BY d.document_id;
END
$$;

-- shred function: complete a pending compromise once no document is on the key and the older
-- package versions are deleted. p_deleted: {document id: versions deleted}, one
-- `document.versions_deleted` audit row each; the key is revoked (with the request's reason)
-- and every pending request of the key completes. False (nothing changed) while documents
-- remain on the key or a run of it is running.
CREATE FUNCTION key_compromise_complete(p_request bigint, p_deleted jsonb, p_actor text,
                                        p_request_id text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r       key_requests%ROWTYPE;
    v_old   text;
    v_total bigint := 0;
    v_doc   text;
    v_n     jsonb;
BEGIN
    SELECT * INTO r FROM key_requests WHERE id = p_request FOR UPDATE;
    IF NOT FOUND OR r.status <> 'pending' OR r.kind <> 'compromise' THEN
        RAISE EXCEPTION 'no pending compromise request %', p_request USING ERRCODE = 'PQ001';
    END IF;
    IF p_deleted IS NULL OR jsonb_typeof(p_deleted) <> 'object' THEN
        RAISE EXCEPTION 'versions deleted must be an object' USING ERRCODE = 'PQ004';
    END IF;
    FOR v_doc, v_n IN SELECT key, value FROM jsonb_each(p_deleted) LOOP
        IF jsonb_typeof(v_n) <> 'number' OR (v_n #>> '{}')::numeric < 0
           OR (v_n #>> '{}')::numeric <> trunc((v_n #>> '{}')::numeric) THEN
            RAISE EXCEPTION 'versions deleted out of range' USING ERRCODE = 'PQ004';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM documents WHERE document_id = v_doc) THEN
            RAISE EXCEPTION 'no document %', v_doc USING ERRCODE = 'PQ005';
        END IF;
    END LOOP;
    SELECT status INTO v_old FROM encryption_keys WHERE id = r.key_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM documents WHERE key_id = r.key_id)
       OR EXISTS (SELECT 1 FROM key_rotations WHERE old_key_id = r.key_id
                                               AND status = 'running') THEN
        RETURN false;
    END IF;
    FOR v_doc, v_n IN SELECT key, value FROM jsonb_each(p_deleted) LOOP
        v_total := v_total + (v_n #>> '{}')::bigint;
        PERFORM audit_internal('document.versions_deleted', 'success', p_actor, v_doc, r.key_id,
                               p_request_id,
                               jsonb_build_object('request', r.id, 'reason', 'compromise',
                                                  'versions_deleted', v_n));
    END LOOP;
    UPDATE key_rotations SET status = 'failed', updated_at = now(),
           error = 'superseded: key revoked after a compromise'
     WHERE old_key_id = r.key_id AND status = 'queued';
    IF v_old <> 'revoked' THEN
        UPDATE encryption_keys SET status = 'revoked', revoke_reason = r.reason
         WHERE id = r.key_id;
    END IF;
    UPDATE key_requests SET status = 'completed', completed_at = now()
     WHERE key_id = r.key_id AND status = 'pending' AND kind <> 'shred';
    PERFORM audit_internal('key.revoke', 'success', p_actor, NULL, r.key_id, p_request_id,
                           jsonb_build_object('request', r.id, 'from', v_old,
                                              'reason', left(r.reason, 1000),
                                              'requested_by', r.requested_by,
                                              'compromise', true,
                                              'versions_deleted', v_total));
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION
    key_compromised(text),
    rotation_record_reencrypt(bigint, text, text, text, bigint, text, text, text, text),
    key_compromise_candidates(bigint),
    key_compromise_complete(bigint, jsonb, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    rotation_record_reencrypt(bigint, text, text, text, bigint, text, text, text, text)
    TO pqfile_rewrap;
GRANT EXECUTE ON FUNCTION
    key_compromise_candidates(bigint),
    key_compromise_complete(bigint, jsonb, text, text)
    TO pqfile_shred;
