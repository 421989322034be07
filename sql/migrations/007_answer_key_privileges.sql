-- 007: the answer key out of the agents' reach. The read-only agent role (e2i.reader_role)
-- loses every privilege and its RLS policy on ground_truth (the planted effects) and
-- e2i_active_scenario (the scenario YAML that planted them); a scorer role (e2i.scorer_role,
-- from $E2I_SCORER_ROLE, default e2i_scorer) gets SELECT and an RLS policy on those two only.
-- Roles are per server: the migrate command creates both race-free before this runs; the
-- creation here covers applying the file by hand, and tolerates a concurrent creator.

CREATE FUNCTION e2i_scorer_role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('e2i.scorer_role', true), ''), 'e2i_scorer')
$$;

DO $$
DECLARE
    t text;
BEGIN
    IF e2i_scorer_role() = e2i_reader_role() THEN
        RAISE EXCEPTION 'the scorer role and the reader role must differ (both %)', e2i_reader_role();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = e2i_scorer_role()) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', e2i_scorer_role());
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database on this server
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', e2i_scorer_role());
    FOREACH t IN ARRAY ARRAY['ground_truth', 'e2i_active_scenario'] LOOP
        EXECUTE format('REVOKE ALL ON %I FROM %I', t, e2i_reader_role());
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
        EXECUTE format('DROP POLICY IF EXISTS e2i_reader_select ON %I', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY e2i_scorer_select ON %I FOR SELECT TO %I USING (true)',
                       t, e2i_scorer_role());
        EXECUTE format('GRANT SELECT ON %I TO %I', t, e2i_scorer_role());
    END LOOP;
END
$$;
