-- pgtrickle catalog 0.33.0, part 3: the stream-table SQL API (pg_trickle's names and arguments).
--
-- Everything here runs in the caller's transaction: a stream table exists when the creating
-- transaction commits and not before; an error leaves nothing behind. The engine bundles call the
-- same functions, so SQL, Java and the shell share one code path.
--
-- A refresh is one SQL statement (data-modifying CTEs), so the source rows it reads, the rows it
-- writes and the snapshot it records as the new frontier all belong to one statement snapshot, in
-- any isolation level.

-- 'calculated' -> NULL (refresh when a source changed); '100ms', '1s', '5m', '1h30m', '2d' -> interval.
CREATE FUNCTION pgtrickle.parse_schedule(schedule text) RETURNS interval
    LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    part     text[];
    total    interval := interval '0';
    rest     text := lower(btrim(schedule));
BEGIN
    IF schedule IS NULL OR rest = 'calculated' THEN
        RETURN NULL;
    END IF;
    IF rest !~ '^([0-9]+(ms|s|m|h|d))+$' THEN
        RAISE EXCEPTION 'pgtrickle: invalid schedule ''%''', schedule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a duration such as ''100ms'', ''1s'', ''5m'', ''1h30m'', or ''calculated''.';
    END IF;
    FOR part IN SELECT regexp_matches(rest, '([0-9]+)(ms|s|m|h|d)', 'g') LOOP
        total := total + part[1]::bigint * CASE part[2]
            WHEN 'ms' THEN interval '1 millisecond' WHEN 's' THEN interval '1 second'
            WHEN 'm' THEN interval '1 minute' WHEN 'h' THEN interval '1 hour' ELSE interval '1 day' END;
    END LOOP;
    IF total < interval '100 milliseconds' THEN
        RAISE EXCEPTION 'pgtrickle: schedule ''%'' is shorter than the minimum of 100ms', schedule
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN total;
END
$fn$;

-- 'name' or 'schema.name' (quoted identifiers allowed) -> (schema, name); bare names are created
-- in and looked up from the first schema of the search_path.
CREATE FUNCTION pgtrickle.split_name(name text, OUT schema_name text, OUT table_name text)
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    parts text[];
BEGIN
    BEGIN
        parts := parse_ident(name);
    EXCEPTION WHEN invalid_parameter_value OR syntax_error THEN
        RAISE EXCEPTION 'pgtrickle: invalid stream table name ''%''', name USING ERRCODE = 'invalid_name';
    END;
    IF cardinality(parts) = 1 THEN
        schema_name := current_schema();
        IF schema_name IS NULL THEN
            RAISE EXCEPTION 'pgtrickle: no schema to create ''%'' in: the search_path is empty', name
                USING ERRCODE = 'invalid_schema_name';
        END IF;
        table_name := parts[1];
    ELSIF cardinality(parts) = 2 THEN
        schema_name := parts[1];
        table_name := parts[2];
    ELSE
        RAISE EXCEPTION 'pgtrickle: invalid stream table name ''%'': expected name or schema.name', name
            USING ERRCODE = 'invalid_name';
    END IF;
END
$fn$;

-- The catalog row of a stream table, by name; a clear error when there is none.
CREATE FUNCTION pgtrickle.find_stream_table(name text) RETURNS pgtrickle.pgt_stream_tables
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    n  record := pgtrickle.split_name(name);
    st pgtrickle.pgt_stream_tables;
BEGIN
    SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_schema = n.schema_name AND s.pgt_name = n.table_name;
    IF NOT FOUND AND cardinality(parse_ident(name)) = 1 THEN
        -- a bare name: any schema on the search_path, in order
        SELECT s.* INTO st FROM pgtrickle.pgt_stream_tables s
          JOIN unnest(current_schemas(false)) WITH ORDINALITY AS p(nsp, pos) ON p.nsp = s.pgt_schema
         WHERE s.pgt_name = n.table_name ORDER BY p.pos LIMIT 1;
    END IF;
    IF st.pgt_id IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: stream table ''%'' does not exist', name USING ERRCODE = 'undefined_table';
    END IF;
    IF st.shadow_of IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: ''%'' is the shadow of an evolution in progress, not a stream table of its own', name
            USING ERRCODE = 'wrong_object_type', HINT = 'See pgtrickle.view_evolution_status().';
    END IF;
    RETURN st;
END
$fn$;

-- The tables a query reads, through views, as (relid, source_type). Temporary tables are refused.
CREATE FUNCTION pgtrickle.query_sources(view_oid oid) RETURNS TABLE (relid oid, source_type text)
    LANGUAGE sql STABLE
AS $fn$
    WITH RECURSIVE deps(relid) AS (
        SELECT d.refobjid FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
         WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class = view_oid
           AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> view_oid
        UNION
        SELECT d.refobjid FROM deps JOIN pg_class c ON c.oid = deps.relid AND c.relkind = 'v'
          JOIN pg_rewrite r ON r.ev_class = c.oid
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
    )
    SELECT DISTINCT c.oid,
           CASE WHEN st.pgt_id IS NOT NULL THEN 'STREAM_TABLE'
                WHEN c.relkind IN ('r', 'p') THEN 'TABLE'
                WHEN c.relkind = 'v' THEN 'VIEW'
                WHEN c.relkind = 'm' THEN 'MATVIEW'
                WHEN c.relkind = 'f' THEN 'FOREIGN_TABLE' END
      FROM deps JOIN pg_class c ON c.oid = deps.relid
      LEFT JOIN pgtrickle.pgt_stream_tables st ON st.pgt_relid = c.oid
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
$fn$;

-- The FULL refresh of one stream table as a single statement: recompute the query, compare it
-- with the stored rows as multisets (a row's identity is its text form, so types without an
-- equality operator work too), delete the surplus copies and insert the missing ones. Unchanged
-- rows are not touched, and the counts are exact: an updated row is one delete and one insert.
-- Every row of both sides is rendered once; one aggregate over both (+1 per new copy, -1 per
-- stored one) finds the keys whose counts differ, and the delete and the insert work only on the
-- rows of those keys. Counting each side apart and joining the counts, then numbering every stored
-- copy and sorting every new row, took 2.7 times as long on 650,000 rows with 1% changed.
CREATE FUNCTION pgtrickle.full_refresh_sql(st pgtrickle.pgt_stream_tables) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    target text := format('%I.%I', st.pgt_schema, st.pgt_name);
    cols   text;
    stored text;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('s.%I', a.attname), ', ' ORDER BY a.attnum)
      INTO cols, stored
      FROM pg_attribute a WHERE a.attrelid = st.pgt_relid AND a.attnum > 0 AND NOT a.attisdropped;
    RETURN format($sql$
        WITH next_rows AS (
                 SELECT ROW(q.*)::text AS __pgt_key, q.* FROM (%1$s) q),
             current_rows AS MATERIALIZED (
                 SELECT s.ctid AS __pgt_ctid, ROW(%4$s)::text AS __pgt_key FROM %3$s s),
             diff AS (
                 SELECT __pgt_key, sum(__pgt_n)::bigint AS __pgt_d
                   FROM (SELECT __pgt_key, 1 AS __pgt_n FROM next_rows
                         UNION ALL
                         SELECT __pgt_key, -1 FROM current_rows) u
                  GROUP BY __pgt_key
                 HAVING sum(__pgt_n) <> 0),
             deleted AS (
                 DELETE FROM %3$s t USING (
                     SELECT c.__pgt_victim FROM (
                         SELECT s.__pgt_ctid AS __pgt_victim, diff.__pgt_d,
                                row_number() OVER (PARTITION BY diff.__pgt_key) AS __pgt_copy
                           FROM current_rows s JOIN diff ON diff.__pgt_key = s.__pgt_key AND diff.__pgt_d < 0) c
                      WHERE c.__pgt_copy <= -c.__pgt_d) v
                  WHERE t.ctid = v.__pgt_victim
                 RETURNING 1),
             inserted AS (
                 INSERT INTO %3$s (%2$s)
                 SELECT %2$s FROM (SELECT DISTINCT ON (r.__pgt_key) r.*, diff.__pgt_d
                                     FROM next_rows r JOIN diff ON diff.__pgt_key = r.__pgt_key AND diff.__pgt_d > 0
                                    ORDER BY r.__pgt_key) r
                  CROSS JOIN LATERAL generate_series(1, r.__pgt_d)
                 RETURNING 1)%5$s
        -- deleted first: the old copy of a row must be gone before its new copy is inserted, or a
        -- unique index on the stream table rejects the new copy (initplans run in this order)
        SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM inserted), pg_current_snapshot()::text
        $sql$, st.defining_query, cols, target, stored,
        -- running totals are refilled from scratch in the same statement (and snapshot); the fill
        -- waits for the clear (its one-time filter reads the clear's rows first), or a group's old
        -- row would still hold the key its new row needs
        CASE WHEN st.state_table IS NOT NULL THEN format(',
             __pgt_state_clear AS (DELETE FROM %1$s RETURNING 1),
             __pgt_state_fill AS (INSERT INTO %1$s SELECT * FROM (%2$s) __pgt_q
                                  WHERE (SELECT count(*) FROM __pgt_state_clear) >= 0)', st.state_table, st.state_sql) ELSE '' END);
END
$fn$;

CREATE FUNCTION pgtrickle.has_rows(storage regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    result boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', storage) INTO result;
    RETURN result;
END
$fn$;

-- Whether a transaction has written captured changes of a source.
CREATE FUNCTION pgtrickle.written_by(source regclass, writer xid8) RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    buffer regclass := pgtrickle.change_buffer(source);
    result boolean := false;
BEGIN
    IF buffer IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE xid = $1)', buffer) INTO result USING writer;
    END IF;
    RETURN result;
END
$fn$;

-- Stores the engine's plan for a stream table's defining query: the differential statement, or
-- NULL and the reason it cannot have one (the stream table then runs FULL), and for plans that keep
-- running totals their table and refill query: the next refresh is then FULL, which fills it. A plan
-- made for a query the stream table no longer has is ignored. Returns whether the plan was stored.
CREATE FUNCTION pgtrickle.set_refresh_plan(pgt_id bigint, planned_query text, delta_sql text, reason text,
                                           state_table text DEFAULT NULL, state_sql text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st     pgtrickle.pgt_stream_tables;
    filled boolean := false;
BEGIN
    SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = set_refresh_plan.pgt_id FOR UPDATE;
    -- Running totals must match the stored rows, i.e. the sources at the frontier. With no change
    -- since the frontier the sources now are the sources then: fill them now, in one statement
    -- with the check. Otherwise the next refresh runs FULL, which fills them.
    IF set_refresh_plan.state_sql IS NOT NULL AND st.frontier ? 'snapshot' AND st.defining_query = planned_query THEN
        EXECUTE format('WITH pending AS (SELECT coalesce(sum(pgtrickle.pending_change_count(d.source_relid::regclass, $1)), 0) AS n'
                       '                   FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = $2),'
                       '     filled AS (INSERT INTO %s SELECT * FROM (%s) q WHERE (SELECT n FROM pending) = 0 RETURNING 1)'
                       ' SELECT (SELECT n FROM pending) = 0 AND (SELECT count(*) FROM filled) >= 0',
                       set_refresh_plan.state_table, set_refresh_plan.state_sql)
           INTO filled USING (st.frontier ->> 'snapshot')::pg_snapshot, st.pgt_id;
    END IF;
    UPDATE pgtrickle.pgt_stream_tables s
       SET delta_sql = set_refresh_plan.delta_sql,
           state_table = set_refresh_plan.state_table,
           state_sql = set_refresh_plan.state_sql,
           frontier = CASE WHEN set_refresh_plan.state_sql IS NOT NULL AND NOT filled AND s.frontier IS NOT NULL
                           THEN s.frontier || '{"full_next": true}' ELSE s.frontier END,
           refresh_mode = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN 'FULL' ELSE s.refresh_mode END,
           refresh_mode_reason = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN set_refresh_plan.reason ELSE s.refresh_mode_reason END,
           effective_refresh_mode = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN 'FULL' ELSE s.effective_refresh_mode END,
           updated_at = now()
     WHERE s.pgt_id = set_refresh_plan.pgt_id AND s.defining_query = planned_query AND s.refresh_mode = 'DIFFERENTIAL';
    RETURN FOUND;
END
$fn$;

-- Refreshes one stream table in the caller's transaction and returns the refresh history id.
-- Refused for a SUSPENDED stream table and for one whose source was dropped.
-- wait = false: when another session is refreshing it, return NULL at once (the scheduler's way
-- of never refreshing one stream table twice at the same time, across containers).
-- notify_coalesce_ms: the container's coalescing window for subscriptions, used where neither the
-- stream table nor the database sets one (see pgtrickle.notify_coalesce_ms).
CREATE FUNCTION pgtrickle.run_refresh(pgt_id bigint, initiated_by text, wait boolean DEFAULT true,
                                      notify_coalesce_ms integer DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st        pgtrickle.pgt_stream_tables;
    started   timestamptz := clock_timestamp();
    captured  boolean;
    pending   bigint := 0;
    snapshot  text;
    ins       bigint := 0;
    del       bigint := 0;
    act       text;
    id        bigint;
    own       xid8;
    full_next boolean := false;
    fallback  boolean := false;
    ratio     double precision;
    estimate  double precision;
    truncated boolean;
    missing   bigint;
    del2      bigint;
    ins2      bigint;
BEGIN
    IF wait THEN
        SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = run_refresh.pgt_id FOR UPDATE;
    ELSE
        SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = run_refresh.pgt_id FOR UPDATE SKIP LOCKED;
        IF NOT FOUND AND EXISTS (SELECT FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = run_refresh.pgt_id) THEN
            RETURN NULL;
        END IF;
    END IF;
    IF st.pgt_id IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: no stream table with pgt_id %', run_refresh.pgt_id USING ERRCODE = 'undefined_table';
    END IF;
    -- A refresh would reset the error count of a stream table an operator has not resumed.
    IF st.status = 'SUSPENDED' THEN
        RAISE EXCEPTION 'pgtrickle: stream table %.% is SUSPENDED after % consecutive errors (last: %)',
            st.pgt_schema, st.pgt_name, st.consecutive_errors, coalesce(st.last_error_message, 'none')
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Fix the cause, then SELECT pgtrickle.resume_stream_table(...).';
    END IF;
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id
                  AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = d.source_relid)) THEN
        RAISE EXCEPTION 'pgtrickle: a source of stream table %.% has been dropped', st.pgt_schema, st.pgt_name
            USING ERRCODE = 'undefined_table', HINT = 'Drop the stream table, or re-create it on the new source.';
    END IF;

    -- Nothing to do when every source is captured and none has a change past the frontier; the
    -- probe and the snapshot it is judged in come from one statement. A query without captured
    -- sources (no tables, or views over catalogs, matviews, foreign tables) is always recomputed.
    SELECT bool_and(d.source_type IN ('TABLE', 'STREAM_TABLE')) INTO captured
      FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id;
    IF st.is_populated AND NOT st.needs_reinit AND st.frontier ? 'snapshot' AND coalesce(captured, false) THEN
        SELECT coalesce(sum(pgtrickle.pending_change_count(d.source_relid::regclass, (st.frontier ->> 'snapshot')::pg_snapshot)), 0),
               pg_current_snapshot()::text
          INTO pending, snapshot
          FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id;
    END IF;

    -- A transaction that wrote to a source before refreshing: its rows are consumed now and, as it
    -- is still in progress, again by the next refresh (see below). FULL needs no such bookkeeping.
    own := pg_current_xact_id_if_assigned();
    IF own IS NOT NULL AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                                    WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')
                                      AND pgtrickle.written_by(d.source_relid::regclass, own)) THEN
        full_next := true;
    END IF;

    -- AUTO: a change too large for a differential refresh to beat recomputing runs FULL this once.
    -- Judged by buffered rows (an UPDATE is two) against the sources' estimated rows; a source never
    -- analysed has no estimate, and then the rule does not apply.
    IF st.requested_refresh_mode = 'AUTO' AND st.refresh_mode = 'DIFFERENTIAL' AND pending > 0 THEN
        ratio := coalesce(nullif(current_setting('pg_trickle.differential_max_change_ratio', true), '')::double precision, 0.5);
        SELECT CASE WHEN bool_and(c.reltuples >= 0) THEN sum(c.reltuples) END INTO estimate
          FROM pgtrickle.pgt_dependencies d JOIN pg_class c ON c.oid = d.source_relid WHERE d.pgt_id = st.pgt_id;
        fallback := ratio > 0 AND estimate IS NOT NULL AND pending > ratio * greatest(estimate, 1);
    END IF;

    -- the guard on the stream table (0.33.0-guards.sql) lets this transaction's refresh writes through
    PERFORM set_config('pgtrickle.refreshing', 'on', true);
    IF pending = 0 AND snapshot IS NOT NULL THEN
        act := 'NO_DATA';
    ELSIF st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL AND snapshot IS NOT NULL AND NOT fallback
          AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false) AND NOT full_next THEN
        act := 'DIFFERENTIAL';
        EXECUTE st.delta_sql INTO del, ins, snapshot, truncated, missing USING (st.frontier ->> 'snapshot')::pg_snapshot;
        -- A TRUNCATE in the window: the delta statement wrote nothing and said so.
        IF truncated THEN
            act := 'FULL';
            EXECUTE pgtrickle.full_refresh_sql(st) INTO del, ins, snapshot;
        -- Stored rows the delta should have removed were not there: the table no longer matches
        -- its change history (it was written to directly). Recompute it rather than drift further.
        ELSIF missing > 0 THEN
            RAISE WARNING 'pgtrickle: stream table %.% lacked % row(s) its delta deletes; recomputing it in full',
                st.pgt_schema, st.pgt_name, missing;
            act := 'FULL';
            EXECUTE pgtrickle.full_refresh_sql(st) INTO del2, ins2, snapshot;
            del := del + del2;
            ins := ins + ins2;
        END IF;
    ELSIF NOT st.is_populated AND st.state_table IS NULL AND NOT pgtrickle.has_rows(st.pgt_relid::regclass) THEN
        -- The first fill of an empty table (create, a shadow build): nothing to compare with, so
        -- a plain INSERT, with the snapshot taken by the same statement.
        act := 'FULL';
        EXECUTE format('WITH filled AS (INSERT INTO %s SELECT * FROM (%s) q RETURNING 1)'
                       ' SELECT count(*), pg_current_snapshot()::text FROM filled', st.pgt_relid::regclass, st.defining_query)
           INTO ins, snapshot;
    ELSE
        act := 'FULL';
        EXECUTE pgtrickle.full_refresh_sql(st) INTO del, ins, snapshot;
    END IF;
    PERFORM set_config('pgtrickle.refreshing', 'off', true);

    -- pg_current_snapshot() leaves the calling transaction out of its in-progress list, so a
    -- refresh run inside a transaction that has written would store a frontier that counts that
    -- transaction as consumed, and its later writes to a source would never be pending. Record it
    -- as in progress: once it commits, the next refresh picks up everything it wrote.
    own := pg_current_xact_id_if_assigned();
    IF own IS NOT NULL AND pg_visible_in_snapshot(own, snapshot::pg_snapshot) THEN
        SELECT format('%s:%s:%s', least(pg_snapshot_xmin(q.s), own), pg_snapshot_xmax(q.s),
                      (SELECT string_agg(u.x::text, ',' ORDER BY u.x)
                         FROM (SELECT pg_snapshot_xip(q.s) AS x UNION SELECT own) u))
          INTO snapshot
          FROM (SELECT snapshot::pg_snapshot AS s) q;
    END IF;

    INSERT INTO pgtrickle.pgt_refresh_history
           (pgt_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted, delta_row_count, status,
            initiated_by, was_full_fallback)
    VALUES (st.pgt_id, now(), started, clock_timestamp(), act, ins, del, ins + del, 'COMPLETED', run_refresh.initiated_by,
            fallback AND act = 'FULL')
    RETURNING refresh_id INTO id;

    -- subscribers hear of it when this transaction commits, and never if it rolls back
    IF ins + del > 0 AND EXISTS (SELECT FROM pgtrickle.pgt_subscriptions sub WHERE sub.pgt_id = st.pgt_id) THEN
        PERFORM pgtrickle.announce_refresh(st.pgt_id, id, ins, del, run_refresh.notify_coalesce_ms);
    END IF;

    UPDATE pgtrickle.pgt_stream_tables s
       SET frontier = jsonb_build_object('snapshot', snapshot)
                      || CASE WHEN full_next OR (act <> 'FULL' AND coalesce((st.frontier ->> 'full_next')::boolean, false))
                              THEN '{"full_next": true}' ELSE '{}' END::jsonb,
           data_timestamp = now(), last_refresh_at = now(), is_populated = true, needs_reinit = false,
           consecutive_errors = 0, status = CASE WHEN s.status = 'INITIALIZING' THEN 'ACTIVE' ELSE s.status END,
           updated_at = now()
     WHERE s.pgt_id = st.pgt_id;

    PERFORM pgtrickle.prune_change_buffer(d.source_relid::regclass)
       FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE');
    RETURN id;
END
$fn$;

-- Records a refresh that failed (called in a new transaction after the failed one rolled back):
-- a FAILED history row, the error on the stream table, and SUSPENDED once consecutive_errors
-- reaches max_consecutive_errors. Returns the stream table's status.
CREATE FUNCTION pgtrickle.record_refresh_failure(pgt_id bigint, error text, max_consecutive_errors integer,
                                                 initiated_by text DEFAULT 'SCHEDULER') RETURNS text
    LANGUAGE plpgsql
AS $fn$
DECLARE
    result text;
BEGIN
    INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, start_time, end_time, action, status, error_message, initiated_by)
    SELECT s.pgt_id, now(), clock_timestamp(), CASE WHEN s.refresh_mode = 'DIFFERENTIAL' THEN 'DIFFERENTIAL' ELSE 'FULL' END,
           'FAILED', error, record_refresh_failure.initiated_by
      FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = record_refresh_failure.pgt_id;
    UPDATE pgtrickle.pgt_stream_tables s
       SET consecutive_errors = s.consecutive_errors + 1,
           last_error_message = error, last_error_at = now(),
           status = CASE WHEN s.consecutive_errors + 1 >= max_consecutive_errors THEN 'SUSPENDED' ELSE s.status END,
           updated_at = now()
     WHERE s.pgt_id = record_refresh_failure.pgt_id
    RETURNING s.status INTO result;
    IF result IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: no stream table with pgt_id %', pgt_id USING ERRCODE = 'undefined_table';
    END IF;
    RETURN result;
END
$fn$;

-- A query tree (nodeToString text) without its nodes of one kind, e.g. AGGREF: their insides (an
-- aggregate's own argument list) say nothing about the query's shape. Braces inside tokens are
-- backslash-escaped by nodeToString, so counting the others finds a node's end.
CREATE FUNCTION pgtrickle.strip_nodes(tree text, kind text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
AS $fn$
DECLARE
    result text := '';
    start  integer;
    i      integer;
    depth  integer;
    ch     text;
BEGIN
    LOOP
        start := strpos(tree, '{' || kind || ' ');
        EXIT WHEN start = 0;
        result := result || substr(tree, 1, start - 1);
        i := start + 1;
        depth := 1;
        WHILE depth > 0 AND i <= length(tree) LOOP
            ch := substr(tree, i, 1);
            IF ch = '\' THEN
                i := i + 1;
            ELSIF ch = '{' THEN
                depth := depth + 1;
            ELSIF ch = '}' THEN
                depth := depth - 1;
            END IF;
            i := i + 1;
        END LOOP;
        tree := substr(tree, i);
    END LOOP;
    RETURN result || tree;
END
$fn$;

-- Why the query behind a (temporary) view cannot be refreshed differentially, or NULL when it can.
-- Read from the rewritten query tree, so it judges what PostgreSQL understood, not the spelling.
-- The engine's planner (bundle io.pgtrickle.refresh) accepts exactly these queries; a shared corpus
-- test keeps the two in step.
CREATE FUNCTION pgtrickle.differential_blocker(view_oid oid) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    tree     text;
    found    text;
    branches integer;
BEGIN
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = view_oid;

    -- Every function the query calls (pg_depend does not record pinned built-ins such as random()).
    SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO found
      FROM regexp_matches(tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') AS m(f)
      JOIN pg_proc p ON p.oid = m.f[1]::oid
     WHERE p.provolatile = 'v';
    IF found IS NOT NULL THEN
        RETURN 'the query calls volatile functions (' || found || ')';
    END IF;

    SELECT string_agg(DISTINCT s.source_type || ' ' || s.relid::regclass::text, ', ') INTO found
      FROM pgtrickle.query_sources(view_oid) s WHERE s.source_type NOT IN ('TABLE', 'STREAM_TABLE');
    IF found IS NOT NULL THEN
        RETURN 'the query reads relations whose changes are not captured (' || lower(found) || ')';
    END IF;
    IF NOT EXISTS (SELECT FROM pgtrickle.query_sources(view_oid)) THEN
        RETURN 'the query reads no table';
    END IF;
    SELECT string_agg(DISTINCT format('%s.%I', a.attrelid::regclass, a.attname), ', ') INTO found
      FROM pgtrickle.query_sources(view_oid) s JOIN pg_attribute a ON a.attrelid = s.relid
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '';
    IF found IS NOT NULL THEN
        RETURN 'a source has generated columns (' || found || ')';
    END IF;

    IF tree ~ ':hasWindowFuncs true' THEN RETURN 'the query uses window functions'; END IF;
    IF tree ~ ':hasTargetSRFs true' THEN RETURN 'the query calls set-returning functions in its select list'; END IF;
    IF tree ~ ':hasSubLinks true' THEN RETURN 'the query has subqueries (EXISTS, IN or scalar)'; END IF;
    IF tree ~ ':hasDistinctOn true' THEN RETURN 'the query uses DISTINCT ON'; END IF;
    IF tree ~ ':cteList \(' THEN RETURN 'the query uses WITH'; END IF;
    IF tree ~ ':groupingSets \(' THEN RETURN 'the query uses GROUPING SETS, ROLLUP or CUBE'; END IF;
    IF tree ~ ':limitCount \{' OR tree ~ ':limitOffset \{' THEN RETURN 'the query uses LIMIT or OFFSET'; END IF;
    IF tree ~ ':jointype [1-9]' THEN RETURN 'the query uses an outer join'; END IF;
    IF tree ~ ':isNatural true' THEN RETURN 'the query uses NATURAL JOIN'; END IF;
    IF tree ~ ':rtekind [3-8]' THEN RETURN 'the query reads a function, VALUES or another non-table FROM item'; END IF;
    IF tree ~ ':varattno -' THEN RETURN 'the query reads system columns'; END IF;
    IF pgtrickle.strip_nodes(tree, 'AGGREF') ~ ':resjunk true' THEN RETURN 'an ORDER BY or GROUP BY expression is not in the select list'; END IF;
    IF tree ~ '\{SETOPERATIONSTMT :op [2-9]' OR tree ~ '\{SETOPERATIONSTMT :op \d+ :all false' THEN
        RETURN 'the query uses UNION without ALL, INTERSECT or EXCEPT';
    END IF;
    -- UNION ALL branches are subqueries; any other subquery in FROM is not maintained.
    SELECT count(*) + 1 INTO branches FROM regexp_matches(tree, '\{SETOPERATIONSTMT', 'g');
    IF branches = 1 AND tree ~ ':rtekind 1 ' THEN
        RETURN 'the query has a subquery in FROM';
    END IF;
    IF branches > 1 THEN
        IF (SELECT count(*) FROM regexp_matches(tree, ':rtekind 1 ', 'g')) <> branches THEN
            RETURN 'the query has a subquery in FROM';
        END IF;
        IF tree ~ ':hasAggs true' OR tree ~ ':groupClause \(' OR tree ~ ':distinctClause \(' THEN
            RETURN 'a UNION ALL branch aggregates or uses DISTINCT';
        END IF;
    END IF;
    IF tree ~ ':hasAggs true' AND tree !~ ':groupClause \(' THEN
        RETURN 'the query aggregates without GROUP BY';
    END IF;
    -- Stored rows are found by a hash of their values (or of their group key).
    SELECT string_agg(format('NULL::%s', format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) INTO found
      FROM pg_attribute a WHERE a.attrelid = view_oid AND a.attnum > 0 AND NOT a.attisdropped;
    BEGIN
        EXECUTE format('SELECT hash_record_extended(ROW(%s), 0)', found);
    EXCEPTION WHEN OTHERS THEN
        RETURN 'a result column has a type without a hash function: ' || SQLERRM;
    END;
    RETURN NULL;
END
$fn$;

-- Validates and normalises a stream table's query and decides its refresh mode: creates the
-- temporary view pg_temp.pgt_validate_query (the caller creates storage from it and drops it), and
-- returns the normalised text, the effective mode and why it differs from the requested one.
-- Raises for an invalid query and for a DIFFERENTIAL request the query cannot meet.
CREATE FUNCTION pgtrickle.prepare_query(label text, query text, mode text,
        OUT view_oid oid, OUT normalized text, OUT effective text, OUT reason text)
    LANGUAGE plpgsql
AS $fn$
DECLARE
    tree text;
    top  text;
    path text;
BEGIN
    -- PostgreSQL validates and normalises the query.
    BEGIN
        EXECUTE format('CREATE TEMPORARY VIEW pgt_validate_query AS %s', query);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'pgtrickle: invalid query for stream table %: %', label, SQLERRM USING ERRCODE = SQLSTATE;
    END;
    view_oid := 'pg_temp.pgt_validate_query'::regclass;
    -- Deparsed with only pg_catalog on the search path, every other name comes out schema-qualified:
    -- the engine's sessions resolve the query the way the creating session did.
    path := current_setting('search_path');
    PERFORM set_config('search_path', 'pg_catalog', true);
    normalized := pg_get_viewdef(view_oid, true);
    PERFORM set_config('search_path', path, true);
    normalized := rtrim(btrim(normalized), ';');

    IF EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = view_oid AND a.attnum > 0 AND a.attname LIKE '\_\_pgt\_%') THEN
        RAISE EXCEPTION 'pgtrickle: column names starting with __pgt_ are reserved' USING ERRCODE = 'reserved_name';
    END IF;
    IF EXISTS (SELECT FROM pgtrickle.query_sources(view_oid) s JOIN pg_class c ON c.oid = s.relid WHERE c.relpersistence = 't') THEN
        RAISE EXCEPTION 'pgtrickle: a stream table cannot read temporary tables' USING ERRCODE = 'feature_not_supported';
    END IF;

    -- The top-level query's clauses are the last ones in the rewritten query tree.
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = view_oid;
    top := substring(tree FROM '.*(:sortClause .*)$');
    IF top ~ '^:sortClause <>' AND top !~ ':limitOffset <> :limitCount <>' THEN
        RAISE EXCEPTION 'pgtrickle: LIMIT or OFFSET without ORDER BY is not allowed in a stream table query'
            USING ERRCODE = 'feature_not_supported', HINT = 'Add an ORDER BY that makes the result deterministic.';
    END IF;

    reason := pgtrickle.differential_blocker(view_oid);
    IF mode = 'DIFFERENTIAL' AND reason IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: DIFFERENTIAL refresh cannot maintain this query: %', reason
            USING ERRCODE = 'feature_not_supported', HINT = 'Use refresh_mode => ''AUTO'' or ''FULL''.';
    END IF;
    effective := CASE WHEN mode = 'FULL' OR reason IS NOT NULL THEN 'FULL' ELSE 'DIFFERENTIAL' END;
    IF mode = 'FULL' THEN
        reason := NULL;
    END IF;

END
$fn$;

-- A new stream table's sources (those of its validated query's view): recorded as its
-- dependencies, and the tables among them captured for it from now on.
CREATE FUNCTION pgtrickle.record_dependencies(pgt_id bigint, view_oid oid) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    src record;
BEGIN
    FOR src IN SELECT * FROM pgtrickle.query_sources(view_oid) LOOP
        INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_type, source_stable_name)
        VALUES (record_dependencies.pgt_id, src.relid, src.source_type, pgtrickle.source_stable_name(src.relid::regclass));
        IF src.source_type IN ('TABLE', 'STREAM_TABLE') THEN
            PERFORM pgtrickle.ensure_change_capture(src.relid::regclass, record_dependencies.pgt_id);
        END IF;
    END LOOP;
END
$fn$;

-- A stream table's catalog row removed, with its change capture and running totals; its storage
-- is the caller's to drop.
CREATE FUNCTION pgtrickle.forget_stream_table(st pgtrickle.pgt_stream_tables) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    dep record;
BEGIN
    FOR dep IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE') LOOP
        PERFORM pgtrickle.release_change_capture(dep.source_relid::regclass, st.pgt_id);
    END LOOP;
    DELETE FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id;
    IF st.state_table IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', st.state_table);
    END IF;
END
$fn$;

CREATE FUNCTION pgtrickle.create_stream_table(
        name text, query text, schedule text DEFAULT '1s', refresh_mode text DEFAULT 'AUTO', initialize boolean DEFAULT true)
    RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    n          record;
    mode       text := upper(btrim(refresh_mode));
    prep       record;
    view_oid   oid;
    relid      oid;
    id         bigint;
BEGIN
    IF name IS NULL OR query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'pgtrickle: create_stream_table needs a name and a query' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    n := pgtrickle.split_name(name);
    IF mode IS NULL OR mode NOT IN ('AUTO', 'FULL', 'DIFFERENTIAL') THEN
        RAISE EXCEPTION 'pgtrickle: invalid refresh_mode ''%''', refresh_mode
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use AUTO, FULL or DIFFERENTIAL.';
    END IF;
    PERFORM pgtrickle.parse_schedule(schedule);
    IF to_regclass(format('%I.%I', n.schema_name, n.table_name)) IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: relation "%.%" already exists', n.schema_name, n.table_name USING ERRCODE = 'duplicate_table';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = n.schema_name) THEN
        RAISE EXCEPTION 'pgtrickle: schema "%" does not exist', n.schema_name USING ERRCODE = 'invalid_schema_name';
    END IF;

    prep := pgtrickle.prepare_query(name, query, mode);
    view_oid := prep.view_oid;

    EXECUTE format('CREATE TABLE %I.%I AS SELECT * FROM pg_temp.pgt_validate_query WITH NO DATA', n.schema_name, n.table_name);
    relid := format('%I.%I', n.schema_name, n.table_name)::regclass;
    PERFORM pgtrickle.guard_stream_table(relid);

    INSERT INTO pgtrickle.pgt_stream_tables
           (pgt_relid, pgt_name, pgt_schema, defining_query, original_query, schedule, refresh_mode,
            requested_refresh_mode, refresh_mode_reason, effective_refresh_mode, status)
    VALUES (relid, n.table_name, n.schema_name, prep.normalized, query, lower(btrim(schedule)), prep.effective,
            mode, prep.reason, prep.effective, 'ACTIVE')
    RETURNING pgt_id INTO id;

    PERFORM pgtrickle.record_dependencies(id, view_oid);
    DROP VIEW pg_temp.pgt_validate_query;

    IF initialize THEN
        PERFORM pgtrickle.run_refresh(id, 'INITIAL');
    END IF;
END
$fn$;

CREATE FUNCTION pgtrickle.drop_stream_table(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st  pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
BEGIN
    PERFORM FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id FOR UPDATE;
    -- an evolution in progress goes first, with its shadow (0.33.0-evolution.sql)
    PERFORM pgtrickle.end_evolution(e.evolution_id, 'cancelled', 'the stream table was dropped')
       FROM pgtrickle.pgt_evolutions e WHERE e.pgt_id = st.pgt_id AND e.status = 'in_progress';
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = st.pgt_relid) THEN
        RAISE EXCEPTION 'pgtrickle: stream table % is read by other stream tables (%)', name,
            (SELECT string_agg(format('%I.%I', s.pgt_schema, s.pgt_name), ', ')
               FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = d.pgt_id
              WHERE d.source_relid = st.pgt_relid)
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Drop those first.';
    END IF;
    PERFORM pgtrickle.forget_stream_table(st);
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', st.pgt_schema, st.pgt_name);
END
$fn$;

CREATE FUNCTION pgtrickle.refresh_stream_table(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgtrickle.run_refresh((pgtrickle.find_stream_table(name)).pgt_id, 'MANUAL');
END
$fn$;

CREATE FUNCTION pgtrickle.resume_stream_table(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
BEGIN
    UPDATE pgtrickle.pgt_stream_tables s
       SET status = 'ACTIVE', consecutive_errors = 0, updated_at = now()
     WHERE s.pgt_id = st.pgt_id;
END
$fn$;

-- Stream tables the scheduler should refresh now, in creation order (the engine orders a tick's
-- refreshes upstream first): unpopulated or to be rebuilt ones, those past their schedule, and
-- 'calculated' ones with pending source changes.
--
-- The scheduler calls this every tick, so the pending check is made cheap when nothing changed:
-- first one probe per captured source of a 'calculated' stream table (does its buffer hold any row
-- at all? buffers are pruned as their consumers pass them, so an idle one is empty), then a check
-- against each consumer's frontier only for sources whose buffer holds rows. Checking every
-- (stream table, source) pair with a count took about 0.1 ms each: 2 ms a tick for 20 idle stream
-- tables, a third of a CPU at a 10 ms tick (docs/benchmarks/subscriptions.md).
CREATE FUNCTION pgtrickle.due_stream_tables() RETURNS TABLE (pgt_id bigint, name text)
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    source oid;
    busy   oid[] := '{}';
BEGIN
    -- a loop, not a WHERE on the DISTINCT: the planner would push that condition below the
    -- DISTINCT and probe once per stream table again
    FOR source IN SELECT DISTINCT d.source_relid
                    FROM pgtrickle.pgt_stream_tables s JOIN pgtrickle.pgt_dependencies d ON d.pgt_id = s.pgt_id
                   WHERE s.status = 'ACTIVE' AND s.shadow_of IS NULL AND s.is_populated AND NOT s.needs_reinit
                     AND pgtrickle.parse_schedule(s.schedule) IS NULL
                     AND d.source_type IN ('TABLE', 'STREAM_TABLE') LOOP
        IF pgtrickle.has_pending_changes(source::regclass, NULL) THEN
            busy := busy || source;
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT s.pgt_id, format('%I.%I', s.pgt_schema, s.pgt_name)
      FROM pgtrickle.pgt_stream_tables s
     WHERE s.status = 'ACTIVE' AND s.shadow_of IS NULL -- shadows are refreshed by their evolution
       AND (NOT s.is_populated OR s.needs_reinit
            OR (pgtrickle.parse_schedule(s.schedule) IS NOT NULL
                AND (s.last_refresh_at IS NULL OR s.last_refresh_at + pgtrickle.parse_schedule(s.schedule) <= now()))
            OR (pgtrickle.parse_schedule(s.schedule) IS NULL
                AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                             WHERE d.pgt_id = s.pgt_id
                               AND (d.source_type NOT IN ('TABLE', 'STREAM_TABLE')
                                    OR (d.source_relid = ANY (busy)
                                        AND pgtrickle.has_pending_changes(d.source_relid::regclass,
                                                                          (s.frontier ->> 'snapshot')::pg_snapshot))))))
     ORDER BY s.pgt_id;
END
$fn$;

CREATE FUNCTION pgtrickle.pgt_status()
    RETURNS TABLE (name text, status text, refresh_mode text, is_populated boolean, consecutive_errors integer,
                   schedule text, data_timestamp timestamptz, staleness interval, last_error_message text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT format('%I.%I', s.pgt_schema, s.pgt_name), s.status, s.refresh_mode, s.is_populated, s.consecutive_errors,
           s.schedule, s.data_timestamp, now() - s.data_timestamp, s.last_error_message
      FROM pgtrickle.pgt_stream_tables s WHERE s.shadow_of IS NULL ORDER BY s.pgt_schema, s.pgt_name
$fn$;

CREATE FUNCTION pgtrickle.get_refresh_history(name text, max_rows integer DEFAULT 20)
    RETURNS TABLE (refresh_id bigint, data_timestamp timestamptz, start_time timestamptz, end_time timestamptz,
                   action text, status text, rows_inserted bigint, rows_deleted bigint, duration_ms double precision,
                   error_message text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT h.refresh_id, h.data_timestamp, h.start_time, h.end_time, h.action, h.status, h.rows_inserted,
           h.rows_deleted, extract(epoch FROM h.end_time - h.start_time) * 1000, h.error_message
      FROM pgtrickle.pgt_refresh_history h
     WHERE h.pgt_id = (pgtrickle.find_stream_table(name)).pgt_id
     ORDER BY h.refresh_id DESC
     LIMIT max_rows
$fn$;

-- The mode asked for, the mode that runs, and why they differ.
CREATE FUNCTION pgtrickle.explain_refresh_mode(name text)
    RETURNS TABLE (configured_mode text, effective_mode text, downgrade_reason text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT s.requested_refresh_mode, s.refresh_mode, s.refresh_mode_reason
      FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = (pgtrickle.find_stream_table(name)).pgt_id
$fn$;
