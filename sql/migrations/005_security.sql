-- 005: least privilege. Row-level security on every table, and a read-only role for agents.
-- The role's name comes from the session setting e2i.reader_role (the migrate command sets it
-- from $E2I_READER_ROLE; default e2i_reader). Loads run as the owner, which RLS does not bind,
-- so RLS stays enabled while loading (the system we replace had to disable it).

CREATE FUNCTION e2i_reader_role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('e2i.reader_role', true), ''), 'e2i_reader')
$$;

-- Enable RLS on a table and let the reader role see every row (and only read).
CREATE FUNCTION e2i_secure_table(target regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('DROP POLICY IF EXISTS e2i_reader_select ON %s', target);
    EXECUTE format('CREATE POLICY e2i_reader_select ON %s FOR SELECT TO %I USING (true)',
                   target, e2i_reader_role());
    EXECUTE format('GRANT SELECT ON %s TO %I', target, e2i_reader_role());
END
$$;

DO $$
DECLARE
    t record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = e2i_reader_role()) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', e2i_reader_role());
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', e2i_reader_role());
    FOR t IN SELECT c.oid::regclass AS rel FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r'
    LOOP
        PERFORM e2i_secure_table(t.rel);
    END LOOP;
END
$$;
