-- The scheduler's SQL (unit io.pgtrickle.refresh, repeatable): due work, most overdue first, and
-- refresh history retention.

-- Stream tables the scheduler should refresh now, most urgent first: unpopulated or to be rebuilt
-- ones, those past their schedule, 'calculated' ones with pending source changes, and 'calculated'
-- ones whose result moves with the time or the session, or that read a source without captured
-- changes, once a second.
--
-- overdue: how long it has been due. Past a schedule: since the schedule ran out
-- (last_refresh_at + schedule); 'calculated': since its last refresh (its changes may be that old);
-- unpopulated or to be rebuilt: since its last refresh, or its creation. The order is unpopulated
-- and to-be-rebuilt ones first (nothing useful can be read from them), then the most overdue, then
-- pgt_id. Ordering by pgt_id alone starved every stream table but the first few once due work
-- exceeded the workers; ordering by lateness serves them in turn, each about equally late past its
-- own schedule.
--
-- The scheduler calls this every tick, so the pending check is made cheap when nothing changed:
-- first one probe per captured source of a 'calculated' stream table (does its buffer hold any row
-- its readers may not have consumed? buffers are pruned as their consumers pass them), then a check
-- against each consumer's frontier only for sources whose buffer holds rows. Checking every
-- (stream table, source) pair with a count took about 0.1 ms each: 2 ms a tick for 20 idle stream
-- tables, a third of a CPU at a 10 ms tick (docs/benchmarks/subscriptions.md). The order costs a
-- sort of the due rows only.
DROP FUNCTION IF EXISTS pgtrickle.due_stream_tables();
-- VOLATILE: it prepares its probe (PREPARE is a command, refused in a STABLE function). Every
-- statement in it is planned once per session and reused: force_generic_plan.
CREATE OR REPLACE FUNCTION pgtrickle.due_stream_tables(probe boolean DEFAULT true)
    RETURNS TABLE (pgt_id bigint, name text, overdue interval)
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    source    oid;
    busy      oid[] := '{}';
    sources   oid[];
    buffers   oid[];
    horizons  xid8[];
    odd       oid[];
    prepared  text;
    stale     text;
BEGIN
    -- Per source, only rows from the oldest of its readers' frontiers on can be pending for any of
    -- them: the probe reads the xid index from there (ORDER BY ... LIMIT 1 in a subquery of its
    -- own: the index, whatever the buffer's stale statistics say). A buffer that has just been
    -- pruned after a burst holds the burst's deleted rows until vacuum (hundreds of MB after
    -- millions of changes), all below that point, and "any row at all" read them all, every tick.
    -- One statement for all sources, the buffers named from the change tracking's record: a
    -- function call and an EXECUTE per source cost 0.1 to 0.2 ms each, which a thousand idle
    -- stream tables paid every tick. probe = false: the caller knows that no transaction has
    -- completed since its last probe found nothing (RefreshEngine), so nothing can be pending.
    IF probe THEN
        SELECT array_agg(c.source_relid ORDER BY c.source_relid) FILTER (WHERE c.probed),
               array_agg(c.buffer::oid ORDER BY c.source_relid) FILTER (WHERE c.probed),
               array_agg(c.horizon ORDER BY c.source_relid) FILTER (WHERE c.probed),
               array_agg(c.source_relid) FILTER (WHERE NOT c.probed)
          INTO sources, buffers, horizons, odd
          FROM (SELECT u.*, u.buffer IS NOT NULL AND u.horizon IS NOT NULL AS probed FROM (SELECT d.source_relid, min(pg_snapshot_xmin(pgtrickle.oldest_frontier(s.frontier))) AS horizon,
                       to_regclass('pgtrickle_changes.' || quote_ident('changes_' || min(t.source_stable_name))) AS buffer
                  FROM pgtrickle.pgt_stream_tables s
                  JOIN pgtrickle.pgt_dependencies d ON d.pgt_id = s.pgt_id
                  LEFT JOIN pgtrickle.pgt_change_tracking t ON t.source_relid = d.source_relid
                 WHERE s.status = 'ACTIVE' AND s.shadow_of IS NULL AND s.is_populated AND NOT s.needs_reinit
                   AND (s.schedule IS NULL OR s.schedule = 'calculated')
                   AND d.source_type IN ('TABLE', 'STREAM_TABLE')
                 GROUP BY d.source_relid) u) c;
        IF sources IS NOT NULL THEN
            -- The probe, prepared in this session once per set of buffers (its name says which),
            -- each buffer's horizon a parameter: with a thousand sources, writing, parsing and
            -- planning it anew took about 70 ms of a 90 ms tick, and every commit (the refreshes'
            -- own among them) makes the next tick probe. Prepared, a tick's probe takes about
            -- 20 ms, for some 20 MB of plan held by the session.
            prepared := 'pgtrickle_probe_' || md5(array_to_string(sources, ',') || '/' || array_to_string(buffers, ','));
            IF NOT EXISTS (SELECT FROM pg_prepared_statements p WHERE p.name = prepared) THEN
                FOR stale IN SELECT p.name FROM pg_prepared_statements p WHERE p.name LIKE 'pgtrickle\_probe\_%' LOOP
                    EXECUTE format('DEALLOCATE %I', stale);
                END LOOP;
                EXECUTE format('PREPARE %I(xid8[]) AS SELECT coalesce(array_agg(p), ''{}'') FROM (%s) p(p)', prepared,
                               (SELECT string_agg(format('SELECT %s::oid WHERE EXISTS (SELECT FROM (SELECT b.xid FROM %s b'
                                                         ' WHERE b.xid >= $1[%s] ORDER BY b.xid LIMIT 1) x)', u.s, u.b::regclass, u.i),
                                                  ' UNION ALL ' ORDER BY u.i)
                                  FROM unnest(sources, buffers) WITH ORDINALITY AS u(s, b, i)));
            END IF;
            EXECUTE format('EXECUTE %I(%L)', prepared, horizons) INTO busy;
        END IF;
        -- a buffer renamed in this very transaction, or a reader without a frontier: the long way
        FOREACH source IN ARRAY coalesce(odd, '{}') LOOP
            IF pgtrickle.has_pending_changes(source::regclass, NULL) THEN
                busy := busy || source;
            END IF;
        END LOOP;
    END IF;
    RETURN QUERY
    SELECT s.pgt_id, format('%I.%I', s.pgt_schema, s.pgt_name),
           now() - CASE WHEN NOT s.is_populated OR s.needs_reinit OR s.last_refresh_at IS NULL
                        THEN coalesce(s.last_refresh_at, s.created_at)
                        ELSE s.last_refresh_at + coalesce(p.every, interval '0') END
      FROM pgtrickle.pgt_stream_tables s
     -- stored schedules are normalised: 'calculated' needs no parsing (a function call per stream table per tick)
     CROSS JOIN LATERAL (SELECT CASE WHEN s.schedule IS NULL OR s.schedule = 'calculated' THEN NULL
                                     ELSE pgtrickle.parse_schedule(s.schedule) END AS every) p
     WHERE s.status = 'ACTIVE' AND s.shadow_of IS NULL -- shadows are refreshed by their evolution
       AND (NOT s.is_populated OR s.needs_reinit
            OR (p.every IS NOT NULL AND (s.last_refresh_at IS NULL OR s.last_refresh_at + p.every <= now()))
            -- 'calculated', but the result moves without any source changing (recompute_reason,
            -- R__50_refresh.sql): every second
            OR (p.every IS NULL AND s.recompute_reason IS NOT NULL
                AND (s.last_refresh_at IS NULL OR s.last_refresh_at + interval '1 second' <= now()))
            OR (p.every IS NULL
                AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                             WHERE d.pgt_id = s.pgt_id
                               -- a source without captured changes: refreshed once a second, as the
                               -- time-dependent ones (ticks woken by commits come far more often)
                               AND ((d.source_type NOT IN ('TABLE', 'STREAM_TABLE')
                                     AND (s.last_refresh_at IS NULL OR s.last_refresh_at + interval '1 second' <= now()))
                                    OR (d.source_relid = ANY (busy)
                                        AND pgtrickle.has_pending_changes(d.source_relid::regclass,
                                                                          pgtrickle.oldest_frontier(s.frontier)))))))
     ORDER BY (NOT s.is_populated OR s.needs_reinit) DESC, 3 DESC, s.pgt_id;
END
$fn$;

-- Refresh history retention. A stream table on a one-second schedule adds 86,400 rows a day to
-- pgt_refresh_history (most of them NO_DATA); without a limit the audit log outgrows everything
-- else in the catalog. pg_trickle's setting, history_retention_days (default 90, 0 keeps all),
-- read where the pruning runs; the refresh scheduler prunes a batch at a time, about once a minute.
CREATE OR REPLACE FUNCTION pgtrickle.history_retention_days() RETURNS integer
    LANGUAGE sql STABLE
AS $fn$
    SELECT pgtrickle.setting_number('pg_trickle.history_retention_days', 90, 'days')
$fn$;

-- Deletes up to max_rows refresh history rows that started more than history_retention_days ago,
-- oldest first, and returns how many. A stream table's newest row always stays (it is its last
-- refresh: pgt_status and get_refresh_history show it). Rows another session holds are skipped.
CREATE OR REPLACE FUNCTION pgtrickle.prune_refresh_history(max_rows integer DEFAULT 10000) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    days integer := pgtrickle.history_retention_days();
    n    bigint;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'pgtrickle: max_rows must be at least 1, not %', max_rows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF days = 0 THEN
        RETURN 0;
    END IF;
    WITH old AS (
        SELECT h.refresh_id FROM pgtrickle.pgt_refresh_history h
         WHERE h.start_time < now() - days * interval '1 day'
           -- one probe of the (pgt_id, start_time) index
           AND h.start_time < (SELECT max(l.start_time) FROM pgtrickle.pgt_refresh_history l WHERE l.pgt_id = h.pgt_id)
         -- pgt_refresh_history_start_idx (0.32.0) finds them without reading the rest
         ORDER BY h.start_time
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED)
    DELETE FROM pgtrickle.pgt_refresh_history d USING old WHERE d.refresh_id = old.refresh_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- The scheduler's wake between ticks: returns pg_current_snapshot() as soon as it differs from
-- `since` (a transaction has completed since the last tick read it), looking every look_ms, or as
-- it is after timeout_ms. The waiting is done here, by the database session, rather than by the
-- container asking every look_ms: a query from the container each 10 ms cost, with nothing
-- changing, 1.2% of a CPU in the JVM and 1.6% in its session (docs/benchmarks/subscriptions.md,
-- section 4); a look from in here is a snapshot and a comparison. The statement holds its snapshot,
-- and with it the session's xmin, until it returns: the container keeps timeout_ms to a second.
CREATE OR REPLACE FUNCTION pgtrickle.await_snapshot_change(since text, look_ms integer, timeout_ms integer) RETURNS text
    LANGUAGE plpgsql
AS $fn$
DECLARE
    deadline timestamptz := clock_timestamp() + greatest(timeout_ms, 0) * interval '1 millisecond';
    seen     text;
BEGIN
    LOOP
        -- a volatile function's every expression runs in a fresh snapshot: this sees commits
        seen := pg_current_snapshot()::text;
        EXIT WHEN seen IS DISTINCT FROM since OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(greatest(look_ms, 1) / 1000.0);
    END LOOP;
    RETURN seen;
END
$fn$;
