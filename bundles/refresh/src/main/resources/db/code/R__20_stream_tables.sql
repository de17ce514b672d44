-- The stream-table SQL API (unit io.pgtrickle.refresh, repeatable): create, drop, resume, status,
-- history, and the query analysis create and alter share.

-- 'name' or 'schema.name' (quoted identifiers allowed) -> (schema, name); bare names are created
-- in and looked up from the first schema of the search_path.
CREATE OR REPLACE FUNCTION pgtrickle.split_name(name text, OUT schema_name text, OUT table_name text)
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
CREATE OR REPLACE FUNCTION pgtrickle.find_stream_table(name text) RETURNS pgtrickle.pgt_stream_tables
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

-- 'calculated' -> NULL (refresh when a source changed); '100ms', '1s', '5m', '1h30m', '2d' -> interval.
CREATE OR REPLACE FUNCTION pgtrickle.parse_schedule(schedule text) RETURNS interval
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

-- A query tree (nodeToString text) without its nodes of one kind, e.g. AGGREF: their insides (an
-- aggregate's own argument list) say nothing about the query's shape. Braces inside tokens are
-- backslash-escaped by nodeToString, so counting the others finds a node's end.
CREATE OR REPLACE FUNCTION pgtrickle.strip_nodes(tree text, kind text) RETURNS text
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

-- Validates and normalises a stream table's query and decides its refresh mode: creates the
-- temporary view pg_temp.pgt_validate_query (the caller creates storage from it and drops it), and
-- returns the normalised text, the effective mode and why it differs from the requested one.
-- Raises for an invalid query and for a DIFFERENTIAL request the query cannot meet.
CREATE OR REPLACE FUNCTION pgtrickle.prepare_query(label text, query text, mode text,
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
CREATE OR REPLACE FUNCTION pgtrickle.record_dependencies(pgt_id bigint, view_oid oid) RETURNS void
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

CREATE OR REPLACE FUNCTION pgtrickle.create_stream_table(
        name text, query text, schedule text DEFAULT 'calculated', refresh_mode text DEFAULT 'AUTO', initialize boolean DEFAULT true)
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

CREATE OR REPLACE FUNCTION pgtrickle.drop_stream_table(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st  pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
BEGIN
    PERFORM FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id FOR UPDATE;
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = st.pgt_relid) THEN
        RAISE EXCEPTION 'pgtrickle: stream table % is read by other stream tables (%)', name,
            (SELECT string_agg(format('%I.%I', s.pgt_schema, s.pgt_name), ', ')
               FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = d.pgt_id
              WHERE d.source_relid = st.pgt_relid)
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Drop those first.';
    END IF;
    -- an evolution in progress goes with its catalog row, and its shadow with it (the evolution
    -- unit's trigger on pgt_evolutions)
    PERFORM pgtrickle.forget_stream_table(st);
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', st.pgt_schema, st.pgt_name);
END
$fn$;

-- A stream table's catalog row removed, with its change capture, running totals and the function
-- that refreshes it as its owner; its storage is the caller's to drop.
CREATE OR REPLACE FUNCTION pgtrickle.forget_stream_table(st pgtrickle.pgt_stream_tables) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    dep record;
BEGIN
    -- an ONLY TABLE source is not captured for this stream table, unless it was captured before
    -- an alter_stream_table made the query read it with ONLY: releasing what is not held is a no-op
    FOR dep IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE', 'ONLY TABLE') LOOP
        PERFORM pgtrickle.release_change_capture(dep.source_relid::regclass, st.pgt_id);
    END LOOP;
    DELETE FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id;
    IF st.state_table IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', st.state_table);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS %I.%I(text, pg_snapshot)', st.pgt_schema, 'pgt_' || st.pgt_id || '_refresh');
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.resume_stream_table(name text) RETURNS void
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

-- How far behind its sources the data of a stream table is: none while no captured change past its
-- frontier is pending (a 'calculated' stream table nothing has written to is current, however long
-- ago its last refresh was), else the time since the data it shows was computed. A stream table
-- whose result moves without captured changes (a view, materialized view or foreign table among its
-- sources, or a query reading the clock) is as old as its last refresh. NULL before the first one.
-- Measured against its own sources: a stream table over a lagging stream table is only as current
-- as that one (look at both).
CREATE OR REPLACE FUNCTION pgtrickle.staleness(st pgtrickle.pgt_stream_tables) RETURNS interval
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    since pg_snapshot;
BEGIN
    IF NOT st.is_populated OR st.data_timestamp IS NULL THEN
        RETURN NULL;
    END IF;
    IF st.needs_reinit OR st.recompute_reason IS NOT NULL OR NOT coalesce(st.frontier ? 'snapshot', false)
       OR EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                   WHERE d.pgt_id = st.pgt_id
                     AND (d.source_type NOT IN ('TABLE', 'STREAM_TABLE') OR pgtrickle.change_buffer(d.source_relid::regclass) IS NULL)) THEN
        RETURN now() - st.data_timestamp;
    END IF;
    since := pgtrickle.oldest_frontier(st.frontier);
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = st.pgt_id AND pgtrickle.has_pending_changes(d.source_relid::regclass, since)) THEN
        RETURN now() - st.data_timestamp;
    END IF;
    RETURN interval '0';
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.pgt_status()
    RETURNS TABLE (name text, status text, refresh_mode text, is_populated boolean, consecutive_errors integer,
                   schedule text, data_timestamp timestamptz, staleness interval, last_error_message text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT format('%I.%I', s.pgt_schema, s.pgt_name), s.status, s.refresh_mode, s.is_populated, s.consecutive_errors,
           s.schedule, s.data_timestamp, pgtrickle.staleness(s), s.last_error_message
      FROM pgtrickle.pgt_stream_tables s WHERE s.shadow_of IS NULL ORDER BY s.pgt_schema, s.pgt_name
$fn$;

-- fallback_reason (0.34.0, last, so that reading the others by name or position is as before): why a
-- differentially maintained stream table ran FULL this once. A new result column needs the old
-- function dropped first.
DO $$
BEGIN
    IF to_regprocedure('pgtrickle.get_refresh_history(text, integer)') IS NOT NULL
       AND pg_get_function_result('pgtrickle.get_refresh_history(text, integer)'::regprocedure) NOT LIKE '%fallback_reason%' THEN
        DROP FUNCTION pgtrickle.get_refresh_history(text, integer);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgtrickle.get_refresh_history(name text, max_rows integer DEFAULT 20)
    RETURNS TABLE (refresh_id bigint, data_timestamp timestamptz, start_time timestamptz, end_time timestamptz,
                   action text, status text, rows_inserted bigint, rows_deleted bigint, duration_ms double precision,
                   error_message text, fallback_reason text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT h.refresh_id, h.data_timestamp, h.start_time, h.end_time, h.action, h.status, h.rows_inserted,
           h.rows_deleted, extract(epoch FROM h.end_time - h.start_time) * 1000, h.error_message, h.fallback_reason
      FROM pgtrickle.pgt_refresh_history h
     WHERE h.pgt_id = (pgtrickle.find_stream_table(name)).pgt_id
     ORDER BY h.refresh_id DESC
     LIMIT max_rows
$fn$;

-- Whether a transaction has written captured changes of a source.
CREATE OR REPLACE FUNCTION pgtrickle.written_by(source regclass, writer xid8) RETURNS boolean
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

CREATE OR REPLACE FUNCTION pgtrickle.has_rows(storage regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    result boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', storage) INTO result;
    RETURN result;
END
$fn$;
