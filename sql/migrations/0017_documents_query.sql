-- 0017: the documents query function (issue 13, item 1; docs/OPERATIONS.md, "From a user's
-- seat"; docs/KEYS.md, "Roles and grants").
--
-- On AWS the database sits in private subnets, so a user asks for a document's status (or
-- lists documents) through a function invoked with an identity proof. Its role,
-- pqfile_documents, holds no table privilege at all: it calls the three SECURITY DEFINER
-- functions below, which
--   - return only the status fields of a document (never the package's location, the key
--     material or another tenant's rows),
--   - return a row only when an access rule lets the verified caller read it (a tenant or
--     document rule for `retrieve`, as retrieve checks), the same empty answer otherwise,
--   - append the audit row (`document.status` / `document.list`, success or refused, the
--     verified caller's ARN as the actor) in the same transaction.
--
-- SQLSTATEs as in 0010: PQ004 invariant violated, PQ007 bad audit input.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pqfile_documents') THEN
        BEGIN
            CREATE ROLE pqfile_documents LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    ALTER ROLE pqfile_documents SET idle_in_transaction_session_timeout = '15s';
    ALTER ROLE pqfile_documents SET statement_timeout = '30s';
    ALTER ROLE pqfile_documents SET lock_timeout = '10s';
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO pqfile_documents;
    END IF;
END
$$;

-- A function role: audit_append (were it granted) would take its name as the actor.
CREATE OR REPLACE FUNCTION pqfile_function_role(p_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_role IN ('pqfile_fetch', 'pqfile_select_key', 'pqfile_encrypt', 'pqfile_store',
                      'pqfile_audit_writer', 'pqfile_record_failure', 'pqfile_retrieve',
                      'pqfile_maintain', 'pqfile_rewrap', 'pqfile_auditor', 'pqfile_shred',
                      'pqfile_documents')
$$;
REVOKE ALL ON FUNCTION pqfile_function_role(text) FROM PUBLIC;

-- The audit input of the three functions: a verified principal ARN (or NULL before the
-- proof was verified), one of the two operations, bounded fields.
CREATE FUNCTION document_query_audit(
    p_operation text, p_outcome text, p_principal text, p_document_id text,
    p_request_id text, p_details text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_operation NOT IN ('document.status', 'document.list')
       OR p_outcome NOT IN ('success', 'refused') THEN
        RAISE EXCEPTION 'the documents query audits document.status/list only'
            USING ERRCODE = 'PQ007';
    END IF;
    IF p_principal IS NOT NULL AND (length(p_principal) > 1000
       OR p_principal !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$') THEN
        RAISE EXCEPTION 'the actor must be a verified principal ARN' USING ERRCODE = 'PQ007';
    END IF;
    PERFORM audit_check_fields(p_operation, p_outcome, p_document_id, NULL, p_request_id,
                               p_details);
    RETURN audit_write(p_operation, p_outcome, coalesce(p_principal, session_user),
                       p_document_id, NULL, p_request_id, p_details, session_user);
END
$$;

CREATE FUNCTION document_status_for(
    p_principal text, p_document_id text, p_source_bucket text, p_source_key text,
    p_source_version_id text, p_request_id text, p_details text
) RETURNS TABLE (
    document_id text, status text, tenant text, key_id text, suite text,
    source_bucket text, source_key text, source_version_id text, source_content_type text,
    plaintext_size bigint, error text, created_at timestamptz, stored_at timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_doc     documents%ROWTYPE;
    v_allowed boolean;
    v_reason  text;
BEGIN
    IF p_principal IS NULL THEN
        RAISE EXCEPTION 'a status query needs the verified caller' USING ERRCODE = 'PQ004';
    END IF;
    IF (p_document_id IS NULL) = (p_source_key IS NULL) THEN
        RAISE EXCEPTION 'name the document one way: its id or its source'
            USING ERRCODE = 'PQ004';
    END IF;
    IF p_document_id IS NOT NULL THEN
        SELECT * INTO v_doc FROM documents d WHERE d.document_id = p_document_id;
    ELSE
        -- That version's document; without a version, the newest one for the name.
        SELECT * INTO v_doc FROM documents d
         WHERE d.source_bucket = p_source_bucket AND d.source_key = p_source_key
           AND (p_source_version_id IS NULL OR d.source_version_id = p_source_version_id)
         ORDER BY d.created_at DESC, d.document_id
         LIMIT 1;
    END IF;
    -- Asked either way, so a missing document costs what a forbidden one costs.
    v_allowed := access_check(p_principal, coalesce(v_doc.document_id, ''), 'retrieve');
    IF v_doc.document_id IS NULL OR NOT v_allowed THEN
        v_reason := CASE WHEN v_doc.document_id IS NULL THEN 'not_found' ELSE 'not_allowed' END;
        PERFORM document_query_audit(
            'document.status', 'refused', p_principal,
            CASE WHEN v_doc.document_id IS NULL THEN NULL ELSE v_doc.document_id END,
            p_request_id,
            (coalesce(p_details::jsonb, '{}'::jsonb)
             || jsonb_build_object('reason', v_reason))::text);
        RETURN;
    END IF;
    PERFORM document_query_audit('document.status', 'success', p_principal, v_doc.document_id,
                                 p_request_id, p_details);
    RETURN QUERY SELECT v_doc.document_id, v_doc.status, v_doc.tenant, v_doc.key_id,
                        v_doc.suite, v_doc.source_bucket, v_doc.source_key,
                        v_doc.source_version_id, v_doc.source_content_type,
                        v_doc.plaintext_size, v_doc.error, v_doc.created_at, v_doc.stored_at;
END
$$;

CREATE FUNCTION document_list_for(
    p_principal text, p_tenant text, p_status text, p_limit integer, p_request_id text,
    p_details text
) RETURNS TABLE (
    document_id text, status text, tenant text, key_id text, suite text,
    source_bucket text, source_key text, source_version_id text, source_content_type text,
    plaintext_size bigint, error text, created_at timestamptz, stored_at timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF p_principal IS NULL OR length(p_principal) > 1000 THEN
        RAISE EXCEPTION 'a list query needs the verified caller' USING ERRCODE = 'PQ004';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'the limit is 1 to 1000' USING ERRCODE = 'PQ004';
    END IF;
    RETURN QUERY
        SELECT d.document_id, d.status, d.tenant, d.key_id, d.suite, d.source_bucket,
               d.source_key, d.source_version_id, d.source_content_type, d.plaintext_size,
               d.error, d.created_at, d.stored_at
          FROM documents d
         WHERE (p_tenant IS NULL OR d.tenant = p_tenant)
           AND (p_status IS NULL OR d.status = p_status)
           AND EXISTS (
               SELECT 1 FROM access_rules r
                WHERE r.operation = 'retrieve'
                  AND (r.document_id = d.document_id OR r.tenant = d.tenant)
                  AND p_principal LIKE access_like_pattern(r.principal))
         ORDER BY d.created_at DESC, d.document_id
         LIMIT p_limit;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM document_query_audit(
        'document.list', 'success', p_principal, NULL, p_request_id,
        (coalesce(p_details::jsonb, '{}'::jsonb)
         || jsonb_build_object('returned', v_count))::text);
END
$$;

REVOKE ALL ON FUNCTION
    document_query_audit(text, text, text, text, text, text),
    document_status_for(text, text, text, text, text, text, text),
    document_list_for(text, text, text, integer, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    document_query_audit(text, text, text, text, text, text),
    document_status_for(text, text, text, text, text, text, text),
    document_list_for(text, text, text, integer, text, text)
TO pqfile_documents;
