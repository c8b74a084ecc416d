-- 0001: least-privilege database roles (docs/KEYS.md, "Roles").
-- Roles are cluster-wide, so creation is idempotent: another database on the same server
-- may have created them already. They log in without a password here; on RDS grant them
-- `rds_iam` or set a password from Secrets Manager.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pqfile_ingest', 'pqfile_retrieve', 'pqfile_rotate', 'pqfile_auditor']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another database's migration
            END;
        END IF;
    END LOOP;
END
$$;
