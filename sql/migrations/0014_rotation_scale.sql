-- 0014: rotation at scale and suite migration (issue 12, items 4 and 5; docs/KEYS.md,
-- "Rotation").
--
-- - A run may carry a target suite (`to_suite`; NULL: the old key's suite) and
--   `allow_downgrade`. A move to a lower suite (mlkem768 < xwing < mlkem1024) is refused
--   unless the run allows it; a move across hash families (SHA-256: mlkem768, xwing;
--   SHA-384: mlkem1024, the CNSA suite) is not a rewrap at all (the body keys would change):
--   refused here, re-encryption does it.
-- - Documents of one old key spread over the target suite's pool: the plan step picks a
--   target key per document (the least-used active keys, as ingest does), so
--   rotation_record_rewrap now names the key each document moved to, and checks it.
--
-- SQLSTATEs as in 0010: PQ001 refused transition, PQ004 invariant violated, PQ005 not found,
-- PQ006 no key available.

ALTER TABLE key_rotations ADD COLUMN IF NOT EXISTS to_suite text;
ALTER TABLE key_rotations ADD COLUMN IF NOT EXISTS allow_downgrade boolean NOT NULL DEFAULT false;
-- (0013 adds the column and its check for `pqfile keys rotate --to-suite`; both are added
-- here only where they are missing.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conname = 'key_rotations_to_suite_known') THEN
        ALTER TABLE key_rotations ADD CONSTRAINT key_rotations_to_suite_known
            CHECK (to_suite IS NULL OR to_suite IN ('xwing', 'mlkem768', 'mlkem1024'));
    END IF;
END
$$;

-- The plan step lists a run's documents in document_id order, from a cursor.
CREATE INDEX IF NOT EXISTS documents_key_document ON documents (key_id, document_id);

-- Whether a document may be rewrapped from p_from to p_to (raises otherwise). Called only by
-- the functions below; granted to nobody.
CREATE FUNCTION rotation_suite_check(p_from text, p_to text, p_allow_downgrade boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    -- the order of strength; and the hash family of each suite's key schedule
    v_rank   constant jsonb := '{"mlkem768": 1, "xwing": 2, "mlkem1024": 3}';
    v_family constant jsonb := '{"mlkem768": "sha256", "xwing": "sha256", "mlkem1024": "sha384"}';
BEGIN
    IF NOT (v_rank ? p_from) OR NOT (v_rank ? p_to) THEN
        RAISE EXCEPTION 'unknown suite % or %', p_from, p_to USING ERRCODE = 'PQ004';
    END IF;
    IF v_family ->> p_from <> v_family ->> p_to THEN
        RAISE EXCEPTION 'moving % to % crosses hash families: that is a re-encryption, not a rewrap',
            p_from, p_to USING ERRCODE = 'PQ001';
    END IF;
    IF (v_rank ->> p_to)::int < (v_rank ->> p_from)::int AND NOT coalesce(p_allow_downgrade, false)
    THEN
        RAISE EXCEPTION 'moving % to % is a downgrade (the run does not allow it)', p_from, p_to
            USING ERRCODE = 'PQ001';
    END IF;
END
$$;

-- operator (`pqfile keys rotate --to-suite`): set a run's target suite before it starts.
CREATE FUNCTION rotation_set_target(
    p_rotation_id bigint, p_to_suite text, p_allow_downgrade boolean, p_actor text,
    p_request_id text
) RETURNS SETOF key_rotations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r       key_rotations%ROWTYPE;
    v_suite text;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rotation run %', p_rotation_id USING ERRCODE = 'PQ005';
    END IF;
    IF r.status <> 'queued' THEN
        RAISE EXCEPTION 'rotation run % is %: its target is fixed', p_rotation_id, r.status
            USING ERRCODE = 'PQ001';
    END IF;
    SELECT suite INTO v_suite FROM encryption_keys WHERE id = r.old_key_id;
    PERFORM rotation_suite_check(v_suite, coalesce(p_to_suite, v_suite), p_allow_downgrade);
    UPDATE key_rotations SET to_suite = p_to_suite,
           allow_downgrade = coalesce(p_allow_downgrade, false), updated_at = now()
     WHERE id = p_rotation_id RETURNING * INTO r;
    PERFORM audit_internal('key.rotation_target', 'success', p_actor, NULL, r.old_key_id,
                           p_request_id,
                           jsonb_build_object('rotation_id', r.id, 'from_suite', v_suite,
                                              'to_suite', coalesce(p_to_suite, v_suite),
                                              'allow_downgrade', r.allow_downgrade));
    RETURN NEXT r;
END
$$;

-- plan: start a queued run onto a key the function chose (and verified): an active, attested
-- key of the run's target suite, not the old key. The suite move is checked again here.
CREATE OR REPLACE FUNCTION rotation_begin(
    p_rotation_id bigint, p_new_key_id text, p_actor text, p_request_id text
) RETURNS SETOF key_rotations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    r        key_rotations%ROWTYPE;
    v_from   text;
    v_target text;
BEGIN
    SELECT * INTO r FROM key_rotations WHERE id = p_rotation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rotation run %', p_rotation_id USING ERRCODE = 'PQ005';
    END IF;
    IF r.status <> 'queued' THEN
        RETURN NEXT r;
        RETURN;
    END IF;
    SELECT suite INTO v_from FROM encryption_keys WHERE id = r.old_key_id;
    v_target := coalesce(r.to_suite, v_from);
    PERFORM rotation_suite_check(v_from, v_target, r.allow_downgrade);
    IF p_new_key_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM encryption_keys n
         WHERE n.id = p_new_key_id AND n.suite = v_target AND n.status = 'active'
           AND n.id <> r.old_key_id AND n.attestation IS NOT NULL AND n.rotate_after > now())
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
                                              'documents_total', r.documents_total,
                                              'from_suite', v_from, 'to_suite', v_target));
    RETURN NEXT r;
END
$$;

-- rewrap: point one stored document still on the run's old key at the key it was rewrapped
-- to (any active, attested key of the run's target suite: the plan spreads documents over
-- the pool) and the new package version. Audited with both keys and both suites.
DROP FUNCTION rotation_record_rewrap(bigint, text, text, bigint, text, text);
CREATE FUNCTION rotation_record_rewrap(
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
    IF p_encrypted_size IS NULL OR p_encrypted_size < 0 THEN
        RAISE EXCEPTION 'encrypted size out of range' USING ERRCODE = 'PQ004';
    END IF;
    SELECT suite INTO v_from FROM encryption_keys WHERE id = r.old_key_id;
    v_target := coalesce(r.to_suite, v_from);
    -- the key row is locked: it cannot leave `active` before this row commits
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

REVOKE ALL ON FUNCTION
    rotation_suite_check(text, text, boolean),
    rotation_set_target(bigint, text, boolean, text, text),
    rotation_record_rewrap(bigint, text, text, text, bigint, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rotation_record_rewrap(bigint, text, text, text, bigint, text, text)
    TO pqfile_rewrap;
GRANT EXECUTE ON FUNCTION rotation_set_target(bigint, text, boolean, text, text)
    TO pqfile_operator;
