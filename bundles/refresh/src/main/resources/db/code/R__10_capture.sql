-- Change capture (unit io.pgtrickle.refresh, repeatable: re-applied whenever this text changes).
-- Per-source change buffers in pgtrickle_changes, filled by statement triggers (row triggers for
-- replicated rows and for sources that are themselves members), with every member of a source
-- (partitions, inheritance children) captured into the source's buffer; snapshot frontier helpers;
-- the DDL event triggers that keep captures in line with their sources.

-- The one definition of a source's stable name; the engine names buffers with it too.
CREATE OR REPLACE FUNCTION pgtrickle.source_stable_name(source regclass) RETURNS text
    LANGUAGE sql STABLE STRICT
    RETURN (SELECT substr(md5(n.nspname || '.' || c.relname), 1, 16)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = source);

-- The buffer of a source (NULL when the source is not captured).
CREATE OR REPLACE FUNCTION pgtrickle.change_buffer(source regclass) RETURNS regclass
    LANGUAGE sql STABLE STRICT
    RETURN to_regclass('pgtrickle_changes.' || quote_ident('changes_' || pgtrickle.source_stable_name(source)));

-- Starts capturing changes of a table for a consumer (a stream table's pgt_id). Idempotent per
-- consumer; the buffer, functions and triggers are created for the first consumer only. Returns
-- the buffer.
CREATE OR REPLACE FUNCTION pgtrickle.ensure_change_capture(source regclass, consumer bigint) RETURNS regclass
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stable   text := pgtrickle.source_stable_name(source);
    buffer   text := 'changes_' || stable;
    kind     "char";
BEGIN
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = source;
    IF kind IS DISTINCT FROM 'r' AND kind IS DISTINCT FROM 'p' THEN
        RAISE EXCEPTION 'pgtrickle: cannot capture changes of %: it is not a table', source
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT EXISTS (SELECT FROM pgtrickle.pgt_stream_tables WHERE pgt_id = consumer) THEN
        RAISE EXCEPTION 'pgtrickle: no stream table with pgt_id %', consumer USING ERRCODE = 'undefined_object';
    END IF;
    -- serialise concurrent set-ups and tear-downs of the same source
    PERFORM pg_advisory_xact_lock(hashtextextended('pgtrickle change capture ' || stable, 0));

    IF EXISTS (SELECT FROM pgtrickle.pgt_change_tracking WHERE source_relid = source) THEN
        UPDATE pgtrickle.pgt_change_tracking
           SET tracked_by_pgt_ids = tracked_by_pgt_ids || consumer
         WHERE source_relid = source AND NOT consumer = ANY (tracked_by_pgt_ids);
        RETURN pgtrickle.change_buffer(source);
    END IF;

    -- What writers pay for, per captured row: one heap row here and one entry in the xid index.
    -- Nothing else: no identity column (a sequence call per row; rows are a multiset, nothing
    -- orders by insertion), no CHECK (re-prepared in every statement; only the capture functions
    -- write here). The xid index is the access path for "writers not older than a frontier's
    -- xmin", which must stay cheap while a slow consumer holds many old rows back from pruning.
    -- The partial one holds the TRUNCATE markers only (none, nearly always; a row's predicate is
    -- all writers pay for it): every differential statement asks whether its window has one,
    -- which without it read the whole window once more (a quarter of TPC-H Q6's statement).
    EXECUTE format('CREATE TABLE pgtrickle_changes.%I ('
                   'xid xid8 NOT NULL DEFAULT pg_current_xact_id(), '
                   'action "char" NOT NULL, %s)', buffer, array_to_string(pgtrickle.capture_column_definitions(source), ', '));
    EXECUTE format('CREATE INDEX ON pgtrickle_changes.%I (xid)', buffer);
    EXECUTE format('CREATE INDEX %I ON pgtrickle_changes.%I (xid) WHERE action = %L', buffer || '_truncated_idx', buffer, 'T');
    PERFORM pgtrickle.create_capture_functions(source, stable);

    INSERT INTO pgtrickle.pgt_change_tracking (source_relid, tracked_by_pgt_ids, source_stable_name)
    VALUES (source, ARRAY[consumer], stable);
    PERFORM pgtrickle.sync_change_capture(source);
    RETURN pgtrickle.change_buffer(source);
END
$fn$;

-- Whether there is any (NULL `since`: whether the buffer holds any row at all). The scheduler's
-- probe: it stops at the first row, where the count reads them all.
CREATE OR REPLACE FUNCTION pgtrickle.has_pending_changes(source regclass, since pg_snapshot) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    pending boolean;
BEGIN
    EXECUTE 'SELECT EXISTS (SELECT ' || pgtrickle.pending_rows(source, since) || ')' INTO pending USING since;
    RETURN pending;
END
$fn$;

-- How many of those rows there are, as seen by the calling statement's snapshot.
CREATE OR REPLACE FUNCTION pgtrickle.pending_change_count(source regclass, since pg_snapshot) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n bigint;
BEGIN
    EXECUTE 'SELECT count(*) ' || pgtrickle.pending_rows(source, since) INTO n USING since;
    RETURN n;
END
$fn$;

-- A stream table's probe: how many captured rows past frontier `since` each of its sources has
-- (counts: source oid -> rows, for those with any; NULL when none has), their sum, and the buffers
-- holding them. A refresh with nothing to do is this and little else, so it is written for that:
-- the buffers are named from the change tracking's record (change_buffer() is three nested function
-- calls, 0.1 ms per source), and the counts are one array of scalar subqueries, which plans in two
-- thirds of the time a UNION ALL under jsonb and array aggregates took (five sources: 0.5 against
-- 0.7 ms; one source: 0.3 against 0.45 ms with the function calls). `balanced`: the buffers of
-- `buffers` whose window has as many inserted as deleted rows, the only ones whose changes can all
-- be updates that cancel (pgtrickle.relevant_buffers), counted in the same scan. `snapshot`: the one
-- the counts were taken in (pg_current_snapshot() of the counting statement), the frontier of a
-- refresh that finds nothing to do.
--
-- The counting statement is prepared once per session and set of buffers (pgtrickle_pending_<md5>),
-- the frontier its parameter: planning it was most of a refresh with nothing to do (a no-op
-- refresh of a stream table of one source took 1.0 ms, 0.57 with the plan kept; of two sources 1.25
-- and 0.6; running the statement takes about 0.02 ms a source). Its plan is generic, made once and
-- kept until a buffer changes (DDL, a TRUNCATE). It still reads each buffer by its xid index, from
-- the frontier's xmin on, as the custom plan of a literal frontier did: PostgreSQL takes an
-- inequality with a parameter to keep a third of the rows, which it reads by the index
-- (FullRefreshPlansTest; so it did for 20,000 rows in random xid order). VOLATILE: PREPARE is
-- refused in a STABLE function (so each statement in it takes a snapshot of its own, and the
-- counting one returns its own).
--
-- cap: count at most this many rows of a buffer (NULL: all). `capped` says a buffer reached it: its
-- count, the total and `balanced` are then only as far as counted, and the window has at least
-- `cap` rows, which is what a refresh that recomputes whatever the window above some size needs to
-- know (run_refresh, differential_cost_fallback's floor); counting is about 0.4 us a row.
DROP FUNCTION IF EXISTS pgtrickle.pending_changes(bigint, pg_snapshot);
CREATE OR REPLACE FUNCTION pgtrickle.pending_changes(pgt_id bigint, since pg_snapshot, cap bigint DEFAULT NULL,
                                                     OUT total bigint, OUT counts jsonb, OUT buffers text[],
                                                     OUT balanced text[], OUT snapshot text, OUT capped boolean)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    sources   oid[];
    names     regclass[];
    n         bigint[];
    statement text;
    prepared  text;
    run       text;
BEGIN
    -- a stored name that resolves to nothing (a buffer renamed in this very transaction): the long way
    SELECT array_agg(d.source_relid ORDER BY b.name::text),
           array_agg(b.name ORDER BY b.name::text)
      INTO sources, names
      FROM pgtrickle.pgt_dependencies d
      LEFT JOIN pgtrickle.pgt_change_tracking t ON t.source_relid = d.source_relid
     CROSS JOIN LATERAL (SELECT coalesce(to_regclass('pgtrickle_changes.' || quote_ident('changes_' || t.source_stable_name)),
                                         pgtrickle.change_buffer(d.source_relid::regclass)) AS name) b
     WHERE d.pgt_id = pending_changes.pgt_id;
    IF array_position(names, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: changes of % are not captured', sources[array_position(names, NULL)]::regclass
            USING ERRCODE = 'undefined_object';
    END IF;
    total := 0;
    capped := false;
    IF sources IS NULL THEN
        snapshot := pg_current_snapshot()::text;
        RETURN;
    END IF;
    -- per buffer {rows, inserted - deleted}: a two-dimensional array
    statement := 'SELECT ARRAY[' || (SELECT string_agg(format('(SELECT ARRAY[count(*), coalesce(sum(CASE action WHEN ''I'' THEN 1 WHEN ''D'' THEN -1 ELSE 0 END), 0)] FROM %s)',
                                                           CASE WHEN since IS NULL THEN b::text
                                                                ELSE format('(SELECT action FROM %s WHERE xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(xid, $1) LIMIT $2) w', b) END),
                                             ', ' ORDER BY i)
                                        FROM unnest(names) WITH ORDINALITY AS u(b, i)) || '], pg_current_snapshot()::text';
    IF since IS NULL THEN
        EXECUTE statement INTO n, snapshot;
    ELSE
        -- a prepared statement outlives a rolled back transaction and is the session's to
        -- DEALLOCATE: whether it is there is known only by running it
        prepared := 'pgtrickle_pending_' || md5(statement);
        run := format('EXECUTE %I(%L, %L)', prepared, since, cap);
        BEGIN
            EXECUTE run INTO n, snapshot;
        EXCEPTION WHEN invalid_sql_statement_name THEN
            EXECUTE format('PREPARE %I(pg_snapshot, bigint) AS %s', prepared, statement);
            EXECUTE run INTO n, snapshot;
        END;
    END IF;
    SELECT sum(n[c.i][1]), jsonb_object_agg(c.relid, n[c.i][1]) FILTER (WHERE n[c.i][1] > 0),
           array_agg(c.buffer::text ORDER BY c.i) FILTER (WHERE n[c.i][1] > 0),
           array_agg(c.buffer::text ORDER BY c.i) FILTER (WHERE n[c.i][1] > 0 AND n[c.i][2] = 0),
           coalesce(bool_or(n[c.i][1] >= cap), false)
      INTO total, counts, buffers, balanced, capped
      FROM unnest(sources, names) WITH ORDINALITY AS c(relid, buffer, i);
END
$fn$;

-- The captured rows of a source a consumer at frontier `since` has not yet consumed, as the FROM
-- and WHERE of a query that takes `since` as $1. NULL `since` (never refreshed): every row. Cheap
-- when nothing is pending: the xid index bounds the scan to writers not older than the frontier's xmin.
CREATE OR REPLACE FUNCTION pgtrickle.pending_rows(source regclass, since pg_snapshot) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    buffer regclass := pgtrickle.change_buffer(source);
BEGIN
    IF buffer IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: changes of % are not captured', source USING ERRCODE = 'undefined_object';
    END IF;
    IF since IS NULL THEN
        RETURN format('FROM %s', buffer);
    END IF;
    RETURN format('FROM %s WHERE xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(xid, $1)', buffer);
END
$fn$;

-- The oldest snapshot a stream table's frontier holds: that of its first derived table when its plan
-- has derived tables maintained from their own frontiers (R__52_derived_tables.sql: taken before the
-- stream table's own, in the same refresh), else its snapshot. Every buffered row not visible in it
-- is still needed by some part of the stream table, and none visible in it is.
CREATE OR REPLACE FUNCTION pgtrickle.oldest_frontier(frontier jsonb) RETURNS pg_snapshot
    LANGUAGE sql IMMUTABLE
    RETURN coalesce(frontier -> 'derived' ->> 0, frontier ->> 'snapshot')::pg_snapshot;

-- A frontier that counts transaction `own` as in progress: a refresh run in a transaction records
-- it so, where its snapshot counted it as committed (pg_current_snapshot() leaves the calling
-- transaction out of its in-progress list), so that what the transaction writes after the refresh
-- is still pending for the next one. A snapshot that already has it at or past its xmax is kept.
CREATE OR REPLACE FUNCTION pgtrickle.in_progress_too(frontier pg_snapshot, own xid8) RETURNS pg_snapshot
    LANGUAGE sql IMMUTABLE
    RETURN CASE WHEN coalesce(pg_visible_in_snapshot(own, frontier), false)
                THEN format('%s:%s:%s', least(pg_snapshot_xmin(frontier), own), pg_snapshot_xmax(frontier),
                            (SELECT string_agg(u.x::text, ',' ORDER BY u.x)
                               FROM (SELECT pg_snapshot_xip(frontier) AS x UNION SELECT own) u))::pg_snapshot
                ELSE frontier END;

-- A source's buffer as the change tracking records it (change_buffer() is three nested function
-- calls); change_buffer() when the recorded name resolves to nothing (renamed in this transaction).
CREATE OR REPLACE FUNCTION pgtrickle.tracked_change_buffer(source regclass) RETURNS regclass
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN coalesce((SELECT to_regclass('pgtrickle_changes.' || quote_ident('changes_' || t.source_stable_name))
                       FROM pgtrickle.pgt_change_tracking t WHERE t.source_relid = source),
                    pgtrickle.change_buffer(source));

-- The oldest xmin of the frontiers of the consumers of a source that have refreshed: every buffered
-- row whose writer is older was committed before every such frontier (or aborted), so no consumer
-- needs it. Consumers that have never refreshed do not hold rows back: their first refresh is a
-- full one. NULL when no consumer has refreshed.
CREATE OR REPLACE FUNCTION pgtrickle.change_horizon(source regclass) RETURNS xid8
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT min(pg_snapshot_xmin(pgtrickle.oldest_frontier(st.frontier)))
      FROM pgtrickle.pgt_change_tracking t
      JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = ANY (t.tracked_by_pgt_ids)
     WHERE t.source_relid = source AND st.frontier ? 'snapshot'
$fn$;

-- Deletes buffered rows every consumer has passed (pgtrickle.change_horizon). Returns rows deleted.
-- Under the engine (the refresh's setting pgtrickle.truncate_after_commit is on) a buffer every
-- consumer has passed in full is not deleted from but noted in the session's
-- pgtrickle.consumed_buffers (source OIDs; a rollback takes the note back with the refresh), for
-- truncate_consumed_change_buffers, which the engine calls once the refresh has committed: a DELETE
-- leaves every row dead in the heap and the index until a vacuum, for every probe to read past
-- (after a burst, millions), and takes as long as the refresh itself; a TRUNCATE leaves nothing.
CREATE OR REPLACE FUNCTION pgtrickle.prune_change_buffer(source regclass) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    buffer  regclass := pgtrickle.tracked_change_buffer(source);
    horizon xid8;
    newer   boolean;
    noted   oid[];
    n       bigint;
BEGIN
    IF buffer IS NULL THEN
        RETURN 0;
    END IF;
    IF current_setting('pgtrickle.truncate_after_commit', true) = 'on' THEN
        -- Under the engine a buffer is let go of only once its file reaches
        -- pg_trickle.change_buffer_prune_kb: a TRUNCATE costs about a millisecond whatever the
        -- buffer holds, and rows every reader has passed cost the readers nothing (they find
        -- their window by the xid index), so letting go of a few kilobytes after every refresh
        -- was most of a small refresh's time.
        IF pg_relation_size(buffer) < pgtrickle.setting_number('pg_trickle.change_buffer_prune_kb', 1024, 'kilobytes')::bigint * 1024 THEN
            RETURN 0;
        END IF;
    END IF;
    horizon := pgtrickle.change_horizon(source);
    IF horizon IS NULL THEN
        RETURN 0;
    END IF;
    IF current_setting('pgtrickle.truncate_after_commit', true) = 'on' THEN
        EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE xid >= $1)', buffer) INTO newer USING horizon;
        IF NOT newer THEN
            noted := coalesce(nullif(current_setting('pgtrickle.consumed_buffers', true), '')::oid[], '{}');
            -- an empty file is left alone: truncating it would only cost
            IF pg_relation_size(buffer) > 0 AND NOT source::oid = ANY (noted) THEN
                PERFORM set_config('pgtrickle.consumed_buffers', (noted || source::oid)::text, false);
            END IF;
            RETURN 0;
        END IF;
    END IF;
    EXECUTE format('DELETE FROM %s WHERE xid < $1', buffer) USING horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- Lets go of the rows of the buffers prune_change_buffer noted (and forgets them): TRUNCATE when it
-- can, else the pruning's DELETE. Returns how many it truncated. Run it in a transaction of its own,
-- right after the refresh that pruned commits (the engine does): a TRUNCATE holds the buffer's
-- ACCESS EXCLUSIVE lock, which writers and readers of the buffer wait for, until that transaction
-- ends. A buffer that anyone holds (a writer still open, a refresh reading it) is not waited for.
-- With the lock held no writer of the buffer is still open, so a fresh look at the consumers'
-- frontiers and at the committed rows is the whole truth: the buffer is truncated only when still
-- no row is newer than every consumer's frontier. Hence READ COMMITTED only: an older snapshot
-- could miss such a row.
CREATE OR REPLACE FUNCTION pgtrickle.truncate_consumed_change_buffers() RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    noted   oid[] := nullif(current_setting('pgtrickle.consumed_buffers', true), '')::oid[];
    source  oid;
    buffer  regclass;
    locked  boolean;
    horizon xid8;
    newer   boolean;
    n       integer := 0;
BEGIN
    IF noted IS NULL THEN
        RETURN 0;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgtrickle: truncate_consumed_change_buffers() runs at READ COMMITTED only, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM set_config('pgtrickle.consumed_buffers', '', false);
    FOREACH source IN ARRAY noted LOOP
        buffer := pgtrickle.tracked_change_buffer(source::regclass);
        CONTINUE WHEN buffer IS NULL;
        -- a role that may prune but not truncate (DELETE granted without TRUNCATE) prunes
        locked := has_table_privilege(buffer, 'TRUNCATE');
        IF locked THEN
            BEGIN
                EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', buffer);
            EXCEPTION WHEN lock_not_available THEN
                locked := false;
            END;
        END IF;
        -- each statement below takes a snapshot of its own, after the lock
        horizon := pgtrickle.change_horizon(source::regclass);
        CONTINUE WHEN horizon IS NULL;
        IF locked THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE xid >= $1)', buffer) INTO newer USING horizon;
            IF NOT newer THEN
                EXECUTE format('TRUNCATE %s', buffer);
                n := n + 1;
                CONTINUE;
            END IF;
        END IF;
        EXECUTE format('DELETE FROM %s WHERE xid < $1', buffer) USING horizon;
    END LOOP;
    RETURN n;
END
$fn$;

-- Stops capturing for a consumer; the last consumer's release drops the triggers (on every table
-- that carries one), the capture functions and the buffer. Releasing a consumer that does not hold
-- the source is a no-op. Works for a source that has been dropped too (by its OID): its buffer and
-- functions still go.
CREATE OR REPLACE FUNCTION pgtrickle.release_change_capture(source regclass, consumer bigint) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- the name recorded at set-up: a dropped source has no name to hash any more
    stable    text := (SELECT t.source_stable_name FROM pgtrickle.pgt_change_tracking t WHERE t.source_relid = source);
    remaining bigint[];
    obj       record;
BEGIN
    IF stable IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('pgtrickle change capture ' || stable, 0));
    UPDATE pgtrickle.pgt_change_tracking
       SET tracked_by_pgt_ids = array_remove(tracked_by_pgt_ids, consumer)
     WHERE source_relid = source
    RETURNING tracked_by_pgt_ids INTO remaining;
    IF remaining IS NULL OR cardinality(remaining) > 0 THEN
        RETURN;
    END IF;
    FOR obj IN SELECT t.tgname, t.tgrelid FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                WHERE p.pronamespace = 'pgtrickle_changes'::regnamespace AND starts_with(p.proname, 'capture_' || stable || '_')
                  AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', obj.tgname, obj.tgrelid::regclass);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS func FROM pg_proc p
                WHERE p.pronamespace = 'pgtrickle_changes'::regnamespace AND starts_with(p.proname, 'capture_' || stable || '_') LOOP
        EXECUTE format('DROP FUNCTION %s', obj.func);
    END LOOP;
    EXECUTE format('DROP TABLE IF EXISTS pgtrickle_changes.%I', 'changes_' || stable);
    DELETE FROM pgtrickle.pgt_change_tracking WHERE source_relid = source;
END
$fn$;

-- The buffer's column definitions for a source: its non-generated columns with their types (type
-- modifiers included) and collations, as "name type COLLATE collation", in column order.
CREATE OR REPLACE FUNCTION pgtrickle.capture_column_definitions(source regclass) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                     || CASE WHEN a.attcollation <> 0 THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                     ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
$fn$;

-- The members of a source's capture: the source and its descendants at any depth.
CREATE OR REPLACE FUNCTION pgtrickle.capture_members(source regclass) RETURNS TABLE (relid oid, relkind "char")
    LANGUAGE sql STABLE
AS $fn$
    WITH RECURSIVE tree(relid) AS (
        SELECT source::oid
        UNION
        SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.relid)
    SELECT c.oid, c.relkind FROM tree JOIN pg_class c ON c.oid = tree.relid
$fn$;

-- The capture functions of a source, created or replaced: one per event and trigger level, each a
-- single INSERT into the buffer. SECURITY DEFINER: writers need no privilege on
-- pgtrickle_changes, which is closed to PUBLIC. No SET search_path (a per-call GUC save and
-- restore): instead the bodies resolve nothing through the writer's search_path (schema-qualified
-- target, transition tables, which the parser looks up before any schema, NEW and OLD, column
-- names and literals; no operator, function or type name), so a writer's search_path cannot
-- redirect them. The columns are named, never positional: a member may order them differently.
CREATE OR REPLACE FUNCTION pgtrickle.create_capture_functions(source regclass, stable text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    buffer   text := 'changes_' || stable;
    capture  text := 'capture_' || stable;
    names    text;
    old_cols text;
    new_cols text;
    old_row  text;
    new_row  text;
    f        record;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('o.%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('n.%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('OLD.%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('NEW.%I', a.attname), ', ' ORDER BY a.attnum)
      INTO names, old_cols, new_cols, old_row, new_row
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';

    -- one function per event and level, each the one INSERT below; statement level reads the
    -- transition tables of the table the statement named, row level the row of the leaf it landed
    -- in (a cross-partition UPDATE fires DELETE and INSERT)
    FOR f IN SELECT * FROM (VALUES
            ('ins',      format('SELECT ''I'', %s FROM pgt_new n', new_cols)),
            ('upd',      format('SELECT ''D'', %s FROM pgt_old o UNION ALL SELECT ''I'', %s FROM pgt_new n', old_cols, new_cols)),
            ('del',      format('SELECT ''D'', %s FROM pgt_old o', old_cols)),
            ('ins_row',  format('VALUES (''I'', %s)', new_row)),
            ('upd_row',  format('VALUES (''D'', %s), (''I'', %s)', old_row, new_row)),
            ('del_row',  format('VALUES (''D'', %s)', old_row))) AS e(event, rows) LOOP
        EXECUTE format($f$
            CREATE OR REPLACE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            AS $body$
            BEGIN
                INSERT INTO pgtrickle_changes.%2$I (action, %3$s) %4$s;
                RETURN NULL;
            END
            $body$$f$,
            capture || '_' || f.event, buffer, names, f.rows);
        -- trigger functions, never to be called by anyone (R__90_privileges.sql)
        EXECUTE format('REVOKE EXECUTE ON FUNCTION pgtrickle_changes.%I() FROM PUBLIC', capture || '_' || f.event);
    END LOOP;
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO pgtrickle_changes.%2$I (action) VALUES ('T');
            RETURN NULL;
        END
        $body$$f$,
        capture || '_trunc', buffer);
    EXECUTE format('REVOKE EXECUTE ON FUNCTION pgtrickle_changes.%I() FROM PUBLIC', capture || '_trunc');
END
$fn$;

-- Gives a capture trigger the state sync_change_capture wants for it (ENABLE REPLICA or ALWAYS).
-- That is an ALTER TABLE, which needs the table's owner, where creating the trigger needs only the
-- TRIGGER privilege, all that capture asked of a stream table's creator before. SECURITY DEFINER,
-- and safe to call by anyone: it acts only on a trigger that runs a capture function of a captured
-- source, and sets only the state the catalog wants for it, never one chosen by the caller.
CREATE OR REPLACE FUNCTION pgtrickle.enable_capture_trigger(member regclass, trigger_name text) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    wanted "char";
BEGIN
    SELECT w.enabled INTO wanted
      FROM pg_trigger t
      JOIN pg_proc p ON p.oid = t.tgfoid AND p.pronamespace = 'pgtrickle_changes'::regnamespace
      JOIN pgtrickle.pgt_change_tracking c ON starts_with(p.proname, 'capture_' || c.source_stable_name || '_')
     CROSS JOIN LATERAL pgtrickle.wanted_capture_triggers(c.source_relid::regclass, c.source_stable_name) w
     WHERE t.tgrelid = member AND t.tgname = trigger_name AND NOT t.tgisinternal
       AND w.relid = t.tgrelid AND w.tgname = t.tgname AND w.func = p.proname;
    IF wanted IN ('A', 'R') THEN
        BEGIN
            EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', member,
                           CASE wanted WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, trigger_name);
        EXCEPTION WHEN insufficient_privilege THEN
            -- without that state, rows applied by logical replication would go uncaptured: refuse
            RAISE EXCEPTION 'pgtrickle: cannot capture % completely: its capture trigger % must fire for replicated rows (ENABLE %), which only an owner of the table can set, and neither % nor % owns it',
                member, trigger_name, CASE wanted WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, session_user, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Create the stream table as an owner of %s, or GRANT %s TO %s.', member,
                                    (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = member), current_user);
        END;
    END IF;
END
$fn$;

-- The event trigger on sql_drop: a member of a captured source dropped (DROP TABLE of a partition
-- or an inheritance child) takes its rows out of the source without any trigger firing, so the
-- source's readers recompute in full. Found by the member's capture triggers, which go with it and
-- are named after the source's buffer.
CREATE OR REPLACE FUNCTION pgtrickle.on_source_drop() RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pgtrickle.pgt_change_tracking) THEN
        RETURN;
    END IF;
    PERFORM pgtrickle.reinitialize_readers(t.source_relid)
       FROM pgtrickle.pgt_change_tracking t
      WHERE t.source_stable_name IN (
                SELECT substring(o.address_names[3] FROM '^pgt_capture_([0-9a-f]{16})_')
                  FROM pg_event_trigger_dropped_objects() o
                 WHERE o.object_type = 'trigger' AND o.address_names[3] ~ '^pgt_capture_[0-9a-f]{16}_');
END
$fn$;

-- The stream tables that read a source recompute in full at their next refresh.
CREATE OR REPLACE FUNCTION pgtrickle.reinitialize_readers(source oid) RETURNS void
    LANGUAGE sql
AS $fn$
    UPDATE pgtrickle.pgt_stream_tables s
       SET needs_reinit = true, updated_at = now()
     WHERE s.pgt_id IN (SELECT d.pgt_id FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = source)
$fn$;

-- Brings the capture triggers of a source in line with its members (see the head of this file):
--   on every member            pgt_capture[_<stable>]_trunc               AFTER TRUNCATE, ENABLE ALWAYS
--   a source without ancestors:
--     on every member          pgt_capture[_<stable>]_{ins,upd,del}       statement level, ENABLE ORIGIN
--     on every leaf member     pgt_capture[_<stable>]_{ins,upd,del}_row   row level, ENABLE REPLICA
--   a partition or child:
--     on every leaf member     pgt_capture[_<stable>]_{ins,upd,del}_row   row level, ENABLE ALWAYS
-- (the source's own triggers carry no stable name, the other members' do: a member may be captured
-- as a source of its own too). Triggers of the source's functions on tables that are no longer
-- members (detached, no longer inheriting) are dropped. Returns whether a table that joined or
-- left the members holds rows: rows the buffer never saw came or went with it.
CREATE OR REPLACE FUNCTION pgtrickle.sync_change_capture(source regclass) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stable   text := (SELECT t.source_stable_name FROM pgtrickle.pgt_change_tracking t WHERE t.source_relid = source);
    trig     record;
    moved    boolean := false;
    has_rows boolean;
    bad      text;
    outer_sync text := coalesce(current_setting('pgtrickle.capture_sync', true), '');
BEGIN
    IF stable IS NULL OR pgtrickle.change_buffer(source) IS NULL THEN
        RETURN false;
    END IF;
    SELECT string_agg(m.relid::regclass::text, ', ') INTO bad
      FROM pgtrickle.capture_members(source) m WHERE m.relkind NOT IN ('r', 'p');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: cannot capture changes of %: its partitions or children % are not tables', source, bad
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Triggers do not see the writes to a foreign table: a stream table cannot read a partitioned table or a parent with foreign partitions or children.';
    END IF;
    -- the ALTER TABLE ... ENABLE TRIGGER below fires on_source_ddl, which must not sync again
    PERFORM set_config('pgtrickle.capture_sync', 'on', true);

    -- the triggers that run this source's capture functions, anywhere, but are not wanted as they are
    FOR trig IN
        SELECT t.tgrelid, t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE p.pronamespace = 'pgtrickle_changes'::regnamespace AND starts_with(p.proname, 'capture_' || stable || '_')
           AND NOT t.tgisinternal
           AND NOT EXISTS (SELECT FROM pgtrickle.wanted_capture_triggers(source, stable) w
                            WHERE w.relid = t.tgrelid AND w.tgname = t.tgname AND w.func = p.proname
                              AND w.enabled = t.tgenabled AND w.is_row = (t.tgtype & 1 = 1))
         ORDER BY t.tgrelid, t.tgname
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig.tgname, trig.tgrelid::regclass);
        IF trig.tgrelid <> source::oid AND NOT EXISTS (SELECT FROM pgtrickle.capture_members(source) m WHERE m.relid = trig.tgrelid)
           AND NOT EXISTS (SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                            WHERE t.tgrelid = trig.tgrelid AND p.pronamespace = 'pgtrickle_changes'::regnamespace
                              AND starts_with(p.proname, 'capture_' || stable || '_')) THEN
            -- the last of them on a table that left the members
            EXECUTE format('SELECT EXISTS (SELECT FROM ONLY %s)', trig.tgrelid::regclass) INTO has_rows;
            moved := moved OR has_rows;
        END IF;
    END LOOP;

    FOR trig IN
        SELECT w.* FROM pgtrickle.wanted_capture_triggers(source, stable) w
         WHERE NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = w.relid AND t.tgname = w.tgname)
         ORDER BY w.relid, w.tgname
    LOOP
        IF trig.relid <> source::oid AND NOT EXISTS (
               SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                WHERE t.tgrelid = trig.relid AND p.pronamespace = 'pgtrickle_changes'::regnamespace
                  AND starts_with(p.proname, 'capture_' || stable || '_')) THEN
            -- the first of them on a table that joined the members
            EXECUTE format('SELECT EXISTS (SELECT FROM ONLY %s)', trig.relid::regclass) INTO has_rows;
            moved := moved OR has_rows;
        END IF;
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH %s EXECUTE FUNCTION pgtrickle_changes.%I()',
                       trig.tgname,
                       CASE split_part(trig.func, '_', 3) WHEN 'ins' THEN 'INSERT' WHEN 'upd' THEN 'UPDATE'
                                                          WHEN 'del' THEN 'DELETE' ELSE 'TRUNCATE' END,
                       trig.relid::regclass,
                       CASE WHEN trig.is_row THEN ''
                            ELSE CASE split_part(trig.func, '_', 3)
                                     WHEN 'ins' THEN 'REFERENCING NEW TABLE AS pgt_new'
                                     WHEN 'upd' THEN 'REFERENCING OLD TABLE AS pgt_old NEW TABLE AS pgt_new'
                                     WHEN 'del' THEN 'REFERENCING OLD TABLE AS pgt_old'
                                     ELSE '' END END,
                       CASE WHEN trig.is_row THEN 'ROW' ELSE 'STATEMENT' END,
                       trig.func);
        IF trig.enabled <> 'O' AND pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = trig.relid), 'USAGE') THEN
            -- an owner of the table sets the state itself
            EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', trig.relid::regclass,
                           CASE trig.enabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, trig.tgname);
        ELSIF trig.enabled <> 'O' THEN
            PERFORM pgtrickle.enable_capture_trigger(trig.relid::regclass, trig.tgname);
        END IF;
    END LOOP;
    PERFORM set_config('pgtrickle.capture_sync', outer_sync, true);
    RETURN moved;
END
$fn$;

-- The capture triggers a source's members should carry, as sync_change_capture lays them out.
CREATE OR REPLACE FUNCTION pgtrickle.wanted_capture_triggers(source regclass, stable text)
    RETURNS TABLE (relid oid, tgname text, func text, is_row boolean, enabled "char")
    LANGUAGE sql STABLE
AS $fn$
    SELECT m.relid,
           'pgt_capture_' || CASE WHEN m.relid = source THEN '' ELSE stable || '_' END || e.event,
           'capture_' || stable || '_' || e.event, e.is_row,
           CASE WHEN e.event = 'trunc' THEN 'A' WHEN NOT e.is_row THEN 'O' WHEN n.nested THEN 'A' ELSE 'R' END::"char"
      FROM pgtrickle.capture_members(source) m
     CROSS JOIN (SELECT EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = source) AS nested) n
     CROSS JOIN (VALUES ('ins', false), ('upd', false), ('del', false), ('trunc', false),
                        ('ins_row', true), ('upd_row', true), ('del_row', true)) AS e(event, is_row)
     WHERE CASE WHEN e.event = 'trunc' THEN true
                WHEN e.is_row THEN m.relkind = 'r'
                ELSE NOT n.nested END
$fn$;

-- The event trigger on CREATE TABLE and ALTER TABLE: ALTER TABLE on a captured source (or on a
-- parent of one) rebuilds its capture when its columns or name changed; a table that joins or
-- leaves the members of a captured source (PARTITION OF, INHERITS, ATTACH / DETACH PARTITION,
-- INHERIT / NO INHERIT) gets or loses its triggers, and when it holds rows the source's readers
-- recompute in full. Cheap for every other DDL: one probe of pgt_change_tracking. The capture's own
-- DDL (on pgtrickle_changes) fires it again, harmlessly: buffers are not captured sources.
CREATE OR REPLACE FUNCTION pgtrickle.on_source_ddl() RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    src record;
BEGIN
    -- a shadow evolution's swap renames stream tables and sets up their capture itself
    IF current_setting('pgtrickle.evolving', true) = 'on' THEN
        RETURN;
    END IF;
    -- the capture's own ALTER TABLE ... ENABLE TRIGGER, in sync_change_capture
    IF current_setting('pgtrickle.capture_sync', true) = 'on' THEN
        RETURN;
    END IF;
    -- a stream table renamed or moved keeps its catalog row, subscriptions and history: the catalog
    -- follows the name
    UPDATE pgtrickle.pgt_stream_tables st SET pgt_schema = n.nspname, pgt_name = c.relname, updated_at = now()
      FROM pg_event_trigger_ddl_commands() d
      JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE d.classid = 'pg_class'::regclass AND d.object_type = 'table' AND st.pgt_relid = d.objid
       AND (st.pgt_schema, st.pgt_name) IS DISTINCT FROM (n.nspname::text, c.relname::text);
    IF NOT EXISTS (SELECT FROM pgtrickle.pgt_change_tracking) THEN
        RETURN;
    END IF;
    FOR src IN
        WITH RECURSIVE altered AS (
                 -- ALTER TABLE ... RENAME COLUMN reports the column (objsubid), any other ALTER TABLE the table
                 SELECT c.objid AS relid,
                        max(CASE WHEN c.object_type = 'table column' THEN
                                (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.objid AND a.attnum = c.objsubid) END) AS renamed_to
                   FROM pg_event_trigger_ddl_commands() c
                  WHERE c.command_tag = 'ALTER TABLE'
                    AND c.object_type IN ('table', 'table column') AND c.classid = 'pg_class'::regclass
                  GROUP BY c.objid),
             tree AS (
                 SELECT a.relid, a.renamed_to FROM altered a
                 UNION
                 -- partitions and inheritance children change with their parent
                 SELECT i.inhrelid, tree.renamed_to FROM tree JOIN pg_inherits i ON i.inhparent = tree.relid)
        SELECT t.source_relid, max(tree.renamed_to) AS renamed_to
          FROM tree JOIN pgtrickle.pgt_change_tracking t ON t.source_relid = tree.relid
         GROUP BY t.source_relid ORDER BY t.source_relid
    LOOP
        PERFORM pgtrickle.rebuild_change_capture(src.source_relid::regclass, src.renamed_to);
    END LOOP;

    -- Membership: the captured sources among the created or altered tables, their ancestors and
    -- their descendants, and those whose triggers a created or altered table carries (it may have
    -- just left their members).
    FOR src IN
        WITH RECURSIVE touched AS (
                 SELECT DISTINCT c.objid AS relid FROM pg_event_trigger_ddl_commands() c
                  WHERE c.object_type IN ('table', 'foreign table') AND c.classid = 'pg_class'::regclass),
             up AS (
                 SELECT relid FROM touched
                 UNION
                 SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.relid),
             down AS (
                 SELECT relid FROM touched
                 UNION
                 SELECT i.inhrelid FROM down JOIN pg_inherits i ON i.inhparent = down.relid)
        SELECT t.source_relid FROM pgtrickle.pgt_change_tracking t
         WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.source_relid)
           AND (t.source_relid IN (SELECT relid FROM up UNION SELECT relid FROM down)
                OR EXISTS (SELECT FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
                            WHERE g.tgrelid IN (SELECT relid FROM down)
                              AND p.pronamespace = 'pgtrickle_changes'::regnamespace
                              AND starts_with(p.proname, 'capture_' || t.source_stable_name || '_')))
         ORDER BY t.source_relid
    LOOP
        IF pgtrickle.sync_change_capture(src.source_relid::regclass) THEN
            PERFORM pgtrickle.reinitialize_readers(src.source_relid);
        END IF;
    END LOOP;
END
$fn$;

-- Brings the capture of a source in line with the source's columns and name after DDL: a new
-- buffer with the current non-generated columns, new capture functions and triggers (set up by
-- ensure_change_capture, so there is one definition of them), the old buffer's rows copied over
-- (xid, action, and the values of the columns that survive, renamed or cast to their new type;
-- NULL where a value does not convert), the consumers and owners kept. Every stream table reading
-- the source then recomputes in full at its next refresh and is planned again. Does nothing and
-- returns false when the capture is current. renamed_to: the new name of a column that an
-- ALTER TABLE ... RENAME COLUMN renamed (its buffer column is the one that lost its name).
-- SECURITY DEFINER: the owner of an altered source need not own the buffer or the capture functions.
CREATE OR REPLACE FUNCTION pgtrickle.rebuild_change_capture(source regclass, renamed_to text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    tracking   pgtrickle.pgt_change_tracking;
    old_buffer regclass;
    new_buffer regclass;
    aside      text;
    owner      regrole;
    keeper     bigint;
    wanted     text[];
    have       text[];
    targets    text;
    converted  text;
    exact      text;
    obj        text;
BEGIN
    SELECT * INTO tracking FROM pgtrickle.pgt_change_tracking t WHERE t.source_relid = source;
    IF NOT FOUND OR NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = source) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('pgtrickle change capture ' || tracking.source_stable_name, 0));
    old_buffer := to_regclass('pgtrickle_changes.' || quote_ident('changes_' || tracking.source_stable_name));

    wanted := pgtrickle.capture_column_definitions(source);
    have := pgtrickle.capture_column_definitions(old_buffer);
    have := have[3:];
    IF old_buffer IS NOT NULL AND old_buffer = pgtrickle.change_buffer(source) AND wanted IS NOT DISTINCT FROM have THEN
        RETURN false;
    END IF;

    -- Tear down through release_change_capture, with the old buffer set aside (renamed, without
    -- its index, whose name the new buffer's index takes) so that its rows can be copied.
    IF old_buffer IS NOT NULL THEN
        owner := (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = old_buffer);
        aside := 'pgt_rebuild_' || tracking.source_stable_name;
        FOR obj IN SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = old_buffer LOOP
            EXECUTE format('DROP INDEX %s', obj);
        END LOOP;
        EXECUTE format('ALTER TABLE %s RENAME TO %I', old_buffer, aside);
    END IF;
    keeper := (SELECT min(s.pgt_id) FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ANY (tracking.tracked_by_pgt_ids));
    UPDATE pgtrickle.pgt_change_tracking t SET tracked_by_pgt_ids = ARRAY[coalesce(keeper, 0)] WHERE t.source_relid = source;
    PERFORM pgtrickle.release_change_capture(source, coalesce(keeper, 0));
    IF keeper IS NULL THEN
        -- no stream table reads it any more: nothing to capture for
        IF aside IS NOT NULL THEN
            EXECUTE format('DROP TABLE pgtrickle_changes.%I', aside);
        END IF;
        RETURN true;
    END IF;
    new_buffer := pgtrickle.ensure_change_capture(source, keeper);
    UPDATE pgtrickle.pgt_change_tracking t SET tracked_by_pgt_ids = tracking.tracked_by_pgt_ids WHERE t.source_relid = source;

    IF aside IS NOT NULL THEN
        WITH new_cols AS (
                 SELECT b.attnum, b.attname, b.atttypid, b.atttypmod FROM pg_attribute b
                  WHERE b.attrelid = new_buffer AND b.attnum > 2 AND NOT b.attisdropped),
             old_cols AS (
                 SELECT b.attname, b.atttypid, b.atttypmod FROM pg_attribute b
                  WHERE b.attrelid = format('pgtrickle_changes.%I', aside)::regclass AND b.attnum > 2 AND NOT b.attisdropped),
             orphans AS (
                 SELECT o.attname FROM old_cols o WHERE NOT EXISTS (SELECT FROM new_cols n WHERE n.attname = o.attname)),
             mapped AS (
                 SELECT n.attnum, n.attname, format_type(n.atttypid, n.atttypmod) AS typ, o.attname AS from_name,
                        o.atttypid = n.atttypid AND o.atttypmod = n.atttypmod AS same_type
                   FROM new_cols n
                   LEFT JOIN old_cols o ON o.attname = CASE
                        WHEN n.attname = renamed_to AND (SELECT count(*) FROM orphans) = 1 THEN (SELECT attname FROM orphans)
                        ELSE n.attname END)
        SELECT string_agg(format('%I', m.attname), ', ' ORDER BY m.attnum),
               string_agg(CASE WHEN m.from_name IS NULL THEN 'NULL' ELSE format('CAST(o.%I AS %s)', m.from_name, m.typ) END, ', ' ORDER BY m.attnum),
               string_agg(CASE WHEN m.same_type THEN format('o.%I', m.from_name) ELSE 'NULL' END, ', ' ORDER BY m.attnum)
          INTO targets, converted, exact
          FROM mapped m;
        BEGIN
            EXECUTE format('INSERT INTO %s (xid, action%s) SELECT o.xid, o.action%s FROM pgtrickle_changes.%I o',
                           new_buffer, coalesce(', ' || targets, ''), coalesce(', ' || converted, ''), aside);
        EXCEPTION WHEN OTHERS THEN
            -- a value that does not convert to its column's new type: keep only unchanged columns
            EXECUTE format('INSERT INTO %s (xid, action%s) SELECT o.xid, o.action%s FROM pgtrickle_changes.%I o',
                           new_buffer, coalesce(', ' || targets, ''), coalesce(', ' || exact, ''), aside);
        END;
        EXECUTE format('DROP TABLE pgtrickle_changes.%I', aside);

        -- whoever owned the capture before owns it still (release_change_capture runs as them)
        IF owner IS DISTINCT FROM (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = new_buffer) THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %s', new_buffer, owner);
            FOR obj IN SELECT p.oid::regprocedure::text FROM pg_proc p
                        WHERE p.pronamespace = 'pgtrickle_changes'::regnamespace
                          AND starts_with(p.proname, 'capture_' || tracking.source_stable_name || '_') LOOP
                EXECUTE format('ALTER FUNCTION %s OWNER TO %s', obj, owner);
            END LOOP;
        END IF;
    END IF;

    -- a renamed or moved source has a new stable name
    UPDATE pgtrickle.pgt_dependencies d SET source_stable_name = pgtrickle.source_stable_name(source)
     WHERE d.source_relid = source AND d.source_stable_name IS DISTINCT FROM pgtrickle.source_stable_name(source);
    -- The next refresh of every reader recomputes in full (the rows of the old buffer are not
    -- consumed differentially), and the engine plans the query again against the new columns.
    UPDATE pgtrickle.pgt_stream_tables s
       SET needs_reinit = true, delta_sql = NULL, updated_at = now()
     WHERE s.pgt_id = ANY (tracking.tracked_by_pgt_ids)
        OR s.pgt_id IN (SELECT d.pgt_id FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = source);
    RETURN true;
END
$fn$;

-- The tables a query reads, through views, as (relid, source_type). A table read with ONLY
-- anywhere in the query (or in a view it reads) is an 'ONLY TABLE'. PostgreSQL records no ONLY in
-- pg_depend; the rewritten query trees do, as the inh flag of each relation's range table entry.
CREATE OR REPLACE FUNCTION pgtrickle.query_sources(view_oid oid) RETURNS TABLE (relid oid, source_type text)
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
    ),
    -- Each relation entry of every rule involved: the text from one {RANGETBLENTRY to the next
    -- holds one entry's own fields (an entry of a relation nests no other entry), and its first
    -- ":inh" after ":relid" is its own (the field order differs between PostgreSQL versions).
    only_reads AS (
        SELECT substring(e.entry FROM ':rtekind 0 :relid ([0-9]+) ')::oid AS relid
          FROM pg_rewrite r
         CROSS JOIN LATERAL regexp_split_to_table(r.ev_action::text, '\{RANGETBLENTRY ') AS e(entry)
         WHERE (r.ev_class = view_oid OR r.ev_class IN (SELECT deps.relid FROM deps))
           AND e.entry ~ ':rtekind 0 :relid [0-9]+ '
           AND substring(substring(e.entry FROM ':rtekind 0 :relid [0-9]+ (.*)$') FROM ':inh (true|false)') = 'false'
    )
    SELECT DISTINCT c.oid,
           CASE WHEN st.pgt_id IS NOT NULL THEN 'STREAM_TABLE'
                WHEN c.relkind IN ('r', 'p') AND c.oid IN (SELECT o.relid FROM only_reads o) THEN 'ONLY TABLE'
                WHEN c.relkind IN ('r', 'p') THEN 'TABLE'
                WHEN c.relkind = 'v' THEN 'VIEW'
                WHEN c.relkind = 'm' THEN 'MATVIEW'
                WHEN c.relkind = 'f' THEN 'FOREIGN_TABLE' END
      FROM deps JOIN pg_class c ON c.oid = deps.relid
      LEFT JOIN pgtrickle.pgt_stream_tables st ON st.pgt_relid = c.oid
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
$fn$;

-- The DDL event triggers, which only a superuser may create.
DO $do$
BEGIN
    IF current_setting('is_superuser') <> 'on' THEN
        RAISE NOTICE 'pgtrickle: not a superuser, so the event triggers pgtrickle_source_ddl and pgtrickle_source_drop are not created: partitions and inheritance children created, attached, detached or dropped later are not captured'
            USING HINT = 'Run the migration as a superuser, or drop and re-create the stream tables that read a source after changing its partitions, children or columns.';
    ELSE
        -- CREATE TABLE ... PARTITION OF and INHERITS add members, and a foreign table joining a
        -- captured source must be refused
        DROP EVENT TRIGGER IF EXISTS pgtrickle_source_ddl;
        CREATE EVENT TRIGGER pgtrickle_source_ddl ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'ALTER FOREIGN TABLE', 'CREATE FOREIGN TABLE')
            EXECUTE FUNCTION pgtrickle.on_source_ddl();
        DROP EVENT TRIGGER IF EXISTS pgtrickle_source_drop;
        CREATE EVENT TRIGGER pgtrickle_source_drop ON sql_drop WHEN TAG IN ('DROP TABLE')
            EXECUTE FUNCTION pgtrickle.on_source_drop();
    END IF;
END
$do$;

-- Captures already set up take this text's capture functions and triggers: buffer columns get their
-- source column's collation (no rewrite of the rows), each source's row-level capture functions are
-- made again from the template above, and every member gets its triggers. A source whose triggers
-- had to be added has its readers recompute once: changes made without them were never captured.
DO $do$
DECLARE
    src    record;
    col    record;
    owner  regrole;
    func   text;
BEGIN
    FOR src IN SELECT t.source_relid::regclass AS source, t.source_stable_name AS stable, pgtrickle.change_buffer(t.source_relid::regclass) AS buffer
                 FROM pgtrickle.pgt_change_tracking t
                WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.source_relid)
                  AND pgtrickle.change_buffer(t.source_relid::regclass) IS NOT NULL
                ORDER BY t.source_relid LOOP
        FOR col IN SELECT b.attname, format_type(b.atttypid, b.atttypmod) AS typ, a.attcollation::regcollation::text AS coll
                     FROM pg_attribute b JOIN pg_attribute a ON a.attrelid = src.source AND a.attname = b.attname AND NOT a.attisdropped
                    WHERE b.attrelid = src.buffer AND b.attnum > 2 AND NOT b.attisdropped AND b.attcollation <> a.attcollation
                      AND b.atttypid = a.atttypid LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE %s COLLATE %s', src.buffer, col.attname, col.typ, col.coll);
        END LOOP;
        PERFORM pgtrickle.create_capture_functions(src.source, src.stable);
        owner := (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = src.buffer);
        FOR func IN SELECT p.oid::regprocedure::text FROM pg_proc p
                     WHERE p.pronamespace = 'pgtrickle_changes'::regnamespace AND starts_with(p.proname, 'capture_' || src.stable || '_')
                       AND p.proowner <> owner LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO %s', func, owner);
        END LOOP;
        IF pgtrickle.sync_change_capture(src.source) THEN
            PERFORM pgtrickle.reinitialize_readers(src.source);
        END IF;
    END LOOP;
END
$do$;
