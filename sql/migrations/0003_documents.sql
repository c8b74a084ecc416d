-- 0003: the document index. One row per uploaded object version: a replayed event finds
-- its document through the unique source identity (bucket, key, version id or ETag).
CREATE TABLE documents (
    document_id          text PRIMARY KEY CHECK (length(document_id) BETWEEN 1 AND 128),
    source_bucket        text NOT NULL,
    source_key           text NOT NULL,
    source_version_id    text,
    source_etag          text,
    -- the identity used for idempotency: the version id when the bucket is versioned
    source_ref           text GENERATED ALWAYS AS (
                             coalesce('v:' || source_version_id, 'e:' || source_etag)
                         ) STORED,
    encrypted_bucket     text,
    encrypted_key        text,
    encrypted_version_id text,
    key_id               text REFERENCES encryption_keys (id),
    suite                text CHECK (suite IN ('xwing', 'mlkem768')),
    plaintext_size       bigint CHECK (plaintext_size >= 0),
    encrypted_size       bigint CHECK (encrypted_size >= 0),
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'encrypted', 'stored', 'failed')),
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    stored_at            timestamptz,
    plaintext_deleted_at timestamptz,
    CONSTRAINT documents_source_ref_present CHECK (source_ref IS NOT NULL),
    CONSTRAINT documents_source_identity UNIQUE (source_bucket, source_key, source_ref)
);
CREATE INDEX documents_key_id ON documents (key_id);
