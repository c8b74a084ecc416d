-- 0019: one body for recording a document moved by a rotation run (review findings D2/D7;
-- docs/KEYS.md, "Roles and grants").
--
-- rotation_record_rewrap (0014, 0015) and rotation_record_reencrypt (0015) repeated the
-- same run lock, state checks, key check, document and counter updates and audit row. Both
-- now call rotation_record_move, which takes the operation and does each check in the order
-- the two functions did (so every refusal and its SQLSTATE stays as it was):
--   the run is running (PQ001); a rewrap only: the old key has no pending compromise
--   (PQ001); the size (PQ004); a re-encryption only: known KDFs (PQ004) and the suite move
--   allowed (rotation_suite_check); the new key an active, attested key of the target suite
--   (PQ006); then the document (a re-encryption also takes the target suite), the key's
--   usage, the run's count and the audit row (`document.rewrap` / `document.reencrypt`,
--   with the same details as before). Signatures and grants of the two are unchanged.

CREATE FUNCTION rotation_record_move(
    p_operation text, p_rotation_id bigint, p_document_id text, p_new_key_id text,
    p_encrypted_version_id text, p_encrypted_size bigint, p_from_kdf text, p_to_kdf text,
    p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r          key_rotations%ROWTYPE;
    v_reencrypt boolean := p_operation = 'document.reencrypt';
    v_from     text;
    v_target   text;
    v_bytes    bigint;
    v_details  jsonb;
BEGIN
    IF p_operation IS NULL OR p_operation NOT IN ('document.rewrap', 'document.reencrypt') THEN
        RAISE EXCEPTION 'a rotation records a rewrap or a re-encryption'
            USING ERRCODE = 'PQ004';
    END IF;
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id;
    IF NOT FOUND OR r.status <> 'running' OR r.new_key_id IS NULL THEN
        RAISE EXCEPTION 'rotation run % is not running', p_rotation_id USING ERRCODE = 'PQ001';
    END IF;
    IF NOT v_reencrypt AND key_compromised(r.old_key_id) THEN
        RAISE EXCEPTION 'key % is compromised: its documents are re-encrypted, not rewrapped',
            r.old_key_id USING ERRCODE = 'PQ001';
    END IF;
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 THEN
        RAISE EXCEPTION 'encrypted size out of range' USING ERRCODE = 'PQ004';
    END IF;
    IF v_reencrypt AND (p_from_kdf IS NULL OR p_from_kdf NOT IN ('hkdf-sha256', 'hkdf-sha384')
       OR p_to_kdf IS NULL OR p_to_kdf NOT IN ('hkdf-sha256', 'hkdf-sha384')) THEN
        RAISE EXCEPTION 'unknown KDF' USING ERRCODE = 'PQ004';
    END IF;
    SELECT suite INTO v_from FROM encryption_keys WHERE id = r.old_key_id;
    v_target := coalesce(r.to_suite, v_from);
    IF v_reencrypt THEN
        PERFORM rotation_suite_check(v_from, v_target, r.allow_downgrade);
    END IF;
    PERFORM 1 FROM encryption_keys n
     WHERE n.id = p_new_key_id AND n.suite = v_target AND n.status = 'active'
       AND n.id <> r.old_key_id AND n.attestation IS NOT NULL
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'key % is not an active key of suite %', p_new_key_id, v_target
            USING ERRCODE = 'PQ006';
    END IF;
    UPDATE documents SET key_id = p_new_key_id,
           suite = CASE WHEN v_reencrypt THEN v_target ELSE suite END,
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
    v_details := jsonb_build_object('rotation_id', r.id, 'from_key_id', r.old_key_id,
                                    'from_suite', v_from, 'to_suite', v_target);
    IF v_reencrypt THEN
        v_details := v_details || jsonb_build_object(
            'to_key_id', p_new_key_id, 'from_kdf', p_from_kdf, 'to_kdf', p_to_kdf,
            'compromise', key_compromised(r.old_key_id));
    END IF;
    PERFORM audit_internal(p_operation, 'success', p_actor, p_document_id, p_new_key_id,
                           p_request_id, v_details);
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION
    rotation_record_move(text, bigint, text, text, text, bigint, text, text, text, text)
FROM PUBLIC;

CREATE OR REPLACE FUNCTION rotation_record_rewrap(
    p_rotation_id bigint, p_document_id text, p_new_key_id text, p_encrypted_version_id text,
    p_encrypted_size bigint, p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT rotation_record_move('document.rewrap', p_rotation_id, p_document_id, p_new_key_id,
                                p_encrypted_version_id, p_encrypted_size, NULL, NULL, p_actor,
                                p_request_id)
$$;

CREATE OR REPLACE FUNCTION rotation_record_reencrypt(
    p_rotation_id bigint, p_document_id text, p_new_key_id text, p_encrypted_version_id text,
    p_encrypted_size bigint, p_from_kdf text, p_to_kdf text, p_actor text, p_request_id text
) RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT rotation_record_move('document.reencrypt', p_rotation_id, p_document_id,
                                p_new_key_id, p_encrypted_version_id, p_encrypted_size,
                                p_from_kdf, p_to_kdf, p_actor, p_request_id)
$$;
