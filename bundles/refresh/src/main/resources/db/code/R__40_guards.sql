-- Guards (unit io.pgtrickle.refresh, repeatable): a stream table is written by its refreshes only.

-- Puts the guard on a stream table's storage (create_stream_table calls it). Idempotent.
CREATE OR REPLACE FUNCTION pgtrickle.guard_stream_table(storage regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = storage AND t.tgname = 'pgt_guard_write') THEN
        EXECUTE format('CREATE TRIGGER pgt_guard_write BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle.refuse_direct_write()', storage);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = storage AND t.tgname = 'pgt_guard_truncate') THEN
        EXECUTE format('CREATE TRIGGER pgt_guard_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle.refuse_direct_write()', storage);
    END IF;
END
$fn$;

-- The trigger function of the guard. Qualified names only: it runs under the writer's search_path.
CREATE OR REPLACE FUNCTION pgtrickle.refuse_direct_write() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    IF pg_catalog.current_setting('pgtrickle.refreshing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pgtrickle: % on stream table %.% is not allowed: only its refreshes write it',
        TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
        USING ERRCODE = 'feature_not_supported',
              HINT = 'A stream table holds the result of its query. Write to its sources instead; for rows of your own, '
                     'use another table (and a view combining the two if you need one).';
END
$fn$;
