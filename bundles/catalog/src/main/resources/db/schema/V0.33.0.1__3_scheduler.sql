-- pgtrickle catalog 0.33.0.1 (trust fixes, issue 11): scheduler.
--
-- Due work is served most overdue first. due_stream_tables() listed what was due in pgt_id order and
-- the engine hands out only as many stream tables as it has idle workers, so when due work exceeded
-- the workers the oldest stream tables took every free worker and the others were never refreshed.
-- It now says how overdue each one is and lists the most overdue first; the engine dispatches in
-- that order (upstreams still before their downstreams within a tick). Under saturation every
-- stream table then waits its turn: each is refreshed about as late past its schedule as the others.
--
-- The result gains a column, which CREATE OR REPLACE cannot do: the function is dropped and created
-- again. Nothing in the catalog depends on it (the engine calls it by name every tick).

DROP FUNCTION pgtrickle.due_stream_tables();

-- Stream tables the scheduler should refresh now, most urgent first: unpopulated or to be rebuilt
-- ones, those past their schedule, 'calculated' ones with pending source changes, and 'calculated'
-- ones whose result moves with the time or the session once a second.
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
-- at all? buffers are pruned as their consumers pass them, so an idle one is empty), then a check
-- against each consumer's frontier only for sources whose buffer holds rows. Checking every
-- (stream table, source) pair with a count took about 0.1 ms each: 2 ms a tick for 20 idle stream
-- tables, a third of a CPU at a 10 ms tick (docs/benchmarks/subscriptions.md). The order costs a
-- sort of the due rows only.
CREATE FUNCTION pgtrickle.due_stream_tables() RETURNS TABLE (pgt_id bigint, name text, overdue interval)
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
    SELECT s.pgt_id, format('%I.%I', s.pgt_schema, s.pgt_name),
           now() - CASE WHEN NOT s.is_populated OR s.needs_reinit OR s.last_refresh_at IS NULL
                        THEN coalesce(s.last_refresh_at, s.created_at)
                        ELSE s.last_refresh_at + coalesce(p.every, interval '0') END
      FROM pgtrickle.pgt_stream_tables s
     CROSS JOIN LATERAL (SELECT pgtrickle.parse_schedule(s.schedule) AS every) p
     WHERE s.status = 'ACTIVE' AND s.shadow_of IS NULL -- shadows are refreshed by their evolution
       AND (NOT s.is_populated OR s.needs_reinit
            OR (p.every IS NOT NULL AND (s.last_refresh_at IS NULL OR s.last_refresh_at + p.every <= now()))
            -- 'calculated', but the result moves without any source changing (recompute_reason,
            -- 0.33.0.1-refresh.sql): every second
            OR (p.every IS NULL AND s.recompute_reason IS NOT NULL
                AND (s.last_refresh_at IS NULL OR s.last_refresh_at + interval '1 second' <= now()))
            OR (p.every IS NULL
                AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                             WHERE d.pgt_id = s.pgt_id
                               AND (d.source_type NOT IN ('TABLE', 'STREAM_TABLE')
                                    OR (d.source_relid = ANY (busy)
                                        AND pgtrickle.has_pending_changes(d.source_relid::regclass,
                                                                          (s.frontier ->> 'snapshot')::pg_snapshot))))))
     ORDER BY (NOT s.is_populated OR s.needs_reinit) DESC, 3 DESC, s.pgt_id;
END
$fn$;
