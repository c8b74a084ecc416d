-- 0011: who may read what (docs/OPERATIONS.md, "Granting access"; docs/KEYS.md, "Roles and
-- grants"). Deny by default: a verified caller (a principal ARN, docs/CONTRACTS.md "Caller
-- identity proofs") reads a document only when a rule names it, or an ARN pattern matching
-- it, for the document's tenant or the document itself. Rules change only through
-- access_grant() / access_revoke() (pqfile_operator), each an audit row; retrieve asks
-- access_check() and sees nothing else of the rules.
--
-- SQLSTATEs as in 0010: PQ004 invariant violated (malformed principal, tenant, operation),
-- PQ005 not found.

-- Every document belongs to a tenant: the first path segment under uploads/. Documents
-- stored before tenants existed get theirs from their upload key, else the named tenant
-- `legacy`, so none becomes unreadable (an operator grants `legacy` to whoever read them).
CREATE FUNCTION pqfile_tenant_of(p_key text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT CASE WHEN p_key ~ '^uploads/[A-Za-z0-9][A-Za-z0-9._-]{0,62}/.'
                THEN split_part(p_key, '/', 2) END
$$;

ALTER TABLE documents ADD COLUMN tenant text;
UPDATE documents SET tenant = coalesce(pqfile_tenant_of(source_key), 'legacy');
ALTER TABLE documents
    ALTER COLUMN tenant SET NOT NULL,
    ADD CONSTRAINT documents_tenant_format
        CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$');
CREATE INDEX documents_tenant ON documents (tenant);

-- The rules. principal: a principal ARN in the normal form of VerifiedCaller.principal_arn,
-- or a pattern where `*` stands for any characters; the account is always named (a rule
-- never spans accounts). Exactly one of tenant, document_id.
CREATE TABLE access_rules (
    rule_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    principal    text NOT NULL CHECK (
                     length(principal) <= 1000
                     AND principal ~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:*-]+$'),
    tenant       text CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    document_id  text CHECK (length(document_id) BETWEEN 1 AND 128),
    operation    text NOT NULL CHECK (operation IN ('retrieve', 'operate')),
    created_by   text NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT access_rules_one_target CHECK ((tenant IS NULL) <> (document_id IS NULL))
);
CREATE UNIQUE INDEX access_rules_unique
    ON access_rules (principal, operation, coalesce(tenant, ''), coalesce(document_id, ''));
CREATE INDEX access_rules_tenant ON access_rules (tenant) WHERE tenant IS NOT NULL;
CREATE INDEX access_rules_document ON access_rules (document_id) WHERE document_id IS NOT NULL;
REVOKE ALL ON access_rules FROM PUBLIC;

-- The retrieve function's attempt row (committed before any decryption) is outcome
-- `attempt`; the outcome row follows.
ALTER TABLE access_logs DROP CONSTRAINT access_logs_outcome_check;
ALTER TABLE access_logs ADD CONSTRAINT access_logs_outcome_check
    CHECK (outcome IN ('success', 'failure', 'refused', 'attempt'));
INSERT INTO audit_permissions (role_name, operation, outcome) VALUES
    ('pqfile_retrieve', 'document.decrypt', 'attempt');

CREATE OR REPLACE FUNCTION audit_check_fields(
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
    IF p_outcome IS NULL OR p_outcome NOT IN ('success', 'failure', 'refused', 'attempt') THEN
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

-- fetch: the pending row now carries the tenant, which must be the upload key's first
-- segment under uploads/ (an upload outside a tenant folder never gets a row).
DROP FUNCTION document_begin(text, text, text, text, text, bigint);
CREATE FUNCTION document_begin(
    p_document_id text, p_bucket text, p_key text, p_version_id text, p_etag text,
    p_size bigint, p_tenant text
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
    IF p_tenant IS NULL OR pqfile_tenant_of(p_key) IS DISTINCT FROM p_tenant THEN
        RAISE EXCEPTION 'the tenant must be the first folder under uploads/'
            USING ERRCODE = 'PQ004';
    END IF;
    RETURN QUERY
        INSERT INTO documents (document_id, source_bucket, source_key, source_version_id,
                               source_etag, plaintext_size, tenant)
        VALUES (p_document_id, p_bucket, p_key, p_version_id, p_etag, p_size, p_tenant)
        ON CONFLICT DO NOTHING RETURNING *;
END
$$;

-- An ARN pattern as a LIKE pattern: `%`, `_` and the escape character are literal, `*` is
-- any characters.
CREATE FUNCTION access_like_pattern(p_principal text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT replace(replace(replace(replace(p_principal, '\', '\\'), '%', '\%'), '_', '\_'),
                   '*', '%')
$$;

-- operator: allow a principal (or pattern) an operation on a tenant or one document.
-- Idempotent: an existing identical rule is returned, and the audit row says so.
CREATE FUNCTION access_grant(
    p_principal text, p_tenant text, p_document_id text, p_operation text, p_actor text,
    p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id      bigint;
    v_created boolean := false;
BEGIN
    IF p_principal IS NULL OR length(p_principal) > 1000
       OR p_principal !~ '^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:*-]+$' THEN
        RAISE EXCEPTION 'the principal must be an ARN or ARN pattern naming its account'
            USING ERRCODE = 'PQ004';
    END IF;
    IF (p_tenant IS NULL) = (p_document_id IS NULL) THEN
        RAISE EXCEPTION 'a rule names a tenant or a document, not both' USING ERRCODE = 'PQ004';
    END IF;
    IF p_tenant IS NOT NULL AND p_tenant !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' THEN
        RAISE EXCEPTION 'malformed tenant' USING ERRCODE = 'PQ004';
    END IF;
    IF p_operation IS NULL OR p_operation NOT IN ('retrieve', 'operate') THEN
        RAISE EXCEPTION 'the operation is retrieve or operate' USING ERRCODE = 'PQ004';
    END IF;
    IF p_document_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM documents WHERE document_id = p_document_id) THEN
        RAISE EXCEPTION 'no document %', left(p_document_id, 128) USING ERRCODE = 'PQ005';
    END IF;
    SELECT rule_id INTO v_id FROM access_rules
     WHERE principal = p_principal AND operation = p_operation
       AND tenant IS NOT DISTINCT FROM p_tenant
       AND document_id IS NOT DISTINCT FROM p_document_id;
    IF NOT FOUND THEN
        INSERT INTO access_rules (principal, tenant, document_id, operation)
        VALUES (p_principal, p_tenant, p_document_id, p_operation)
        ON CONFLICT DO NOTHING
        RETURNING rule_id INTO v_id;
        v_created := v_id IS NOT NULL;
        IF NOT v_created THEN  -- a concurrent identical grant won
            SELECT rule_id INTO v_id FROM access_rules
             WHERE principal = p_principal AND operation = p_operation
               AND tenant IS NOT DISTINCT FROM p_tenant
               AND document_id IS NOT DISTINCT FROM p_document_id;
        END IF;
    END IF;
    PERFORM audit_internal('access.grant', 'success', p_actor, p_document_id, NULL,
                           p_request_id,
                           jsonb_strip_nulls(jsonb_build_object(
                               'rule_id', v_id, 'principal', p_principal,
                               'tenant', p_tenant, 'operation', p_operation,
                               'created', v_created)));
    RETURN v_id;
END
$$;

-- operator: remove the rule with exactly these arguments (PQ005 when there is none).
CREATE FUNCTION access_revoke(
    p_principal text, p_tenant text, p_document_id text, p_operation text, p_actor text,
    p_request_id text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    DELETE FROM access_rules
     WHERE principal = p_principal AND operation = p_operation
       AND tenant IS NOT DISTINCT FROM p_tenant
       AND document_id IS NOT DISTINCT FROM p_document_id
    RETURNING rule_id INTO v_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such rule' USING ERRCODE = 'PQ005';
    END IF;
    PERFORM audit_internal('access.revoke', 'success', p_actor, p_document_id, NULL,
                           p_request_id,
                           jsonb_strip_nulls(jsonb_build_object(
                               'rule_id', v_id, 'principal', p_principal,
                               'tenant', p_tenant, 'operation', p_operation)));
    RETURN v_id;
END
$$;

-- retrieve: may this verified principal do this to this document? False for an unknown
-- document, a NULL argument, or when no rule matches (deny by default).
CREATE FUNCTION access_check(p_principal text, p_document_id text, p_operation text)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT coalesce((
        SELECT EXISTS (
            SELECT 1
              FROM documents d
              JOIN access_rules r
                ON r.operation = p_operation
               AND (r.document_id = d.document_id OR r.tenant = d.tenant)
             WHERE d.document_id = p_document_id
               AND length(p_principal) <= 1000
               AND p_principal LIKE access_like_pattern(r.principal))
    ), false)
$$;

REVOKE ALL ON FUNCTION
    pqfile_tenant_of(text), access_like_pattern(text),
    document_begin(text, text, text, text, text, bigint, text),
    access_grant(text, text, text, text, text, text),
    access_revoke(text, text, text, text, text, text),
    access_check(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION document_begin(text, text, text, text, text, bigint, text)
    TO pqfile_fetch;
GRANT EXECUTE ON FUNCTION access_grant(text, text, text, text, text, text),
    access_revoke(text, text, text, text, text, text)
    TO pqfile_operator;
GRANT EXECUTE ON FUNCTION access_check(text, text, text) TO pqfile_retrieve;
GRANT SELECT ON access_rules TO pqfile_auditor, pqfile_operator;
