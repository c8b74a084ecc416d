-- 0020: readers' own recipient keys, for sealed retrieval (issue 18; docs/KEYS.md,
-- "Recipient keys"; docs/OPERATIONS.md, "Retrieval").
--
-- A reader (one exact principal ARN, never a pattern) registers one post-quantum public key.
-- A sealed retrieve re-wraps the stored package's data key to it (FORMAT.md §8), so the body
-- reaches the reader still encrypted. At most one active key per principal: registering a
-- new one retires the old one in the same transaction. Keys change only through
-- recipient_register() / recipient_revoke() (pqfile_operator, pqfile_admin_function), each
-- an audit row; retrieve asks recipient_for(), which answers only when an access rule lets
-- that principal retrieve that document, so revoking the rule or the key stops sealed
-- delivery on the next request.
--
-- allow_weaker: the operator's explicit consent that documents stored under a stronger suite
-- may be re-wrapped to this (weaker) key; without it the downgrade guard refuses.
--
-- SQLSTATEs as in 0010: PQ004 invariant violated, PQ005 not found.

CREATE TABLE recipient_keys (
    recipient_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    principal     text NOT NULL CHECK (
                      length(principal) <= 1000
                      AND principal ~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$'),
    suite         text NOT NULL CHECK (suite IN ('xwing', 'mlkem768', 'mlkem1024')),
    public_key    bytea NOT NULL,
    fingerprint   text GENERATED ALWAYS AS (encode(sha256(public_key), 'hex')) STORED,
    allow_weaker  boolean NOT NULL DEFAULT false,
    created_by    text NOT NULL DEFAULT session_user,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoked_by    text,
    CONSTRAINT recipient_keys_size CHECK (
        (suite = 'xwing' AND octet_length(public_key) = 1216)
        OR (suite = 'mlkem768' AND octet_length(public_key) = 1184)
        OR (suite = 'mlkem1024' AND octet_length(public_key) = 1568)),
    CONSTRAINT recipient_keys_revoked CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX recipient_keys_one_active ON recipient_keys (principal)
    WHERE revoked_at IS NULL;
REVOKE ALL ON recipient_keys FROM PUBLIC;

-- Who changes a key: the bound principal in an admin session, else the session's role.
CREATE FUNCTION recipient_author() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF session_user = 'pqfile_admin_function' THEN
        RETURN admin_bound_actor();
    END IF;
    RETURN session_user;
END
$$;

-- operator / admin function: register the principal's key (retiring its previous one).
-- Idempotent: the same active key with the same allow_weaker is returned, audited as
-- created=false.
CREATE FUNCTION recipient_register(
    p_principal text, p_suite text, p_public_key bytea, p_allow_weaker boolean,
    p_actor text, p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id       bigint;
    v_old      recipient_keys%ROWTYPE;
    v_author   text := recipient_author();
    v_created  boolean := false;
    v_replaced bigint;
BEGIN
    IF p_principal IS NULL OR length(p_principal) > 1000
       OR p_principal !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$' THEN
        RAISE EXCEPTION 'a recipient key belongs to one principal ARN (no pattern)'
            USING ERRCODE = 'PQ004';
    END IF;
    IF p_suite IS NULL OR p_suite NOT IN ('xwing', 'mlkem768', 'mlkem1024') THEN
        RAISE EXCEPTION 'unknown suite' USING ERRCODE = 'PQ004';
    END IF;
    IF p_public_key IS NULL OR p_allow_weaker IS NULL THEN
        RAISE EXCEPTION 'a recipient key needs its public key' USING ERRCODE = 'PQ004';
    END IF;
    SELECT * INTO v_old FROM recipient_keys
     WHERE principal = p_principal AND revoked_at IS NULL
       FOR UPDATE;
    IF FOUND AND v_old.suite = p_suite AND v_old.public_key = p_public_key
       AND v_old.allow_weaker = p_allow_weaker THEN
        v_id := v_old.recipient_id;
    ELSE
        IF FOUND THEN
            UPDATE recipient_keys SET revoked_at = now(), revoked_by = v_author
             WHERE recipient_id = v_old.recipient_id;
            v_replaced := v_old.recipient_id;
        END IF;
        BEGIN
            INSERT INTO recipient_keys (principal, suite, public_key, allow_weaker, created_by)
            VALUES (p_principal, p_suite, p_public_key, p_allow_weaker, v_author)
            RETURNING recipient_id INTO v_id;
        EXCEPTION
            WHEN check_violation THEN
                RAISE EXCEPTION 'the public key has the wrong size for suite %', p_suite
                    USING ERRCODE = 'PQ004';
            WHEN unique_violation THEN  -- a concurrent first registration won
                RAISE EXCEPTION 'another registration for this principal won; try again'
                    USING ERRCODE = 'PQ004';
        END;
        v_created := true;
    END IF;
    PERFORM audit_internal('access.recipient_add', 'success', p_actor, NULL, NULL,
                           p_request_id,
                           jsonb_strip_nulls(jsonb_build_object(
                               'recipient_id', v_id, 'principal', p_principal,
                               'suite', p_suite,
                               'fingerprint', encode(sha256(p_public_key), 'hex'),
                               'allow_weaker', p_allow_weaker, 'created', v_created,
                               'replaced', v_replaced)));
    RETURN v_id;
END
$$;

-- operator / admin function: retire the principal's active key (PQ005 when it has none).
CREATE FUNCTION recipient_revoke(p_principal text, p_actor text, p_request_id text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id          bigint;
    v_fingerprint text;
BEGIN
    UPDATE recipient_keys SET revoked_at = now(), revoked_by = recipient_author()
     WHERE principal = p_principal AND revoked_at IS NULL
    RETURNING recipient_id, fingerprint INTO v_id, v_fingerprint;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no recipient key is registered for that principal'
            USING ERRCODE = 'PQ005';
    END IF;
    PERFORM audit_internal('access.recipient_revoke', 'success', p_actor, NULL, NULL,
                           p_request_id,
                           jsonb_build_object('recipient_id', v_id, 'principal', p_principal,
                                              'fingerprint', v_fingerprint));
    RETURN v_id;
END
$$;

-- retrieve: the caller's active key, only when an access rule lets this exact principal
-- retrieve this document (no rows otherwise: deny by default, no key oracle).
CREATE FUNCTION recipient_for(p_principal text, p_document_id text)
RETURNS TABLE (recipient_id bigint, suite text, public_key bytea, fingerprint text,
               allow_weaker boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT k.recipient_id, k.suite, k.public_key, k.fingerprint, k.allow_weaker
      FROM recipient_keys k
     WHERE k.principal = p_principal
       AND k.revoked_at IS NULL
       AND access_check(p_principal, p_document_id, 'retrieve')
$$;

REVOKE ALL ON FUNCTION
    recipient_author(),
    recipient_register(text, text, bytea, boolean, text, text),
    recipient_revoke(text, text, text),
    recipient_for(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    recipient_register(text, text, bytea, boolean, text, text),
    recipient_revoke(text, text, text)
TO pqfile_operator, pqfile_admin_function;
GRANT EXECUTE ON FUNCTION recipient_for(text, text) TO pqfile_retrieve;
GRANT SELECT ON recipient_keys TO pqfile_auditor, pqfile_operator, pqfile_admin_function;
