-- Privileges (unit io.pgtrickle.refresh, repeatable; last of the unit, so that it covers every
-- function the unit's other scripts create).
--
-- The SECURITY DEFINER functions run with their owner's rights: they are the engine's own tools
-- (capture, its rebuild, the DDL event triggers, running a refresh as the stream table's owner),
-- never an API, so nobody but their owner may call them. Neither may anyone else store a refresh
-- plan or record a refresh failure: those are the engine's. The catalog tables themselves have
-- never been granted to anyone, so only their owner (the role that migrated them: the engine's)
-- writes them. Functions created later (capture functions, a stream table's pgt_<id>_refresh) are
-- closed where they are created: a schema's default privileges cannot take away the EXECUTE that
-- PUBLIC has on every new function.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace IN ('pgtrickle'::regnamespace, 'pgtrickle_changes'::regnamespace)
                AND (p.prosecdef OR p.oid IN ('pgtrickle.set_refresh_plan(bigint, text, text, text, text, text, jsonb)'::regprocedure,
                                               'pgtrickle.record_refresh_failure(bigint, text, integer, text)'::regprocedure)) LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
