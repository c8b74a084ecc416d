-- 0004: the append-only, hash-chained audit trail (docs/KEYS.md, "Audit chain").
--
-- Rows are appended only through audit_append(), which serialises writers on the single
-- chain-head row, so the chain stays linear however many writers there are, and computes
-- both hashes inside the database: callers can neither pick a sequence number nor forge
-- a hash. `pqfile audit verify` recomputes every hash in Python from the same encoding:
--
--   row_hash = SHA-256( "pqfile/audit/v1"
--                       || F(seq) || F(occurred_at) || F(operation) || F(outcome)
--                       || F(actor) || F(document_id) || F(key_id) || F(request_id)
--                       || F(details) || F(prev_hash) )
--   F(NULL)  = 0xFFFFFFFF
--   F(text)  = uint32 big-endian byte length || UTF-8 bytes
--   F(bytes) = uint32 big-endian byte length || bytes
--   seq as decimal text; occurred_at as UTC text YYYY-MM-DDTHH:MM:SS.ffffffZ;
--   the first row's prev_hash is 32 zero bytes.
CREATE TABLE access_logs (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    occurred_at  timestamptz NOT NULL,
    operation    text NOT NULL CHECK (length(operation) BETWEEN 1 AND 64),
    outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'refused')),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 2048),
    document_id  text,
    key_id       text,
    request_id   text,
    details      text CHECK (details IS NULL OR (details::jsonb IS NOT NULL)),
    prev_hash    bytea NOT NULL CHECK (length(prev_hash) = 32),
    row_hash     bytea NOT NULL CHECK (length(row_hash) = 32)
);
CREATE INDEX access_logs_document ON access_logs (document_id) WHERE document_id IS NOT NULL;
CREATE INDEX access_logs_key ON access_logs (key_id) WHERE key_id IS NOT NULL;

-- The head of the chain: one row, locked FOR UPDATE by each append.
CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL,
    row_hash   bytea NOT NULL CHECK (length(row_hash) = 32)
);
INSERT INTO audit_chain_head (singleton, seq, row_hash)
VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

CREATE FUNCTION audit_field_text(v text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\xffffffff'::bytea
                ELSE int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8')
           END
$$;

CREATE FUNCTION audit_field_bytes(v bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(v)) || v END
$$;

CREATE FUNCTION audit_row_hash(
    p_seq bigint, p_occurred_at timestamptz, p_operation text, p_outcome text, p_actor text,
    p_document_id text, p_key_id text, p_request_id text, p_details text, p_prev_hash bytea
) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(
        convert_to('pqfile/audit/v1', 'UTF8')
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
        || audit_field_bytes(p_prev_hash)
    )
$$;

CREATE FUNCTION audit_append(
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
    v_hash  bytea;
BEGIN
    SELECT seq + 1, row_hash INTO v_seq, v_prev
      FROM audit_chain_head WHERE singleton FOR UPDATE;
    v_at := clock_timestamp();
    v_hash := audit_row_hash(v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id,
                             p_key_id, p_request_id, p_details, v_prev);
    INSERT INTO access_logs (seq, occurred_at, operation, outcome, actor, document_id, key_id,
                             request_id, details, prev_hash, row_hash)
    VALUES (v_seq, v_at, p_operation, p_outcome, p_actor, p_document_id, p_key_id,
            p_request_id, p_details, v_prev, v_hash);
    UPDATE audit_chain_head SET seq = v_seq, row_hash = v_hash WHERE singleton;
    RETURN v_seq;
END
$$;

-- Append-only, even for roles that were granted more than they should have been.
-- Only the table owner can disable these triggers (ALTER TABLE needs ownership).
CREATE FUNCTION access_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only (% refused)', TG_OP
        USING ERRCODE = 'PQ003';
END
$$;

CREATE TRIGGER access_logs_no_update_delete
    BEFORE UPDATE OR DELETE ON access_logs
    FOR EACH ROW EXECUTE FUNCTION access_logs_append_only();
CREATE TRIGGER access_logs_no_truncate
    BEFORE TRUNCATE ON access_logs
    FOR EACH STATEMENT EXECUTE FUNCTION access_logs_append_only();
CREATE TRIGGER audit_chain_head_no_delete
    BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION access_logs_append_only();
