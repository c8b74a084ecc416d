-- 0008: each audit row also records the database role that appended it (session_user),
-- which the caller cannot choose, next to the actor it reports (docs/KEYS.md, "Audit chain").
-- Rows from now on are hashed with the v2 encoding: v1's fields, then F(db_role), then
-- F(prev_hash). Older rows (db_role NULL) keep verifying under v1.
ALTER TABLE access_logs ADD COLUMN db_role text;

CREATE FUNCTION audit_row_hash_v2(
    p_seq bigint, p_occurred_at timestamptz, p_operation text, p_outcome text, p_actor text,
    p_document_id text, p_key_id text, p_request_id text, p_details text, p_db_role text,
    p_prev_hash bytea
) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(
        convert_to('pqfile/audit/v2', 'UTF8')
        || audit_field_text(p_seq::text)
        || audit_field_text(to_char(p_occurred_at AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field_text(p_operation)
        || audit_field_text(p_outcome)
        || audit_field_text(p_actor)
        || audit_field_text(p_document_id)
        || audit_field_text(p_key_id)
        || audit_field_text(p_request_id)
        || audit_field_text(p_details)
        || audit_field_text(p_db_role)
        || audit_field_bytes(p_prev_hash)
    )
$$;

CREATE OR REPLACE FUNCTION audit_append(
    p_operation text, p_outcome text, p_actor text, p_document_id text, p_key_id text,
    p_request_id text, p_details text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_prev  bytea;
    v_seq   bigint;
    v_at    timestamptz;
    v_role  text := session_user;
    v_hash  bytea;
BEGIN
    SELECT seq + 1, row_hash INTO v_seq, v_prev
      FROM audit_chain_head WHERE singleton FOR UPDATE;
    v_at := clock_timestamp();
    v_hash := audit_row_hash_v2(v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id,
                                p_key_id, p_request_id, p_details, v_role, v_prev);
    INSERT INTO access_logs (seq, occurred_at, operation, outcome, actor, document_id, key_id,
                             request_id, details, db_role, prev_hash, row_hash)
    VALUES (v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id, p_key_id,
            p_request_id, p_details, v_role, v_prev, v_hash);
    UPDATE audit_chain_head SET seq = v_seq, row_hash = v_hash WHERE singleton;
    RETURN v_seq;
END
$$;
