-- 0018: the admin function's own database role (issue 13; docs/KEYS.md, "Roles and grants",
-- "The admin function's actor").
--
-- Before: the admin function ran changes as pqfile_operator, a person's role, so its audit
-- rows named `pqfile_operator` as the actor and the verified principal only as a detail.
-- Now it connects as pqfile_admin_function for changes and its `admin.command` rows. The
-- function verifies the caller's identity proof (the database cannot: it never sees STS),
-- then binds the verified principal to its database session with admin_begin(), which
-- refuses a principal that is not an ARN or that no `operate` access rule matches. Every
-- audit row the session writes afterwards (through audit_internal: key.revoke,
-- key.*_requested, access.grant/revoke, key.rotation_queued, ...; and admin_audit) names
-- that principal as the actor; without a binding the same calls fail (PQ007), so the role
-- writes nothing under its own name or an invented one. The role holds no audit_append.
--
-- What the role alone (stolen credentials, no proof) can still do: bind any principal that
-- an `operate` rule matches and act as that operator (docs/THREAT-MODEL.md, O10), and write
-- `admin.command` refused rows naming any ARN (as retrieve's refused rows can).
--
-- SQLSTATEs as in 0010: PQ004 invariant violated, PQ007 audit input refused.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pqfile_admin_function')
    THEN
        BEGIN
            CREATE ROLE pqfile_admin_function LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    ALTER ROLE pqfile_admin_function SET idle_in_transaction_session_timeout = '15s';
    ALTER ROLE pqfile_admin_function SET statement_timeout = '300s';
    ALTER ROLE pqfile_admin_function SET lock_timeout = '10s';
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO pqfile_admin_function;
    END IF;
END
$$;

-- A function role (its audit rows never fall back to "a person's session_user").
CREATE OR REPLACE FUNCTION pqfile_function_role(p_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_role IN ('pqfile_fetch', 'pqfile_select_key', 'pqfile_encrypt', 'pqfile_store',
                      'pqfile_audit_writer', 'pqfile_record_failure', 'pqfile_retrieve',
                      'pqfile_maintain', 'pqfile_rewrap', 'pqfile_auditor', 'pqfile_shred',
                      'pqfile_documents', 'pqfile_admin_function')
$$;
REVOKE ALL ON FUNCTION pqfile_function_role(text) FROM PUBLIC;

-- One row per admin database session (backend pid): the principal the function verified.
CREATE TABLE admin_bindings (
    pid         integer PRIMARY KEY,
    principal   text NOT NULL CHECK (length(principal) <= 1000),
    request_id  text CHECK (length(request_id) <= 256),
    bound_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
REVOKE ALL ON admin_bindings FROM PUBLIC;

-- The principal bound to this session, or PQ007. A binding lives at most 15 minutes (the
-- longest a function runs), so a session reused after a lost admin_end() cannot act on it
-- for long; the function binds afresh for every request anyway.
CREATE FUNCTION admin_bound_actor() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_principal text;
BEGIN
    SELECT b.principal INTO v_principal FROM admin_bindings b
     WHERE b.pid = pg_backend_pid() AND b.bound_at > clock_timestamp() - interval '15 minutes';
    IF v_principal IS NULL THEN
        RAISE EXCEPTION 'the admin role acts only for a verified principal (admin_begin)'
            USING ERRCODE = 'PQ007';
    END IF;
    RETURN v_principal;
END
$$;

-- The function, after verifying the proof: bind the principal (an ARN an `operate` rule
-- matches) to this session.
CREATE FUNCTION admin_begin(p_principal text, p_request_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF session_user <> 'pqfile_admin_function' THEN
        RAISE EXCEPTION 'admin_begin is the admin function''s' USING ERRCODE = 'PQ007';
    END IF;
    IF p_principal IS NULL OR length(p_principal) > 1000
       OR p_principal !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$' THEN
        RAISE EXCEPTION 'the actor must be a verified principal ARN' USING ERRCODE = 'PQ007';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM access_rules r
                    WHERE r.operation = 'operate'
                      AND p_principal LIKE access_like_pattern(r.principal)) THEN
        RAISE EXCEPTION 'no operate rule matches the principal' USING ERRCODE = 'PQ004';
    END IF;
    INSERT INTO admin_bindings (pid, principal, request_id)
    VALUES (pg_backend_pid(), p_principal, left(p_request_id, 256))
    ON CONFLICT (pid) DO UPDATE
        SET principal = EXCLUDED.principal, request_id = EXCLUDED.request_id,
            bound_at = clock_timestamp();
END
$$;

-- The function, when the request is done: drop this session's binding.
CREATE FUNCTION admin_end() RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    DELETE FROM admin_bindings WHERE pid = pg_backend_pid();
$$;

-- The admin function's own rows. `admin.command` success/failure and
-- `key.rotation_workflow_started` name the bound principal (p_principal must equal it);
-- `admin.command` refused rows name the given principal ARN, or the role before a proof
-- was verified (NULL).
CREATE FUNCTION admin_audit(
    p_operation text, p_outcome text, p_principal text, p_key_id text, p_request_id text,
    p_details text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_actor text;
BEGIN
    IF session_user <> 'pqfile_admin_function' THEN
        RAISE EXCEPTION 'admin_audit is the admin function''s' USING ERRCODE = 'PQ007';
    END IF;
    IF p_operation IS NULL OR p_outcome IS NULL
       OR NOT ((p_operation = 'admin.command' AND p_outcome IN ('success', 'failure', 'refused'))
               OR (p_operation = 'key.rotation_workflow_started'
                   AND p_outcome IN ('success', 'failure'))) THEN
        RAISE EXCEPTION 'the admin role audits admin.command and the rotation start only'
            USING ERRCODE = 'PQ007';
    END IF;
    IF p_outcome = 'refused' THEN
        IF p_principal IS NOT NULL AND (length(p_principal) > 1000
           OR p_principal !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$') THEN
            RAISE EXCEPTION 'the actor must be a verified principal ARN' USING ERRCODE = 'PQ007';
        END IF;
        v_actor := coalesce(p_principal, session_user);
    ELSE
        v_actor := admin_bound_actor();
        IF p_principal IS DISTINCT FROM v_actor THEN
            RAISE EXCEPTION 'the actor is the bound principal' USING ERRCODE = 'PQ007';
        END IF;
    END IF;
    PERFORM audit_check_fields(p_operation, p_outcome, NULL, p_key_id, p_request_id,
                               p_details);
    RETURN audit_write(p_operation, p_outcome, v_actor, NULL, p_key_id, p_request_id,
                       p_details, session_user);
END
$$;

-- audit_internal (0010) with one change: in an admin session the actor is the bound
-- principal (PQ007 without one), never the role and never a claimed name.
CREATE OR REPLACE FUNCTION audit_internal(
    p_operation text, p_outcome text, p_claimed text, p_document_id text, p_key_id text,
    p_request_id text, p_details jsonb
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_role    text := session_user;
    v_actor   text := session_user;
    v_details jsonb := p_details;
BEGIN
    IF v_role = 'pqfile_admin_function' THEN
        v_actor := admin_bound_actor();
    ELSIF NOT pqfile_function_role(v_role) AND p_claimed IS NOT NULL AND p_claimed <> v_role THEN
        v_details := coalesce(v_details, '{}'::jsonb)
                     || jsonb_build_object('claimed_by', left(p_claimed, 256));
    END IF;
    RETURN audit_write(p_operation, p_outcome, v_actor, p_document_id, p_key_id,
                       left(p_request_id, 256), v_details::text, v_role);
END
$$;
REVOKE ALL ON FUNCTION audit_internal(text, text, text, text, text, text, jsonb) FROM PUBLIC;

-- Rules and requests the admin role makes record the bound principal as their author
-- (access_rules.created_by, key_requests.requested_by), not the role.
CREATE FUNCTION admin_stamp_author() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF session_user = 'pqfile_admin_function' THEN
        IF TG_TABLE_NAME = 'access_rules' THEN
            NEW.created_by := admin_bound_actor();
        ELSIF TG_TABLE_NAME = 'key_requests' THEN
            NEW.requested_by := admin_bound_actor();
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER access_rules_admin_author BEFORE INSERT ON access_rules
    FOR EACH ROW EXECUTE FUNCTION admin_stamp_author();
CREATE TRIGGER key_requests_admin_author BEFORE INSERT ON key_requests
    FOR EACH ROW EXECUTE FUNCTION admin_stamp_author();

REVOKE ALL ON FUNCTION
    admin_bound_actor(), admin_begin(text, text), admin_end(),
    admin_audit(text, text, text, text, text, text), admin_stamp_author()
FROM PUBLIC;

-- Reads: what the operator reads (every table but the seeds), for the commands' answers.
DO $$
DECLARE
    v_columns text;
BEGIN
    SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
      INTO v_columns
      FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = 'encryption_keys'
       AND column_name <> 'wrapped_seed';
    EXECUTE format('GRANT SELECT (%s) ON encryption_keys TO pqfile_admin_function', v_columns);
END
$$;
GRANT SELECT ON documents, key_rotations, key_requests, access_logs, audit_chain_head,
    audit_permissions, access_rules, document_tombstones
    TO pqfile_admin_function;

-- Changes: the operator's checked functions the admin commands call, and its own four.
GRANT EXECUTE ON FUNCTION
    key_revoke(text, text, text, text),
    key_request(text, text, text, text, text),
    access_grant(text, text, text, text, text, text),
    access_revoke(text, text, text, text, text, text),
    rotation_queue(text, text, text, text, text),
    rotation_set_target(bigint, text, boolean, text, text),
    admin_begin(text, text), admin_end(),
    admin_audit(text, text, text, text, text, text)
TO pqfile_admin_function;
