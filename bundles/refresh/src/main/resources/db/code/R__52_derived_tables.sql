-- Derived tables (unit io.pgtrickle.refresh, repeatable). An aggregating subquery in FROM, or a WITH
-- query that aggregates, cannot be inlined into the query that reads it; the engine's planner
-- (DerivedTables) keeps it as a table of its own in pgtrickle_changes, maintained by a differential
-- statement of its own, and plans the stream table's statement over that table as over any source:
-- its changes are what its statement wrote in this refresh, recorded by the trigger below into its
-- buffer. The catalog keeps the list in pgt_stream_tables.derived (see V0.35.0).
--
-- A derived table has its own frontier (the snapshot of the statement that last maintained it, in
-- the stream table's frontier under "derived"): its statement and the stream table's run one after
-- the other, and a writer committing in between is in the second's snapshot, not in the first's.
-- Each is exact to its own snapshot, and the next refresh brings the derived table on from there.

-- What a derived table's statement wrote, as changes in its buffer: only while that statement runs
-- (setting pgtrickle.derived_capture), not when a FULL refresh or a new plan refills the table.
CREATE OR REPLACE FUNCTION pgtrickle.capture_derived_changes() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        EXECUTE format('INSERT INTO %s SELECT pg_current_xact_id(), ''D'', o.* FROM pgt_old o', TG_ARGV[0]);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        EXECUTE format('INSERT INTO %s SELECT pg_current_xact_id(), ''I'', n.* FROM pgt_new n', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$fn$;

-- A plan's derived tables live as long as the plan: a plan set to NULL (a new query, ALTER, an
-- evolution's swap, a source's DDL) or replaced takes its derived tables along, and so does the
-- stream table's catalog row. Their names carry the pgt_id, so a shadow's never meet the live one's.
CREATE OR REPLACE FUNCTION pgtrickle.drop_derived_tables() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
DECLARE
    d jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.delta_sql IS NULL THEN
            NEW.derived := NULL;
        END IF;
        IF OLD.derived IS NULL OR OLD.derived IS NOT DISTINCT FROM NEW.derived THEN
            RETURN NEW;
        END IF;
    END IF;
    FOR d IN SELECT x FROM jsonb_array_elements(OLD.derived) x
              WHERE TG_OP = 'DELETE' OR NEW.derived IS NULL OR NOT NEW.derived @> jsonb_build_array(x) LOOP
        EXECUTE format('DROP TABLE IF EXISTS %s, %s', d ->> 'table', d ->> 'buffer');
        IF d ->> 'state_table' IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', d ->> 'state_table');
        END IF;
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$fn$;

-- Only when a statement sets the plan: a refresh's own update of the frontier does not fire it.
CREATE OR REPLACE TRIGGER pgt_drop_derived_tables BEFORE UPDATE OF delta_sql, derived OR DELETE ON pgtrickle.pgt_stream_tables
    FOR EACH ROW EXECUTE FUNCTION pgtrickle.drop_derived_tables();

-- The CTEs (each starting with a comma) that refill a plan's tables from the sources in the
-- statement they are added to, so in its snapshot: the running totals, each derived table and its
-- running totals, and an empty buffer for each derived table. A fill waits for its clear (its
-- one-time filter reads the clear's rows first), or a group's old row would still hold the key its
-- new row needs. Only when `gate` (a condition over the statement's other CTEs) holds.
CREATE OR REPLACE FUNCTION pgtrickle.refill_ctes(state_table text, state_sql text, derived jsonb, gate text DEFAULT 'true')
    RETURNS text
    LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT coalesce(string_agg(format(',
             __pgt_r%1$s_clear AS (DELETE FROM %2$s WHERE %4$s RETURNING 1)%5$s', r.n, r.tbl, r.fill, gate,
             CASE WHEN r.fill IS NOT NULL THEN format(',
             __pgt_r%1$s_fill AS (INSERT INTO %2$s SELECT * FROM (%3$s) __pgt_q
                                  WHERE %4$s AND (SELECT count(*) FROM __pgt_r%1$s_clear) >= 0)', r.n, r.tbl, r.fill, gate) ELSE '' END),
             '' ORDER BY r.n), '')
      FROM (SELECT row_number() OVER () AS n, t.tbl, t.fill
              FROM (SELECT state_table AS tbl, state_sql AS fill WHERE state_table IS NOT NULL
                    UNION ALL
                    SELECT u.tbl, u.fill
                      FROM jsonb_array_elements(coalesce(derived, '[]')) WITH ORDINALITY AS d(x, i)
                     CROSS JOIN LATERAL (VALUES (1, d.x ->> 'table', d.x ->> 'query'),
                                                (2, d.x ->> 'state_table', d.x ->> 'state_sql'),
                                                (3, d.x ->> 'buffer', NULL)) AS u(k, tbl, fill)
                     WHERE u.tbl IS NOT NULL) t) r
$fn$;

-- Lets a stream table's owner, whose privileges its refresh statements run with, use the tables of
-- its plan: the running totals, and each derived table with its buffer and running totals.
CREATE OR REPLACE FUNCTION pgtrickle.grant_plan_tables(st pgtrickle.pgt_stream_tables) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = st.pgt_relid);
    t     text;
BEGIN
    -- no plan tables, or an owner who may do anything: nothing to grant (this runs before every
    -- FULL refresh)
    IF (st.state_table IS NULL AND st.derived IS NULL) OR (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = owner) THEN
        RETURN;
    END IF;
    FOR t IN SELECT st.state_table WHERE st.state_table IS NOT NULL
             UNION ALL
             SELECT u.tbl FROM jsonb_array_elements(coalesce(st.derived, '[]')) d(x)
              CROSS JOIN LATERAL (VALUES (d.x ->> 'table'), (d.x ->> 'buffer'), (d.x ->> 'state_table')) u(tbl)
              WHERE u.tbl IS NOT NULL LOOP
        IF NOT has_table_privilege(owner, t, 'SELECT, INSERT, UPDATE, DELETE') THEN
            PERFORM pgtrickle.grant_to_owner(owner, 'SELECT, INSERT, UPDATE, DELETE', t::regclass);
        END IF;
    END LOOP;
END
$fn$;

-- Brings a plan's derived tables on to the sources now, each from its own frontier (`frontier` ->
-- 'derived', or the stream table's snapshot after a FULL refresh filled them), before the stream
-- table's own statement reads them. Each statement empties its buffer, then writes its table, and
-- the trigger records the writes in the buffer; a buffer with changes joins the list of buffers
-- the stream table's statement plans terms for (pgtrickle.live_buffers). Returns each derived
-- table's new frontier, or NULL when a statement could not run (a TRUNCATE of a source, or stored
-- rows missing): the caller recomputes in FULL, which refills them all.
CREATE OR REPLACE FUNCTION pgtrickle.maintain_derived(st pgtrickle.pgt_stream_tables) RETURNS text[]
    LANGUAGE plpgsql
AS $fn$
DECLARE
    d     jsonb;
    i     bigint;
    since pg_snapshot;
    res   text[];
    live  text;
    done  text[] := '{}';
BEGIN
    FOR d, i IN SELECT x, n FROM jsonb_array_elements(st.derived) WITH ORDINALITY AS a(x, n) LOOP
        since := coalesce(st.frontier -> 'derived' ->> (i - 1)::int, st.frontier ->> 'snapshot')::pg_snapshot;
        PERFORM set_config('pgtrickle.derived_capture', 'on', true);
        res := pgtrickle.execute_as_owner(st, d ->> 'delta_sql', since);
        -- as run_refresh does for the stream table's statement: a writer committed after the probe
        IF res[4]::boolean AND current_setting('pgtrickle.live_buffers', true) <> '' THEN
            PERFORM set_config('pgtrickle.live_buffers', '', true);
            res := pgtrickle.execute_as_owner(st, d ->> 'delta_sql', since);
        END IF;
        PERFORM set_config('pgtrickle.derived_capture', 'off', true);
        IF res[4]::boolean OR res[5]::bigint > 0 THEN
            RETURN NULL;
        END IF;
        live := current_setting('pgtrickle.live_buffers', true);
        IF res[1]::bigint + res[2]::bigint > 0 AND live <> '' THEN
            PERFORM set_config('pgtrickle.live_buffers', (live::text[] || (d ->> 'buffer'))::text, true);
        END IF;
        done := done || res[3];
    END LOOP;
    RETURN done;
END
$fn$;
