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
CREATE FUNCTION pgtrickle.full_refresh_sql(st pgtrickle.pgt_stream_tables) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    target text := format('%I.%I', st.pgt_schema, st.pgt_name);
    cols   text;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_attribute a WHERE a.attrelid = st.pgt_relid AND a.attnum > 0 AND NOT a.attisdropped;
    RETURN format($sql$
        WITH next_rows AS (
                 SELECT ROW(q.*)::text AS __pgt_key, q.* FROM (%1$s) q),
             next_counts AS (
                 SELECT __pgt_key, count(*) AS __pgt_n FROM next_rows GROUP BY __pgt_key),
             current_counts AS (
                 SELECT ROW(%2$s)::text AS __pgt_key, count(*) AS __pgt_n FROM %3$s GROUP BY 1),
             diff AS (
                 SELECT __pgt_key, coalesce(nc.__pgt_n, 0) - coalesce(cc.__pgt_n, 0) AS __pgt_d
                   FROM next_counts nc FULL JOIN current_counts cc USING (__pgt_key)
                  WHERE coalesce(nc.__pgt_n, 0) <> coalesce(cc.__pgt_n, 0)),
             deleted AS (
                 DELETE FROM %3$s t USING (
                     SELECT c.ctid AS __pgt_victim FROM (
                         SELECT ctid, ROW(%2$s)::text AS __pgt_key,
                                row_number() OVER (PARTITION BY ROW(%2$s)::text) AS __pgt_copy
                           FROM %3$s) c
                       JOIN diff ON diff.__pgt_key = c.__pgt_key AND diff.__pgt_d < 0 AND c.__pgt_copy <= -diff.__pgt_d) v
                  WHERE t.ctid = v.__pgt_victim
                 RETURNING 1),
             inserted AS (
                 INSERT INTO %3$s (%2$s)
                 SELECT %2$s FROM (SELECT DISTINCT ON (__pgt_key) * FROM next_rows ORDER BY __pgt_key) r
                   JOIN diff ON diff.__pgt_key = r.__pgt_key AND diff.__pgt_d > 0
                  CROSS JOIN LATERAL generate_series(1, diff.__pgt_d)
                 RETURNING 1)
        -- deleted first: the old copy of a row must be gone before its new copy is inserted, or a
        -- unique index on the stream table rejects the new copy (initplans run in this order)
        SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM inserted), pg_current_snapshot()::text
        $sql$, st.defining_query, cols, target);
END
$fn$;

-- Refreshes one stream table in the caller's transaction and returns the refresh history id.
-- Refused for a SUSPENDED stream table and for one whose source was dropped.
-- wait = false: when another session is refreshing it, return NULL at once (the scheduler's way
-- of never refreshing one stream table twice at the same time, across containers).
CREATE FUNCTION pgtrickle.run_refresh(pgt_id bigint, initiated_by text, wait boolean DEFAULT true) RETURNS bigint
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

    IF pending = 0 AND snapshot IS NOT NULL THEN
        act := 'NO_DATA';
    ELSE
        act := 'FULL';
        EXECUTE pgtrickle.full_refresh_sql(st) INTO del, ins, snapshot;
    END IF;

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
           (pgt_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted, delta_row_count, status, initiated_by)
    VALUES (st.pgt_id, now(), started, clock_timestamp(), act, ins, del, ins + del, 'COMPLETED', run_refresh.initiated_by)
    RETURNING refresh_id INTO id;

    UPDATE pgtrickle.pgt_stream_tables s
       SET frontier = jsonb_build_object('snapshot', snapshot),
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

CREATE FUNCTION pgtrickle.create_stream_table(
        name text, query text, schedule text DEFAULT '1s', refresh_mode text DEFAULT 'AUTO', initialize boolean DEFAULT true)
    RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    n          record;
    mode       text := upper(btrim(refresh_mode));
    view_oid   oid;
    normalized text;
    tree       text;
    top        text;
    volatile   text;
    reason     text;
    relid      oid;
    id         bigint;
    src        record;
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

    -- PostgreSQL validates and normalises the query: a temporary view, dropped before we return.
    BEGIN
        EXECUTE format('CREATE TEMPORARY VIEW pgt_validate_query AS %s', query);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'pgtrickle: invalid query for stream table %: %', name, SQLERRM USING ERRCODE = SQLSTATE;
    END;
    view_oid := 'pg_temp.pgt_validate_query'::regclass;
    normalized := pg_get_viewdef(view_oid, true);
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

    -- Every function the query calls, read from the query tree (pg_depend does not record
    -- built-in functions such as random(), which are pinned).
    SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO volatile
      FROM regexp_matches(tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') AS m(f)
      JOIN pg_proc p ON p.oid = m.f[1]::oid
     WHERE p.provolatile = 'v';

    IF mode = 'DIFFERENTIAL' THEN
        IF volatile IS NOT NULL THEN
            RAISE EXCEPTION 'pgtrickle: DIFFERENTIAL refresh cannot maintain a query that calls volatile functions (%)', volatile
                USING ERRCODE = 'feature_not_supported', HINT = 'Use refresh_mode => ''FULL''.';
        END IF;
        RAISE EXCEPTION 'pgtrickle: DIFFERENTIAL refresh is not available in this version; stream tables are refreshed FULL'
            USING ERRCODE = 'feature_not_supported', HINT = 'Use refresh_mode => ''AUTO'' or ''FULL''.';
    ELSIF mode = 'AUTO' THEN
        reason := CASE WHEN volatile IS NOT NULL THEN 'the query calls volatile functions (' || volatile || ')'
                       ELSE 'differential maintenance is not available in this version' END;
    END IF;

    EXECUTE format('CREATE TABLE %I.%I AS SELECT * FROM pg_temp.pgt_validate_query WITH NO DATA', n.schema_name, n.table_name);
    relid := format('%I.%I', n.schema_name, n.table_name)::regclass;

    INSERT INTO pgtrickle.pgt_stream_tables
           (pgt_relid, pgt_name, pgt_schema, defining_query, original_query, schedule, refresh_mode,
            requested_refresh_mode, refresh_mode_reason, effective_refresh_mode, status)
    VALUES (relid, n.table_name, n.schema_name, normalized, query, lower(btrim(schedule)), 'FULL',
            mode, reason, 'FULL', 'ACTIVE')
    RETURNING pgt_id INTO id;

    FOR src IN SELECT * FROM pgtrickle.query_sources(view_oid) LOOP
        INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_type, source_stable_name)
        VALUES (id, src.relid, src.source_type, pgtrickle.source_stable_name(src.relid::regclass));
        IF src.source_type IN ('TABLE', 'STREAM_TABLE') THEN
            PERFORM pgtrickle.ensure_change_capture(src.relid::regclass, id);
        END IF;
    END LOOP;
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
    dep record;
BEGIN
    PERFORM FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id FOR UPDATE;
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = st.pgt_relid) THEN
        RAISE EXCEPTION 'pgtrickle: stream table % is read by other stream tables (%)', name,
            (SELECT string_agg(format('%I.%I', s.pgt_schema, s.pgt_name), ', ')
               FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = d.pgt_id
              WHERE d.source_relid = st.pgt_relid)
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Drop those first.';
    END IF;
    FOR dep IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE') LOOP
        PERFORM pgtrickle.release_change_capture(dep.source_relid::regclass, st.pgt_id);
    END LOOP;
    DELETE FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id;
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

-- Stream tables the scheduler should refresh now, in creation order (dependency order comes with
-- stream tables on stream tables).
CREATE FUNCTION pgtrickle.due_stream_tables() RETURNS TABLE (pgt_id bigint, name text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT s.pgt_id, format('%I.%I', s.pgt_schema, s.pgt_name)
      FROM pgtrickle.pgt_stream_tables s
     WHERE s.status = 'ACTIVE'
       AND (NOT s.is_populated
            OR (pgtrickle.parse_schedule(s.schedule) IS NOT NULL
                AND (s.last_refresh_at IS NULL OR s.last_refresh_at + pgtrickle.parse_schedule(s.schedule) <= now()))
            OR (pgtrickle.parse_schedule(s.schedule) IS NULL
                AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                             WHERE d.pgt_id = s.pgt_id
                               AND (d.source_type NOT IN ('TABLE', 'STREAM_TABLE')
                                    OR pgtrickle.pending_change_count(d.source_relid::regclass, (s.frontier ->> 'snapshot')::pg_snapshot) > 0))))
     ORDER BY s.pgt_id
$fn$;

CREATE FUNCTION pgtrickle.pgt_status()
    RETURNS TABLE (name text, status text, refresh_mode text, is_populated boolean, consecutive_errors integer,
                   schedule text, data_timestamp timestamptz, staleness interval, last_error_message text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT format('%I.%I', s.pgt_schema, s.pgt_name), s.status, s.refresh_mode, s.is_populated, s.consecutive_errors,
           s.schedule, s.data_timestamp, now() - s.data_timestamp, s.last_error_message
      FROM pgtrickle.pgt_stream_tables s ORDER BY s.pgt_schema, s.pgt_name
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
