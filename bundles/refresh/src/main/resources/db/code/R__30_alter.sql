-- alter_stream_table (unit io.pgtrickle.refresh, repeatable): pg_trickle's name and arguments,
-- NULL = unchanged. Runs in the caller's transaction like every other API function: an error leaves
-- the stream table as it was.

-- notify_coalesce_ms: the stream table's own NOTIFY coalescing window (0 = off); a negative value
-- removes it, so pg_trickle.notify_coalesce_ms applies again.
-- shadow_build: the new query is built beside the live table and swapped in when it has caught up
-- (the evolution unit, which must be installed) instead of being rebuilt in place.
CREATE OR REPLACE FUNCTION pgtrickle.alter_stream_table(name text, query text DEFAULT NULL, schedule text DEFAULT NULL,
        refresh_mode text DEFAULT NULL, status text DEFAULT NULL, notify_coalesce_ms integer DEFAULT NULL,
        shadow_build boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st        pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
    mode      text := upper(btrim(coalesce(refresh_mode, st.requested_refresh_mode)));
    new_state text := upper(btrim(status));
    prep      record;
    same      boolean;
    relid     oid;
    src       record;
BEGIN
    -- one change at a time per stream table, and never under a running refresh
    SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id FOR UPDATE;
    IF mode NOT IN ('AUTO', 'FULL', 'DIFFERENTIAL') THEN
        RAISE EXCEPTION 'pgtrickle: invalid refresh_mode ''%''', refresh_mode
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use AUTO, FULL or DIFFERENTIAL.';
    END IF;
    IF status IS NOT NULL AND new_state NOT IN ('ACTIVE', 'SUSPENDED') THEN
        RAISE EXCEPTION 'pgtrickle: invalid status ''%''', status
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ACTIVE or SUSPENDED.';
    END IF;
    IF schedule IS NOT NULL THEN
        PERFORM pgtrickle.parse_schedule(schedule);
    END IF;
    shadow_build := coalesce(shadow_build, false);
    IF shadow_build AND query IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: shadow_build needs a new query' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (a second shadow build is start_evolution's to refuse, with the running one's details)
    IF st.in_shadow_build AND NOT shadow_build AND (query IS NOT NULL OR refresh_mode IS NOT NULL) THEN
        RAISE EXCEPTION 'pgtrickle: an evolution of % is in progress: its query and refresh mode cannot change meanwhile', name
            USING ERRCODE = 'object_in_use',
                  HINT = format('Wait for it (pgtrickle.view_evolution_status(%L)) or cancel it (pgtrickle.cancel_evolution(%L)).', name, name);
    END IF;

    IF shadow_build THEN
        -- the one call into another unit: an evolution is the evolution unit's to run, and without
        -- it nobody would drive one to its swap
        IF NOT EXISTS (SELECT FROM pgtrickle.pgt_schema_unit u WHERE u.unit = 'io.pgtrickle.evolution' AND u.state = 'READY') THEN
            RAISE EXCEPTION 'pgtrickle: shadow_build needs the evolution bundle (io.pgtrickle.evolution), which is not installed on this database'
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Install it (Karaf feature pgtrickle-evolution), or alter the query in place without shadow_build.';
        END IF;
        PERFORM pgtrickle.start_evolution(name, query, refresh_mode);
    ELSIF query IS NOT NULL THEN
        IF btrim(query) = '' THEN
            RAISE EXCEPTION 'pgtrickle: alter_stream_table needs a non-empty query' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        prep := pgtrickle.prepare_query(name, query, mode);
        -- The storage is kept when the result columns are the same (names, types, order): the
        -- rebuild then rewrites only the rows that differ, and indexes, grants and readers of the
        -- table are untouched. Otherwise it is replaced, which a stream table read by other stream
        -- tables cannot be.
        SELECT coalesce(array_agg((a.attname, a.atttypid, a.atttypmod)::text ORDER BY a.attnum), '{}')
                 = (SELECT coalesce(array_agg((b.attname, b.atttypid, b.atttypmod)::text ORDER BY b.attnum), '{}')
                      FROM pg_attribute b WHERE b.attrelid = st.pgt_relid AND b.attnum > 0 AND NOT b.attisdropped)
          INTO same
          FROM pg_attribute a WHERE a.attrelid = prep.view_oid AND a.attnum > 0 AND NOT a.attisdropped;
        relid := st.pgt_relid;
        IF NOT same THEN
            IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = st.pgt_relid) THEN
                RAISE EXCEPTION 'pgtrickle: the new query of % changes its columns, and other stream tables read it (%)', name,
                    (SELECT string_agg(format('%I.%I', s.pgt_schema, s.pgt_name), ', ')
                       FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = d.pgt_id
                      WHERE d.source_relid = st.pgt_relid)
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = 'Keep the columns as they are, or drop the dependent stream tables first.';
            END IF;
            RAISE NOTICE 'pgtrickle: the new query of % changes its columns: the table is re-created (its indexes, grants and comments are not kept)', name;
            EXECUTE format('DROP TABLE %I.%I', st.pgt_schema, st.pgt_name);
            EXECUTE format('CREATE TABLE %I.%I AS SELECT * FROM pg_temp.pgt_validate_query WITH NO DATA', st.pgt_schema, st.pgt_name);
            relid := format('%I.%I', st.pgt_schema, st.pgt_name)::regclass;
            PERFORM pgtrickle.guard_stream_table(relid);
        END IF;

        -- capture: sources the new query reads first, then release the ones it no longer reads
        FOR src IN SELECT * FROM pgtrickle.query_sources(prep.view_oid) LOOP
            INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_type, source_stable_name)
            VALUES (st.pgt_id, src.relid, src.source_type, pgtrickle.source_stable_name(src.relid::regclass))
            ON CONFLICT (pgt_id, source_relid) DO UPDATE SET source_type = EXCLUDED.source_type;
            IF src.source_type IN ('TABLE', 'STREAM_TABLE') THEN
                PERFORM pgtrickle.ensure_change_capture(src.relid::regclass, st.pgt_id);
            END IF;
        END LOOP;
        FOR src IN SELECT d.source_relid, d.source_type FROM pgtrickle.pgt_dependencies d
                    WHERE d.pgt_id = st.pgt_id
                      AND d.source_relid NOT IN (SELECT q.relid FROM pgtrickle.query_sources(prep.view_oid) q) LOOP
            IF src.source_type IN ('TABLE', 'STREAM_TABLE') THEN
                PERFORM pgtrickle.release_change_capture(src.source_relid::regclass, st.pgt_id);
            END IF;
            DELETE FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id AND d.source_relid = src.source_relid;
        END LOOP;
        DROP VIEW pg_temp.pgt_validate_query;

        -- the next refresh (right below) recomputes in full; the engine plans the new query
        IF st.state_table IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', st.state_table);
        END IF;
        UPDATE pgtrickle.pgt_stream_tables s
           SET pgt_relid = relid, defining_query = prep.normalized, original_query = alter_stream_table.query,
               refresh_mode = prep.effective, effective_refresh_mode = prep.effective, requested_refresh_mode = mode,
               refresh_mode_reason = prep.reason, delta_sql = NULL, state_table = NULL, state_sql = NULL,
               frontier = NULL, is_populated = false,
               needs_reinit = true, updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
    ELSIF refresh_mode IS NOT NULL AND NOT shadow_build THEN
        -- a new mode for the same query: classified again
        prep := pgtrickle.prepare_query(name, st.defining_query, mode);
        DROP VIEW pg_temp.pgt_validate_query;
        -- switching mode drops the plan (and any running totals); the engine plans again if needed
        IF prep.effective <> st.refresh_mode AND st.state_table IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', st.state_table);
        END IF;
        UPDATE pgtrickle.pgt_stream_tables s
           SET refresh_mode = prep.effective, effective_refresh_mode = prep.effective, requested_refresh_mode = mode,
               refresh_mode_reason = prep.reason,
               delta_sql = CASE WHEN prep.effective = s.refresh_mode THEN s.delta_sql END,
               state_table = CASE WHEN prep.effective = s.refresh_mode THEN s.state_table END,
               state_sql = CASE WHEN prep.effective = s.refresh_mode THEN s.state_sql END, updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
    END IF;

    IF schedule IS NOT NULL THEN
        UPDATE pgtrickle.pgt_stream_tables s SET schedule = lower(btrim(alter_stream_table.schedule)), updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
    END IF;
    IF notify_coalesce_ms IS NOT NULL THEN
        UPDATE pgtrickle.pgt_stream_tables s
           SET notify_coalesce_ms = CASE WHEN alter_stream_table.notify_coalesce_ms >= 0 THEN alter_stream_table.notify_coalesce_ms END,
               updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
    END IF;
    IF new_state IS NOT NULL THEN
        UPDATE pgtrickle.pgt_stream_tables s
           SET status = new_state,
               consecutive_errors = CASE WHEN new_state = 'ACTIVE' THEN 0 ELSE s.consecutive_errors END, updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
    END IF;

    IF query IS NOT NULL AND NOT shadow_build AND coalesce(new_state, st.status) <> 'SUSPENDED' THEN
        PERFORM pgtrickle.run_refresh(st.pgt_id, 'MANUAL');
    END IF;
END
$fn$;
