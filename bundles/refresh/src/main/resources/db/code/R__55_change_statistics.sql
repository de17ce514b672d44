-- What PostgreSQL knows about a differential refresh before it plans it (unit io.pgtrickle.refresh,
-- repeatable): true statistics of the change buffers, and AUTO's cost rule. Called by run_refresh
-- (R__50_refresh.sql) just before the differential statement runs.
--
-- A change buffer is pruned after every refresh, so its statistics (autovacuum's, or ours) describe
-- an earlier batch: typically writers older than the frontier, so the planner sees the window
-- (`xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(xid, $1)`) as about one row. On
-- TPC-H Q12 at SF 0.1 it expected 1 changed order, found 300 and re-read all 600,000 lineitems once
-- per order in a nested loop: 67 s where REFRESH MATERIALIZED VIEW takes 0.2 s (the benchmark
-- -Pbench-stale-stats, docs/benchmarks/stale-stats.md).

-- Makes the planner's estimate of each source's window true, before the differential statement is
-- planned: for every source with changes in the window (`counts`: source OID -> rows in the window,
-- as run_refresh counted them), the planner's estimate is asked (EXPLAIN, with the frontier as the
-- statement will have it: about 0.2 ms a source; nothing for windows of up to 4 rows); where the two
-- disagree (more than twice as many rows as estimated, or far fewer), the buffer is analysed, here,
-- in the refresh's transaction (a refresh run from SQL has no other). ANALYZE reads a sample of the
-- buffer, which holds little beyond the window.
--
-- ANALYZE keeps its SHARE UPDATE EXCLUSIVE lock on the buffer until the refresh commits. Nothing that
-- writes or reads the buffer waits for it (capture triggers, pruning and other refreshes take weaker
-- locks); another analyse of it would. So the lock is asked for with NOWAIT, and where it is held
-- elsewhere (another refresh analysing the same source, autovacuum), or the caller may not analyse
-- the buffer (ANALYZE needs its owner), the statement is planned without nested loops instead: it
-- then scans what it joins once, with hash or merge joins, which bounds it by about a recomputation
-- whatever the estimates say. Returns the settings to restore after the statement, as jsonb
-- ('{}' when none changed).
--
-- pg_trickle.analyze_change_buffers = off turns this off (then nothing is asked).
DROP FUNCTION IF EXISTS pgtrickle.refresh_change_statistics(pg_snapshot, jsonb);
CREATE OR REPLACE FUNCTION pgtrickle.refresh_change_statistics(frontier pg_snapshot, counts jsonb, reader bigint DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql
AS $fn$
DECLARE
    src       record;
    n         bigint;
    estimated double precision;
    plan      json;
    blind     boolean := false;
    switch    text;
    target    text;
    columns   text;
BEGIN
    switch := lower(btrim(coalesce(current_setting('pg_trickle.analyze_change_buffers', true), '')));
    IF switch IN ('off', 'false', '0', 'no') THEN
        RETURN '{}';
    ELSIF switch NOT IN ('', 'on', 'true', '1', 'yes') THEN
        PERFORM pgtrickle.warn_invalid_setting('pg_trickle.analyze_change_buffers', current_setting('pg_trickle.analyze_change_buffers', true),
                                               'on or off', 'on');
    END IF;
    -- the planner never estimates fewer than one row, so a window of up to 4 rows is never
    -- underestimated beyond the tolerance below: the common one-row change asks nothing, unless
    -- the buffer has never been analysed (statistics of its xids survive a TRUNCATE, which
    -- forgets only its size). Asked of the analyse counters, not pg_stats and pg_class (0.4 ms of
    -- every small refresh); counters lost to a crash or a pg_stat_reset() cost one ANALYZE of a
    -- small window. Then the planner guesses a third of ten pages' worth
    -- of rows (about 150 for a few changes), which for a few changed orders chose a hash join over
    -- all the orders instead of their index (TouchedGroupsTest). Buffers named from the change
    -- tracking's record, as pending_changes does (change_buffer() is three nested function calls,
    -- twice per source with pending_rows).
    FOR src IN SELECT w.* FROM (
                   SELECT c.key::oid::regclass AS source, c.value::bigint AS n,
                          coalesce(to_regclass('pgtrickle_changes.' || quote_ident('changes_' || t.source_stable_name)),
                                   pgtrickle.change_buffer(c.key::oid::regclass)) AS buffer
                     FROM jsonb_each_text(coalesce(counts, '{}')) c
                     LEFT JOIN pgtrickle.pgt_change_tracking t ON t.source_relid = c.key::oid) w
                WHERE w.n > 4
                   OR (pg_stat_get_analyze_count(w.buffer) + pg_stat_get_autoanalyze_count(w.buffer) = 0
                       AND (SELECT b.reltuples < 0 FROM pg_class b WHERE b.oid = w.buffer)) LOOP
        n := src.n;
        CONTINUE WHEN src.buffer IS NULL;
        EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s WHERE xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(xid, $1)',
                       src.buffer) INTO plan USING frontier;
        estimated := (plan -> 0 -> 'Plan' ->> 'Plan Rows')::double precision;
        -- more than twice the estimate is analysed; so is more than four times the window and 20
        -- rows over it. An overestimate costs a hash join over a whole table where an index
        -- would find the few rows the changes join: 80 keys of 12 rows each cost PostgreSQL about
        -- the same as scanning 60,000 rows, so 150 estimated for 15 read them all.
        CONTINUE WHEN n <= 2 * estimated + 2 AND estimated <= 4 * n + 20;
        IF (SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = src.buffer) THEN
            BEGIN
                EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE NOWAIT', src.buffer);
                -- the window (xid, action), whose size is what the planner got wrong, and of the
                -- columns the differential statement of the stream table about to read it reads
                -- (columns_used, as its plan recorded it; with no reader named, of every stream
                -- table reading the source) those without statistics yet. Not every column: a
                -- buffer mirrors the whole row, and analysing all of TPC-H's lineitem took 20 ms
                -- where its xid alone took under one, for a window of 2,300 rows; Q6's four
                -- columns took 4 ms of a 5 ms refresh. A column's distribution (a filter's
                -- selectivity, a join key's distinct values) is much the same from one window to
                -- the next, so the statistics of an earlier window serve it.
                -- The window from a sample of 3,000 rows (statistics target 10), not PostgreSQL's
                -- 30,000: its estimate needs to be right within twice, which 3,000 rows give for a
                -- window of 1% of the buffer and more, and sampling was most of the analysis
                -- (13,550 buffered rows: 3.3 ms at the default target, 1.6 at 10). The columns
                -- analysed once keep the session's target: their distinct values (a join's
                -- selectivity) want the larger sample.
                target := current_setting('default_statistics_target');
                PERFORM set_config('default_statistics_target', '10', true);
                EXECUTE format('ANALYZE %s (xid, action)', src.buffer);
                PERFORM set_config('default_statistics_target', target, true);
                columns := (SELECT string_agg(DISTINCT quote_ident(u.c), ', ')
                              FROM pgtrickle.pgt_dependencies d CROSS JOIN LATERAL unnest(d.columns_used) u(c)
                             WHERE d.source_relid = src.source AND (reader IS NULL OR d.pgt_id = reader)
                               AND u.c NOT IN ('xid', 'action')
                               AND NOT EXISTS (SELECT FROM pg_stats ps JOIN pg_class b ON b.oid = src.buffer
                                                WHERE ps.schemaname = 'pgtrickle_changes' AND ps.tablename = b.relname
                                                  AND ps.attname = u.c));
                IF columns IS NOT NULL THEN
                    EXECUTE format('ANALYZE %s (%s)', src.buffer, columns);
                END IF;
                CONTINUE;
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END IF;
        blind := true;
    END LOOP;
    IF blind AND current_setting('enable_nestloop') = 'on' THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        RETURN jsonb_build_object('enable_nestloop', 'on');
    END IF;
    RETURN '{}';
END
$fn$;

-- Whether a stream table's differential statement reads a source itself (a join, a subquery, groups
-- recomputed from the table, derived tables), not only the changes, its own rows and its running
-- totals. Only then does the planner's estimate of the window decide anything that matters: a nested
-- loop over a source table it reads in full, once per changed row where it expected one (TPC-H Q12,
-- 240x). The changes alone (a filter, running totals) are joined only with the stream table and its
-- state, by their hash indexes, so an underestimate costs index probes where a hash join would
-- have read the whole table: no worse than recomputing. Their buffers need no statistics, which
-- were most of such a refresh (an ANALYZE for every window of more than 4 rows, since the buffer's
-- statistics always describe an earlier one). The engine names sources schema-qualified and quoted
-- (format('%I.%I')); a name found anywhere in the statement counts, so a doubt means statistics. As a
-- whole name: public.orders is not read by a statement that names public.orders_summary, the
-- stream table (a filter named after its source was analysed at every refresh: 6 ms of 30).
CREATE OR REPLACE FUNCTION pgtrickle.delta_reads_sources(st pgtrickle.pgt_stream_tables) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT st.derived IS NOT NULL
        OR EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                     JOIN pg_class c ON c.oid = d.source_relid JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE d.pgt_id = st.pgt_id
                      AND st.delta_sql ~ ('(^|[^A-Za-z0-9_$."])'
                                          || regexp_replace(format('%I.%I', n.nspname, c.relname), '([.$^*+?()\[\]{}|\\])', '\\\1', 'g')
                                          || '($|[^A-Za-z0-9_$"])'))
$fn$;

-- AUTO's cost rule: why this refresh should recompute rather than apply its changes (NULL: it
-- should not), and the verdict to remember (NULL: nothing asked). Asked only when the window is
-- large, in rows (at least 1,000) and against the sources (at least
-- pg_trickle.differential_cost_check_ratio of their estimated rows, default 0.001; 0 never asks),
-- since it plans both statements once more (EXPLAIN, as the stream table's owner, with true
-- statistics: refresh_change_statistics runs first, for a statement that reads a source; one that
-- does not costs about its window either way). The differential statement loses when the
-- planner's total cost for it exceeds its total cost for the FULL statement.
--
-- Planning is most of a refresh of a few thousand changes (TPC-H at SF 0.1: 7 to 22 ms of 30 to
-- 60), so the verdict is remembered (`memo`, the last one, which run_refresh keeps in the
-- frontier) and reused while the statement and the sources with changes (`buffers`, the probe's)
-- are the same and the window is within half to twice the one it was asked for, at most 50 times.
-- A verdict for FULL is also reused for any larger window, and for one down to its `floor`: the
-- differential statement costs more the more changes it reads, recomputing the same, so what lost
-- at a window loses at every larger one. The floor is twice the window at which the two would cost
-- the same were the differential cost proportional to the window (it is less than proportional:
-- the floor errs towards asking), and at least 1,000 rows; below the ratio of the sources that a
-- window must reach to be asked about, too (the verdict knows better than the ratio). run_refresh
-- counts a window only up to the least window the verdict holds for (pgtrickle.pending_changes'
-- cap): TPC-H Q20 at SF 1 counted 25,000 changed rows at every refresh to learn that recomputing
-- 4 ms still beat the differential statement. remembered_only: the remembered verdict or nothing
-- (verdict NULL), so that one for FULL is known before relevant_buffers and the change statistics,
-- which only a differential statement needs, are taken.
DROP FUNCTION IF EXISTS pgtrickle.differential_cost_fallback(pgtrickle.pgt_stream_tables, pg_snapshot, bigint);
DROP FUNCTION IF EXISTS pgtrickle.differential_cost_fallback(pgtrickle.pgt_stream_tables, pg_snapshot, bigint, jsonb);
DROP FUNCTION IF EXISTS pgtrickle.differential_cost_fallback(pgtrickle.pgt_stream_tables, pg_snapshot, bigint, jsonb, boolean);
CREATE OR REPLACE FUNCTION pgtrickle.differential_cost_fallback(st pgtrickle.pgt_stream_tables, frontier pg_snapshot, pending bigint,
                                                     memo jsonb, buffers text[], remembered_only boolean DEFAULT false,
                                                     OUT why text, OUT verdict jsonb)
    LANGUAGE plpgsql
AS $fn$
DECLARE
    ratio   double precision := pgtrickle.setting_ratio('pg_trickle.differential_cost_check_ratio', 0.001);
    rows    double precision;
    delta   double precision;
    recompute double precision;
    key     text;
    d       jsonb;
    i       bigint;
BEGIN
    -- a small window first: most refreshes, which need no estimate of the sources (a catalog query)
    IF ratio <= 0 OR pending < 1000 THEN
        RETURN;
    END IF;
    key := md5(st.delta_sql || '|' || coalesce(buffers::text, ''));
    IF memo ->> 'key' = key AND (memo ->> 'uses')::int < 50
       AND (pending BETWEEN (memo ->> 'pending')::bigint / 2 AND (memo ->> 'pending')::bigint * 2
            OR (memo ->> 'why' IS NOT NULL AND pending >= pgtrickle.cost_verdict_floor(memo))) THEN
        why := memo ->> 'why';
        verdict := memo || jsonb_build_object('uses', (memo ->> 'uses')::int + 1);
        RETURN;
    END IF;
    IF remembered_only THEN
        RETURN;
    END IF;
    rows := pgtrickle.source_row_estimate(st.pgt_id);
    IF rows IS NULL OR pending < ratio * greatest(rows, 1) THEN
        RETURN;
    END IF;
    delta := ((pgtrickle.execute_as_owner(st, 'EXPLAIN (FORMAT JSON) ' || pgtrickle.live_statement(st.delta_sql), frontier))[1]::json
              -> 0 -> 'Plan' ->> 'Total Cost')::double precision;
    -- and the statements that maintain its derived tables (pgtrickle.maintain_derived), which run first
    FOR d, i IN SELECT x, n FROM jsonb_array_elements(coalesce(st.derived, '[]')) WITH ORDINALITY AS a(x, n) LOOP
        delta := delta + ((pgtrickle.execute_as_owner(st, 'EXPLAIN (FORMAT JSON) ' || pgtrickle.live_statement(d ->> 'delta_sql'),
                              coalesce(st.frontier -> 'derived' ->> (i - 1)::int, st.frontier ->> 'snapshot')::pg_snapshot))[1]::json
                          -> 0 -> 'Plan' ->> 'Total Cost')::double precision;
    END LOOP;
    recompute := ((pgtrickle.execute_as_owner(st, 'EXPLAIN (FORMAT JSON) ' || pgtrickle.full_refresh_sql(st), NULL))[1]::json
             -> 0 -> 'Plan' ->> 'Total Cost')::double precision;
    IF delta > recompute THEN
        why := format('estimated cost of the differential statement %s > of recomputing %s (%s changed rows, %s source rows)',
                      round(delta::numeric), round(recompute::numeric), pending, round(rows::numeric));
    END IF;
    verdict := jsonb_build_object('key', key, 'pending', pending, 'why', why, 'uses', 0)
               || CASE WHEN why IS NOT NULL
                       THEN jsonb_build_object('floor', greatest(1000, ceil(2 * pending * recompute / delta))::bigint)
                       ELSE '{}' END::jsonb;
END
$fn$;

-- The least window a remembered verdict for FULL holds for (see differential_cost_fallback): its
-- floor, or half the window it was asked for if less, and no less than 1,000. NULL for a verdict
-- for the differential statement, or none.
CREATE OR REPLACE FUNCTION pgtrickle.cost_verdict_floor(memo jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    RETURN CASE WHEN memo ->> 'why' IS NOT NULL
                THEN greatest(1000, least(coalesce((memo ->> 'floor')::bigint, (memo ->> 'pending')::bigint), ((memo ->> 'pending')::bigint + 1) / 2)) END;

-- AUTO's measured rule. The cost rule above compares the planner's estimates, which leave out
-- planning itself and are often far off for a differential statement: on TPC-H at SF 0.1, Q2's
-- statement of 143 terms took 8.6 ms to plan and 38 ms in all where recomputing took 6; Q7's was
-- estimated cheaper than recomputing (36,638 against 45,536) and took 23 ms against 5. So AUTO
-- also remembers what each way took, in the frontier (`timing`, see pgtrickle.next_timing), and
-- refreshes FULL while the last differential refresh of a window of about this size (half to twice
-- as many changes; more changes are taken to cost at least as much) took more than
-- pg_trickle.differential_measured_ratio times the last FULL one, and 1 ms more.
--
-- What is not measured is tried: a FULL refresh after 8 refreshes with changes when it never ran;
-- once the last two differential refreshes each took more than half the first fill (the query's
-- rows inserted into the empty table at creation: about what REFRESH MATERIALIZED VIEW costs, but
-- measured cold, nothing cached or planned before it, so FULL usually costs less later: TPC-H Q22's
-- fill took about twice its later FULL refreshes; a trial costs about two differential refreshes);
-- and the way that lost, again after `wait` refreshes with changes, 8 at first and, each time it
-- loses again, doubled or 8 times its loss ratio if more (at most 1,024), since sources grow and
-- shrink. Returns why the refresh should be FULL (NULL: differential), whether it is such a trial
-- (explore), and whether the measurements decided at all (measured: else the cost rule may still
-- be asked).
CREATE OR REPLACE FUNCTION pgtrickle.measured_choice(timing jsonb, pending bigint,
                                                     OUT why text, OUT explore boolean, OUT measured boolean)
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    ratio  double precision := pgtrickle.setting_ratio('pg_trickle.differential_measured_ratio', 1.25);
    k      bigint := coalesce((timing ->> 'k')::bigint, 0);
    wait   bigint := coalesce((timing ->> 'wait')::bigint, 8);
    d_ms   double precision := (timing -> 'd' ->> 'ms')::double precision;
    f_ms   double precision := (timing -> 'f' ->> 'ms')::double precision;
    full_wins boolean := pgtrickle.measured_full_wins(timing, pending, ratio);
BEGIN
    explore := false;
    measured := full_wins IS NOT NULL;
    -- FULL never measured (no first fill seen: a stream table from before this rule)
    IF f_ms IS NULL AND d_ms >= 1 AND ratio > 0 AND k >= wait THEN
        explore := true;
        why := format('measured: trying FULL, never measured; the last differential refresh took %s ms for %s changes',
                      round(d_ms::numeric, 1), timing -> 'd' ->> 'n');
        RETURN;
    END IF;
    IF coalesce((timing -> 'f' ->> 'fill')::boolean, false) THEN
        -- only the first fill: no verdict (the cost rule may be asked), unless it is time to try FULL.
        -- One slow differential refresh is not enough: the first after a plan or a restart is cold
        -- (TPC-H Q10 at SF 0.1: 157 ms, then 38); d.ms is the lesser of the last two.
        measured := false;
        IF ratio > 0 AND (timing -> 'd' ->> 'c')::int >= 2 AND pending >= (timing -> 'd' ->> 'n')::bigint / 2
           AND d_ms > f_ms / 2 AND d_ms >= 1 THEN
            explore := true;
            why := format('measured: trying FULL, the last differential refresh took %s ms for %s changes, the first fill %s ms',
                          round(d_ms::numeric, 1), timing -> 'd' ->> 'n', round(f_ms::numeric, 1));
        END IF;
        RETURN;
    END IF;
    IF full_wins IS NULL THEN
        RETURN;
    END IF;
    IF full_wins AND k - (timing -> 'd' ->> 'at')::bigint >= wait THEN
        explore := true;
    ELSIF full_wins THEN
        why := format('measured: the last differential refresh took %s ms for %s changes, the last FULL one %s ms',
                      round(d_ms::numeric, 1), timing -> 'd' ->> 'n', round(f_ms::numeric, 1));
    ELSIF k - (timing -> 'f' ->> 'at')::bigint >= wait THEN
        explore := true;
        why := format('measured: trying FULL again, the last FULL refresh took %s ms, the last differential one %s ms for %s changes',
                      round(f_ms::numeric, 1), round(d_ms::numeric, 1), timing -> 'd' ->> 'n');
    END IF;
END
$fn$;

-- Whether the measurements in `timing` say FULL beats the differential refresh for a window of
-- `pending` changes (see measured_choice); NULL when they do not tell: a way not measured, the
-- rule off (ratio 0), or a window much smaller than the one measured.
CREATE OR REPLACE FUNCTION pgtrickle.measured_full_wins(timing jsonb, pending bigint, ratio double precision) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    d_ms double precision := (timing -> 'd' ->> 'ms')::double precision;
    d_n  bigint := greatest((timing -> 'd' ->> 'n')::bigint, 1);
    f_ms double precision := (timing -> 'f' ->> 'ms')::double precision;
    est  double precision;
BEGIN
    IF ratio <= 0 OR d_ms IS NULL OR f_ms IS NULL OR pending < d_n / 2 THEN
        RETURN NULL;
    END IF;
    est := d_ms * CASE WHEN pending <= 2 * d_n THEN pending::double precision / d_n ELSE 1 END;
    IF pending > 2 * d_n AND est <= ratio * f_ms THEN
        RETURN NULL;
    END IF;
    RETURN est > ratio * f_ms AND est - f_ms >= 1;
END
$fn$;

-- The frontier's `timing` after a refresh (see measured_choice): `k` counts refreshes with changes;
-- `d` and `f` are the last differential and FULL refresh (changes n, at k; f.fill for the first
-- fill): `ms` the lesser of the last two (`last` is the last one; the one before scaled to this
-- window when about its size, else left out), so that one slow refresh (a cold cache, the first
-- after a restart, a busy machine) decides nothing by itself, and `c` how many were measured.
-- `wait` doubles when a trial confirms what was measured before and is 8 again when it turns the
-- verdict. way: 'd', 'f' or 'fill'; ms NULL when nothing was measured.
CREATE OR REPLACE FUNCTION pgtrickle.next_timing(timing jsonb, way text, ms double precision, pending bigint, explored boolean)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    ratio  double precision := pgtrickle.setting_ratio('pg_trickle.differential_measured_ratio', 1.25);
    k      bigint := coalesce((timing ->> 'k')::bigint, 0) + 1;
    wait   bigint := coalesce((timing ->> 'wait')::bigint, 8);
    before boolean := pgtrickle.measured_full_wins(timing, pending, ratio);
    result jsonb := coalesce(timing, '{}'::jsonb);
    key    text;
    old    jsonb;
    prev   double precision;
BEGIN
    IF ms IS NOT NULL THEN
        key := CASE way WHEN 'd' THEN 'd' ELSE 'f' END;
        old := CASE WHEN way <> 'fill' AND NOT coalesce((timing -> key ->> 'fill')::boolean, false) THEN timing -> key END;
        -- the one before, as it would be for this window: a FULL refresh costs the same whatever changed
        prev := coalesce((old ->> 'last')::double precision, (old ->> 'ms')::double precision)
                * CASE WHEN key = 'f' THEN 1
                       WHEN pending BETWEEN (old ->> 'n')::bigint / 2 AND (old ->> 'n')::bigint * 2
                       THEN pending::double precision / greatest((old ->> 'n')::bigint, 1) END;
        result := result || jsonb_build_object(key,
                                               jsonb_build_object('ms', round(least(ms, prev)::numeric, 3), 'last', round(ms::numeric, 3),
                                                                  'n', pending, 'at', k, 'c', coalesce((old ->> 'c')::int, 0) + 1)
                                               || CASE WHEN way = 'fill' THEN '{"fill": true}' ELSE '{}' END::jsonb);
    END IF;
    IF explored THEN
        wait := CASE WHEN pgtrickle.measured_full_wins(result, pending, ratio) IS DISTINCT FROM before THEN 8
                     -- lost again: tried again less often, the more so the more it lost by
                     ELSE least(1024, greatest(wait * 2, ceil(8 * greatest((result -> 'd' ->> 'ms')::double precision,
                                                                           (result -> 'f' ->> 'ms')::double precision)
                                                                / nullif(least((result -> 'd' ->> 'ms')::double precision,
                                                                               (result -> 'f' ->> 'ms')::double precision), 0))))::bigint END;
    END IF;
    RETURN result || jsonb_build_object('k', k, 'wait', wait);
END
$fn$;
