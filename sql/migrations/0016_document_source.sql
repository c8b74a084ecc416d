-- 0016: find a document by the upload's name (issue 13, item 2; docs/OPERATIONS.md,
-- "Following a document").
--
-- The row already keeps the upload's key and version id (source_key, source_version_id);
-- it now keeps its content type too, as S3 reported it at fetch. document_begin takes it
-- (NULL: unknown). Retrieve finds a stored document by (source_bucket, source_key
-- [, source_version_id]) with its SELECT on documents; the index keeps that lookup cheap.
--
-- SQLSTATEs as in 0010: PQ004 invariant violated.

ALTER TABLE documents ADD COLUMN IF NOT EXISTS source_content_type text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conname = 'documents_source_content_type_length') THEN
        ALTER TABLE documents ADD CONSTRAINT documents_source_content_type_length
            CHECK (source_content_type IS NULL OR length(source_content_type) BETWEEN 1 AND 255);
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS documents_source_lookup
    ON documents (source_bucket, source_key, stored_at DESC);

DROP FUNCTION document_begin(text, text, text, text, text, bigint, text);
CREATE FUNCTION document_begin(
    p_document_id text, p_bucket text, p_key text, p_version_id text, p_etag text,
    p_size bigint, p_tenant text, p_content_type text
) RETURNS SETOF documents
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_version_id IS NULL AND p_etag IS NULL THEN
        RAISE EXCEPTION 'a document source needs a version id or an ETag' USING ERRCODE = 'PQ004';
    END IF;
    IF length(p_bucket) > 63 OR length(p_key) > 1024 OR length(p_version_id) > 1024
       OR length(p_etag) > 128 OR p_size < 0
       OR length(p_content_type) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'document source out of range' USING ERRCODE = 'PQ004';
    END IF;
    IF p_tenant IS NULL OR pqfile_tenant_of(p_key) IS DISTINCT FROM p_tenant THEN
        RAISE EXCEPTION 'the tenant must be the first folder under uploads/'
            USING ERRCODE = 'PQ004';
    END IF;
    RETURN QUERY
        INSERT INTO documents (document_id, source_bucket, source_key, source_version_id,
                               source_etag, plaintext_size, tenant, source_content_type)
        VALUES (p_document_id, p_bucket, p_key, p_version_id, p_etag, p_size, p_tenant,
                p_content_type)
        ON CONFLICT DO NOTHING RETURNING *;
END
$$;
REVOKE ALL ON FUNCTION document_begin(text, text, text, text, text, bigint, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION document_begin(text, text, text, text, text, bigint, text, text)
    TO pqfile_fetch;
