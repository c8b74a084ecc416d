-- 0012: the CNSA 2.0 suite `mlkem1024` (ML-KEM-1024, HPKE KEM 0x0042; docs/FORMAT.md
-- "Suites", docs/KEYS.md "Pool"). Keys and documents may carry it, and the two functions of
-- 0010 that know the suites (the key id's wire id, key_create's name and length checks) are
-- re-created in full. Ownership, SECURITY DEFINER and grants are kept by CREATE OR REPLACE.

ALTER TABLE encryption_keys DROP CONSTRAINT encryption_keys_suite_check;
ALTER TABLE encryption_keys ADD CONSTRAINT encryption_keys_suite_check
    CHECK (suite IN ('xwing', 'mlkem768', 'mlkem1024'));

ALTER TABLE documents DROP CONSTRAINT documents_suite_check;
ALTER TABLE documents ADD CONSTRAINT documents_suite_check
    CHECK (suite IN ('xwing', 'mlkem768', 'mlkem1024'));

-- The key id is H(public key) (docs/CONTRACTS.md): the suite's HPKE KEM id is hashed in.
-- An unknown suite gives NULL, which never equals a key id.
CREATE OR REPLACE FUNCTION pqfile_key_id(p_suite text, p_public_key bytea) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT substr(encode(sha256(convert_to('pqfile/key-id/v1', 'UTF8')
                                || CASE p_suite WHEN 'xwing' THEN '\x647a'::bytea
                                                WHEN 'mlkem768' THEN '\x0041'::bytea
                                                WHEN 'mlkem1024' THEN '\x0042'::bytea END
                                || p_public_key), 'hex'), 1, 32)
$$;

-- maintain: insert one generated key (seed already KMS-wrapped, attestation made in KMS).
CREATE OR REPLACE FUNCTION key_create(
    p_id text, p_suite text, p_public_key bytea, p_wrapped_seed bytea, p_kms_key_arn text,
    p_attestation bytea, p_max_age_seconds double precision, p_actor text, p_request_id text
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_suite IS NULL OR p_suite NOT IN ('xwing', 'mlkem768', 'mlkem1024') THEN
        RAISE EXCEPTION 'unknown suite' USING ERRCODE = 'PQ004';
    END IF;
    -- The public key sizes: X-Wing 1184 + 32, ML-KEM-768 ek 1184, ML-KEM-1024 ek 1568.
    IF octet_length(p_public_key) IS DISTINCT FROM
       (CASE p_suite WHEN 'xwing' THEN 1216 WHEN 'mlkem768' THEN 1184 ELSE 1568 END) THEN
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
