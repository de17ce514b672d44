-- Refresh (unit io.pgtrickle.refresh, repeatable): run_refresh and what it needs: the query's
-- classification (time- and session-dependent results), FULL and DIFFERENTIAL statements, running as
-- the stream table's owner, and the settings that warn.
--
-- A refresh announces itself by its pgt_refresh_history row and nothing else: whoever cares (the
-- notify unit's subscriptions) hangs a trigger off that table. So it calls no other unit's SQL.

-- The one warning for an invalid pg_trickle.* setting: it names the setting, the value and the
-- default used instead, once per session and value (the scheduler's sessions read the settings
-- at every tick; a warning per tick would bury everything else in the log).
CREATE OR REPLACE FUNCTION pgtrickle.warn_invalid_setting(setting text, value text, expected text, default_value text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    warned text := 'pgtrickle.warned_' || md5(setting);
BEGIN
    IF current_setting(warned, true) IS DISTINCT FROM value THEN
        RAISE WARNING 'pgtrickle: ignoring % = ''%'': not %; using the default %', setting, value, expected, default_value;
        PERFORM set_config(warned, value, false);
    END IF;
END
$fn$;

-- A ratio setting ('0.5'): NULL or empty gives the default, and so does anything that is not a
-- number >= 0, with warn_invalid_setting's warning.
CREATE OR REPLACE FUNCTION pgtrickle.setting_ratio(setting text, default_value double precision) RETURNS double precision
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v text := nullif(btrim(current_setting(setting, true)), '');
BEGIN
    IF v IS NULL THEN
        RETURN default_value;
    END IF;
    IF v ~ '^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$' THEN
        RETURN v::double precision;
    END IF;
    PERFORM pgtrickle.warn_invalid_setting(setting, v, 'a number >= 0', default_value::text);
    RETURN default_value;
END
$fn$;

-- The sources' estimated rows together (pg_class.reltuples, the planner's), which AUTO's rules and
-- the FULL refresh weigh pending changes against; NULL when a source was never analysed (or
-- vacuumed) and so has no estimate.
CREATE OR REPLACE FUNCTION pgtrickle.source_row_estimate(pgt_id bigint) RETURNS double precision
    LANGUAGE sql STABLE
    RETURN (SELECT CASE WHEN bool_and(c.reltuples >= 0) THEN sum(c.reltuples) END
              FROM pgtrickle.pgt_dependencies d JOIN pg_class c ON c.oid = d.source_relid
             WHERE d.pgt_id = source_row_estimate.pgt_id);

-- A whole-number setting (milliseconds, days): the default when unset, and when invalid, with
-- warn_invalid_setting's one warning naming the default.
CREATE OR REPLACE FUNCTION pgtrickle.setting_number(setting text, default_value integer, unit text DEFAULT 'milliseconds')
    RETURNS integer
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v text := nullif(btrim(current_setting(setting, true)), '');
BEGIN
    IF v IS NULL THEN
        RETURN default_value;
    END IF;
    IF v ~ '^\d{1,9}$' THEN
        RETURN v::integer;
    END IF;
    PERFORM pgtrickle.warn_invalid_setting(setting, v, 'a number of ' || unit, default_value::text);
    RETURN default_value;
END
$fn$;

-- Whenever a stream table's query is set: why it must be recomputed at every refresh, and the
-- settings it runs under: those of the session that sets the query, except in an evolution's swap,
-- which runs in the container's session and hands over the shadow's (pgtrickle.evolving is on).
CREATE OR REPLACE FUNCTION pgtrickle.classify_query() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    NEW.recompute_reason := pgtrickle.query_recompute_reason(NEW.defining_query);
    IF coalesce(current_setting('pgtrickle.evolving', true), '') <> 'on' OR NEW.query_settings IS NULL THEN
        NEW.query_settings := pgtrickle.result_settings();
    END IF;
    RETURN NEW;
END
$fn$;

-- The same for a query's text: PostgreSQL parses it into a temporary view, whose rewritten tree is
-- read. For queries set by any path (create, alter, an evolution's swap), through the trigger below.
CREATE OR REPLACE FUNCTION pgtrickle.query_recompute_reason(query text) RETURNS text
    LANGUAGE plpgsql
AS $fn$
DECLARE
    tree text;
BEGIN
    EXECUTE format('CREATE TEMPORARY VIEW pgt_classify_query AS %s', query);
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = 'pg_temp.pgt_classify_query'::regclass;
    DROP VIEW pg_temp.pgt_classify_query;
    RETURN pgtrickle.recompute_reason(tree);
END
$fn$;

-- Why a query (its rewritten tree, nodeToString text) returns different rows from the same sources
-- at different times, or NULL: it calls volatile functions, reads the clock or the session
-- (CURRENT_DATE, now(), current_user, current_setting(), ...), or calls stable functions of its
-- own, which may read tables whose changes nobody captures. Stable built-ins that depend only on
-- settings (to_char, time zone arithmetic) are fine: every refresh applies query_settings.
-- With `transaction_clock`, the transaction's clock (now(), transaction_timestamp(), CURRENT_DATE,
-- CURRENT_TIMESTAMP, LOCALTIMESTAMP, ...: one value for every statement of a refresh) is no reason
-- to refuse a differential plan: the engine's planner maintains comparisons with it AND-ed in WHERE
-- (TemporalFilters) and refuses the plan, with its reason, for any other use of it.
-- statement_timestamp(), timeofday() and age(x) stay reasons.
CREATE OR REPLACE FUNCTION pgtrickle.recompute_reason(tree text, transaction_clock boolean) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    volatile_calls text;
    clock_calls    text;
    session_calls  text;
    own_calls      text;
BEGIN
    -- every function the query calls, read once; pg_depend does not record pinned built-ins such
    -- as random(), so from the tree
    SELECT string_agg(f.signature, ', ' ORDER BY f.signature) FILTER (WHERE f.provolatile = 'v'),
           string_agg(f.signature, ', ' ORDER BY f.signature) FILTER (WHERE f.provolatile = 's' AND f.builtin
                AND (f.proname IN ('statement_timestamp', 'timeofday')
                     OR (f.proname IN ('now', 'transaction_timestamp', 'current_date', 'localtimestamp', 'current_timestamp',
                                       'localtime', 'current_time') AND NOT transaction_clock)
                     OR (f.proname = 'age' AND f.pronargs = 1))),
           string_agg(f.signature, ', ' ORDER BY f.signature) FILTER (WHERE f.provolatile = 's' AND f.builtin
                AND f.proname ~ '^(current_|session_user$|user$|pg_|has_|to_reg|inet_|version$|txid_|obj_description$|col_description$|shobj_description$)'),
           string_agg(f.signature, ', ' ORDER BY f.signature) FILTER (WHERE f.provolatile = 's' AND NOT f.builtin)
      INTO volatile_calls, clock_calls, session_calls, own_calls
      FROM (SELECT DISTINCT p.oid::regprocedure::text AS signature, p.proname, p.pronargs, p.provolatile,
                   p.pronamespace = 'pg_catalog'::regnamespace AS builtin
              FROM regexp_matches(tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') AS m(f)
              JOIN pg_proc p ON p.oid = m.f[1]::oid) f;
    IF volatile_calls IS NOT NULL THEN
        RETURN 'the query calls volatile functions (' || volatile_calls || ')';
    END IF;
    -- CURRENT_DATE, CURRENT_TIME, CURRENT_TIMESTAMP, LOCALTIME, LOCALTIMESTAMP (with or without a
    -- precision) are SQLValueFunction nodes with ops 0 to 8, not function calls
    IF clock_calls IS NOT NULL OR (tree ~ '\{SQLVALUEFUNCTION :op [0-8] ' AND NOT transaction_clock) THEN
        RETURN 'the query reads the current time (' || coalesce(clock_calls, 'CURRENT_DATE, CURRENT_TIME, LOCALTIMESTAMP or the like') || ')';
    END IF;
    -- before PostgreSQL 16, CURRENT_USER, SESSION_USER, CURRENT_SCHEMA and the like were
    -- SQLValueFunction nodes too (ops 9 to 14)
    IF session_calls IS NOT NULL OR tree ~ '\{SQLVALUEFUNCTION :op (9|1[0-4]) ' THEN
        RETURN 'the query reads the session or the system catalogs (' || coalesce(session_calls, 'CURRENT_USER, CURRENT_SCHEMA or the like') || ')';
    END IF;
    IF own_calls IS NOT NULL THEN
        RETURN 'the query calls stable functions that may read tables whose changes are not captured (' || own_calls
               || '); declare them IMMUTABLE if their result depends on their arguments alone';
    END IF;
    RETURN NULL;
END
$fn$;

-- Every clock a reason: the stream table's recompute_reason, which says that its result moves
-- without its sources (so it is never skipped as NO_DATA), differentially maintained or not.
CREATE OR REPLACE FUNCTION pgtrickle.recompute_reason(tree text) RETURNS text
    LANGUAGE sql STABLE
    RETURN pgtrickle.recompute_reason(tree, false);

-- The current values of the settings that change what a query returns or how its values print:
-- the time zone and date, interval and float output (a row's text form is its identity), the
-- search path (functions the query calls may resolve names through it), locale-dependent
-- formatting, and the default text search configuration.
CREATE OR REPLACE FUNCTION pgtrickle.result_settings() RETURNS jsonb
    LANGUAGE sql STABLE
AS $fn$
    SELECT jsonb_object_agg(s.name, current_setting(s.name))
      FROM unnest(ARRAY['TimeZone', 'DateStyle', 'IntervalStyle', 'search_path', 'extra_float_digits', 'bytea_output',
                        'lc_monetary', 'lc_numeric', 'lc_time', 'default_text_search_config', 'xmloption']) AS s(name)
$fn$;

-- The queries of a query tree that the engine's planner inlines into the query reading them (as
-- PostgreSQL's pull_up_subqueries does) or keeps as derived tables: subqueries in FROM other than
-- UNION ALL branches, and WITH queries; each with how it is reached ('subquery' or 'ctequery' for
-- those of the query itself, 'nested subquery' or 'nested ctequery' for those of its subqueries)
-- and its own fields, the nodes nested in it elided (so a flag or clause in it is its own, not a
-- nested query's). The tree is cut at every brace that is not escaped; a piece belongs to the node
-- it opens, or, after a closing brace, to the node open again (the last one opened at that depth).
CREATE OR REPLACE FUNCTION pgtrickle.inlined_queries(tree text)
    RETURNS TABLE (via text, own text)
    LANGUAGE sql IMMUTABLE STRICT
AS $fn$
    WITH pieces AS (
        SELECT t.n, t.piece, CASE left(t.piece, 1) WHEN '{' THEN 1 WHEN '}' THEN -1 ELSE 0 END AS step
          FROM regexp_split_to_table(tree, '(?=(?<!\\)[{}])') WITH ORDINALITY AS t(piece, n)),
    depths AS (
        SELECT p.n, p.piece, p.step, sum(p.step) OVER (ORDER BY p.n) AS depth FROM pieces p),
    owned AS (
        SELECT d.n, d.piece, d.step,
               max(d.n) FILTER (WHERE d.step = 1) OVER (PARTITION BY d.depth ORDER BY d.n) AS owner
          FROM depths d),
    nodes AS (
        SELECT o.owner AS id, substring(min(o.piece) FILTER (WHERE o.n = o.owner) FROM '^\{(\w+)') AS kind,
               string_agg(CASE WHEN o.n = o.owner THEN o.piece ELSE substr(o.piece, 2) END, '' ORDER BY o.n) AS own
          FROM owned o WHERE o.owner IS NOT NULL GROUP BY o.owner),
    parents AS (
        -- a node's parent owns the piece before its opening brace, which ends with the field's name
        SELECT o.n AS id, prev.owner AS parent, substring(prev.piece FROM ':(\w+) *$') AS field
          FROM owned o JOIN owned prev ON prev.n = o.n - 1 WHERE o.step = 1)
    SELECT CASE WHEN holder.id = (SELECT min(t.id) FROM nodes t WHERE t.kind = 'QUERY') THEN qp.field
                ELSE 'nested ' || qp.field END, q.own
      FROM nodes q
      JOIN parents qp ON qp.id = q.id
      JOIN parents rp ON rp.id = qp.parent           -- the range table entry or the WITH entry
      JOIN nodes holder ON holder.id = rp.parent AND holder.kind = 'QUERY'
     WHERE q.kind = 'QUERY'
       AND (qp.field = 'ctequery' OR (qp.field = 'subquery' AND holder.own ~ ':setOperations <>'))
$fn$;

-- Why the planner can neither inline a subquery in FROM or a WITH query of a query tree nor keep it
-- as a derived table, or NULL. It inlines plain SELECTs over tables; one of the query itself that
-- aggregates, groups or uses DISTINCT it keeps as a derived table (R__52_derived_tables.sql), but
-- not one nested in another subquery. (Window functions, set-returning functions, DISTINCT ON and
-- subqueries in expressions are judged for the whole tree before this is asked.)
CREATE OR REPLACE FUNCTION pgtrickle.inline_blocker(tree text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
AS $fn$
    SELECT CASE WHEN i.via LIKE 'nested %' THEN 'a subquery of the query ' ELSE 'the query ' END
           || CASE WHEN i.via LIKE '%ctequery' THEN 'uses WITH, and a WITH query ' ELSE 'has a subquery in FROM that ' END
           || CASE WHEN i.own !~ ':groupingSets <>' THEN 'uses GROUP BY'
                   WHEN i.own !~ ':limitOffset <>' OR i.own !~ ':limitCount <>' THEN 'uses LIMIT or OFFSET'
                   WHEN i.own !~ ':sortClause <>' THEN 'uses ORDER BY'
                   WHEN i.own !~ ':setOperations <>' THEN 'uses UNION, INTERSECT or EXCEPT'
                   WHEN i.own ~ ':rtable <>' THEN 'reads no table'
                   WHEN i.own ~ ':hasAggs true' THEN 'aggregates'
                   WHEN i.own !~ ':groupClause <>' THEN 'uses GROUP BY'
                   WHEN i.own !~ ':havingQual <>' THEN 'uses HAVING'
                   ELSE 'uses DISTINCT' END
      FROM pgtrickle.inlined_queries(tree) i
     WHERE i.own !~ ':groupingSets <>' OR i.own !~ ':sortClause <>'
        OR i.own !~ ':limitOffset <>' OR i.own !~ ':limitCount <>' OR i.own !~ ':setOperations <>'
        OR i.own ~ ':rtable <>'
        OR (i.via LIKE 'nested %' AND (i.own ~ ':hasAggs true' OR i.own !~ ':groupClause <>' OR i.own !~ ':havingQual <>'
                                      OR i.own !~ ':distinctClause <>'))
     LIMIT 1
$fn$;

-- Why the query behind a (temporary) view cannot be refreshed differentially, or NULL when it can.
-- Read from the rewritten query tree, so it judges what PostgreSQL understood, not the spelling.
-- The engine's planner (bundle io.pgtrickle.refresh) accepts exactly these queries; a shared corpus
-- test keeps the two in step.
CREATE OR REPLACE FUNCTION pgtrickle.differential_blocker(view_oid oid) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    tree     text;
    found    text;
    branches integer;
BEGIN
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = view_oid;

    -- A result that moves without its sources (volatile functions, the session) cannot be maintained
    -- from their changes; one that moves with the transaction's clock can, where the engine's
    -- planner finds the clock compared in WHERE (its refusal says why not).
    found := pgtrickle.recompute_reason(tree, true);
    IF found IS NOT NULL THEN
        RETURN found;
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

    -- Window functions are maintained by the partitions the changes touch (Windows): each window
    -- needs a PARTITION BY, and the query no GROUP BY, DISTINCT or aggregate of its own.
    IF tree ~ ':hasWindowFuncs true' THEN
        IF tree ~ ':partitionClause <>' THEN
            RETURN 'the query uses a window function without PARTITION BY';
        END IF;
        IF substring(tree FROM ':hasAggs (\w+)') = 'true' OR substring(tree FROM '.*:groupClause (.)') = '('
                OR substring(tree FROM '.*:distinctClause (.)') = '(' THEN
            RETURN 'the query uses window functions over GROUP BY, DISTINCT, aggregates or a named WINDOW';
        END IF;
    END IF;
    IF tree ~ ':hasTargetSRFs true' THEN RETURN 'the query calls set-returning functions in its select list'; END IF;
    -- Subqueries: the engine maintains those AND-ed in WHERE, and says why not otherwise.
    -- DISTINCT ON of the query itself is maintained by the keys the changes touch (DistinctOn), without
    -- GROUP BY, aggregates, window functions or LIMIT; in a subquery it is not. (The first
    -- hasDistinctOn of the tree is the query's own: its flags are printed before its range table.)
    IF tree ~ ':hasDistinctOn true' THEN
        IF substring(tree FROM ':hasDistinctOn (\w+)') <> 'true'
           OR (SELECT count(*) FROM regexp_matches(tree, ':hasDistinctOn true', 'g')) > 1 THEN
            RETURN 'a subquery uses DISTINCT ON';
        END IF;
        IF substring(tree FROM ':hasAggs (\w+)') = 'true' OR tree ~ ':hasWindowFuncs true'
           OR substring(tree FROM '.*:groupClause (.)') = '(' THEN
            RETURN 'the query uses DISTINCT ON over GROUP BY, aggregates or window functions';
        END IF;
        IF substring(tree FROM '.*:limitCount (.)') = '{' OR substring(tree FROM '.*:limitOffset (.)') = '{' THEN
            RETURN 'the query uses ORDER BY ... LIMIT over DISTINCT ON';
        END IF;
    END IF;
    IF tree ~ ':hasRecursive true' THEN RETURN 'the query uses WITH RECURSIVE'; END IF;
    -- subqueries in FROM and WITH queries are inlined by the planner when they are plain SELECTs;
    -- the checks below then see their nodes too, which then have no aggregate, grouping or limit
    found := pgtrickle.inline_blocker(tree);
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    IF tree ~ ':groupingSets \(' THEN RETURN 'the query uses GROUPING SETS, ROLLUP or CUBE'; END IF;
    -- ORDER BY ... LIMIT k of the query itself is kept as its first k rows (TopK); OFFSET, WITH TIES
    -- and a LIMIT in a subquery are not. The LIMIT of the query itself is the last in the tree: its
    -- subqueries (range table, target list, quals) are printed before it.
    IF tree ~ ':limitOffset \{' THEN RETURN 'the query uses OFFSET'; END IF;
    IF tree ~ ':limitOption 1' THEN RETURN 'the query uses FETCH FIRST ... WITH TIES'; END IF;
    IF (SELECT count(*) FROM regexp_matches(tree, ':limitCount \{', 'g'))
       > (CASE WHEN substring(tree FROM '.*:limitCount (.)') = '{' THEN 1 ELSE 0 END) THEN
        RETURN 'a subquery uses LIMIT';
    END IF;
    -- Outer joins are rewritten into matched and padded branches (OuterJoins), which the ROWS
    -- strategy maintains, and GROUPS under GROUP BY or DISTINCT; an aggregate of the whole query
    -- (its hasAggs is the first in the tree, its GROUP BY the last) is one group: recomputed.
    IF tree ~ ':jointype [1-9]' AND substring(tree FROM ':hasAggs (\w+)') = 'true'
            AND substring(tree FROM '.*:groupClause (.)') <> '(' THEN
        RETURN 'the query aggregates over an outer join without GROUP BY';
    END IF;
    IF tree ~ ':isNatural true' THEN RETURN 'the query uses NATURAL JOIN'; END IF;
    -- (kind 6 is a reference to a WITH query, inlined)
    IF tree ~ ':rtekind [34578]' THEN RETURN 'the query reads a function, VALUES or another non-table FROM item'; END IF;
    IF tree ~ ':lateral true' THEN RETURN 'the query uses LATERAL'; END IF;
    IF tree ~ ':varattno -' THEN RETURN 'the query reads system columns'; END IF;
    -- (a window's PARTITION BY and ORDER BY make resjunk entries too, and DISTINCT ON's ORDER BY:
    -- Windows and DistinctOn check their keys themselves)
    IF tree !~ ':hasWindowFuncs true' AND substring(tree FROM ':hasDistinctOn (\w+)') <> 'true'
       AND pgtrickle.strip_nodes(tree, 'AGGREF') ~ ':resjunk true' THEN
        RETURN 'an ORDER BY or GROUP BY expression is not in the select list';
    END IF;
    -- Set operations' branches are subqueries; other subqueries in FROM were judged by inline_blocker.
    -- UNION ALL is maintained by rows, UNION, INTERSECT and EXCEPT by the rows they touch (SetOperations).
    SELECT count(*) + 1 INTO branches FROM regexp_matches(tree, '\{SETOPERATIONSTMT', 'g');
    IF branches > 1 THEN
        IF tree ~ ':hasAggs true' OR tree ~ ':groupClause \(' OR tree ~ ':distinctClause \(' THEN
            RETURN CASE WHEN tree ~ '\{SETOPERATIONSTMT :op [2-9]' OR tree ~ '\{SETOPERATIONSTMT :op \d+ :all false'
                        THEN 'a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT'
                        ELSE 'a UNION ALL branch aggregates or uses DISTINCT' END;
        END IF;
    END IF;
    -- An aggregate without GROUP BY is one group: the engine keeps it as running totals when it
    -- can (count, sum, avg of exact numbers) and says why not otherwise.
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

CREATE OR REPLACE FUNCTION pgtrickle.explain_refresh_mode(name text)
    RETURNS TABLE (configured_mode text, effective_mode text, downgrade_reason text, recompute_reason text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT s.requested_refresh_mode, s.refresh_mode, s.refresh_mode_reason, s.recompute_reason
      FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = (pgtrickle.find_stream_table(name)).pgt_id
$fn$;

-- A stream table's columns in order (n counts them from 1), each with the form in which a FULL
-- refresh compares it (ident, where $ stands for the column): its value where equal values print
-- the same (by_value: integers, bool, date, timestamp(tz), uuid, bytea, text and varchar under
-- COLLATE "C", numeric with a declared scale), its text form otherwise (1.0 and 1.00, '1 day' and
-- '24 hours', case-insensitive collations; json and point have no equality).
CREATE OR REPLACE FUNCTION pgtrickle.identity_columns(relid oid)
    RETURNS TABLE (attname name, attnum int2, n bigint, type text, attcollation oid, by_value boolean, ident text)
    LANGUAGE sql STABLE
AS $fn$
    SELECT a.attname, a.attnum, row_number() OVER (ORDER BY a.attnum), format_type(a.atttypid, a.atttypmod), a.attcollation,
           v.by_value,
           CASE WHEN NOT v.by_value THEN '($)::text'
                WHEN a.attcollation <> 0 THEN format('($)::%s COLLATE "C"', format_type(a.atttypid, a.atttypmod))
                ELSE format('($)::%s', format_type(a.atttypid, a.atttypmod)) END
      FROM pg_attribute a
     CROSS JOIN LATERAL (SELECT a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'oid'::regtype,
                                               'bool'::regtype, 'date'::regtype, 'timestamp'::regtype,
                                               'timestamptz'::regtype, 'uuid'::regtype, 'bytea'::regtype,
                                               'text'::regtype, 'varchar'::regtype)
                                OR (a.atttypid = 'numeric'::regtype AND a.atttypmod >= 0) AS by_value) v
     WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum
$fn$;

-- The columns (attribute numbers, in the index's order) of the unique index a differential refresh
-- finds a stream table's stored rows by, instead of the engine's row index over a hash of all
-- columns (DeltaPlanner.applyRows): valid, immediate, not partial, plain columns with their default
-- operator classes and collations, and of several columns only if every one is NOT NULL (a row
-- with a NULL in its one key column is found by the index's IS NULL); the one with the fewest
-- columns. NULL when there is none. A plan made with one names it at its end
-- (/*pgtrickle row_key ...*/): run_refresh plans again when the stream table's key changed.
CREATE OR REPLACE FUNCTION pgtrickle.row_key(relid oid) RETURNS int2[]
    LANGUAGE sql STABLE
AS $fn$
    SELECT i.indkey::int2[]
      FROM pg_index i
     WHERE i.indrelid = relid AND i.indisunique AND i.indisvalid AND i.indimmediate
       AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = i.indnatts
       AND NOT EXISTS (SELECT FROM unnest(i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[]) AS k(att, opclass, coll)
                        JOIN pg_opclass o ON o.oid = k.opclass
                        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att
                       WHERE k.att = 0 OR NOT o.opcdefault OR k.coll <> a.attcollation OR NOT a.attnotnull AND i.indnkeyatts > 1)
     ORDER BY i.indnkeyatts, i.indexrelid
     LIMIT 1
$fn$;

-- The FULL refresh of one stream table as a single statement: recompute the query, compare it
-- with the stored rows as multisets, delete the surplus copies and insert the missing ones.
-- Unchanged rows are not touched, and the counts are exact: an updated row is one delete and one
-- insert.
--
-- A row's identity is its text form (what a reader sees), but rendering every row of both sides
-- as text, and grouping by those wide keys, cost 2-3 times grouping by the values. So each column is compared in the cheapest form that is still
-- exact: its own value where equality means the same text (integers, booleans, dates and
-- timestamps, uuid, bytea, text and varchar compared byte-wise under COLLATE "C", numeric with a
-- declared scale), its text form otherwise (numeric without a scale: 1.0 = 1.00; float: 0 = -0;
-- interval: '1 day' = '24 hours'; json and point, which have no equality; anything else). One
-- hash aggregate over both sides (the new rows counted +1, the stored rows -1 with their ctid)
-- yields the identities whose counts differ; nothing is materialised on the way. A stored row
-- whose identity lost its only copy is deleted by its ctid (a TID scan); identities stored more
-- than once (a multiset) are found again by a second scan of the stream table, which runs only if
-- there are any. Inserted rows are rebuilt from the identity (a text-form column is cast back to
-- its type). An empty stream table (its first fill, a shadow build, after a TRUNCATE of it) gets
-- a plain INSERT of the query instead. Measured on 1M rows: docs/benchmarks/full-refresh.md, and
-- the candidates tried (hashes, a hash join, EXCEPT ALL) in docs/benchmarks/full-refresh-candidates.md.
--
-- read_only: the same difference as a query that writes nothing and returns what to delete (ctids)
-- and to insert (rows of the table's type), as text, and its snapshot. PostgreSQL runs no part of a
-- statement that writes in parallel, and recomputing a query over large sources is where parallel
-- workers pay (REFRESH MATERIALIZED VIEW uses them); see pgtrickle.full_refresh.
CREATE OR REPLACE FUNCTION pgtrickle.full_refresh_sql(st pgtrickle.pgt_stream_tables, read_only boolean) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    target  text := format('%I.%I', st.pgt_schema, st.pgt_name);
    cols    text;   -- the stream table's columns
    new_ids text;   -- each column's identity form, from the query's row q
    old_ids text;   -- the same from a stored row s
    old_row text;   -- old_ids without the names, for ROW(...)
    keys    text;   -- __pgt_k1, __pgt_k2, ...
    rebuilt text;   -- a stored row's values from its identity
    diff    text;   -- the rows by which the query and the stored rows differ
    victims text;   -- the stored rows to delete
BEGIN
    SELECT string_agg(format('%I', c.attname), ', ' ORDER BY c.attnum),
           string_agg(format('%s AS __pgt_k%s', replace(c.ident, '$', 'q.' || format('%I', c.attname)), c.n), ', ' ORDER BY c.attnum),
           string_agg(format('%s AS __pgt_k%s', replace(c.ident, '$', 's.' || format('%I', c.attname)), c.n), ', ' ORDER BY c.attnum),
           string_agg(replace(c.ident, '$', 's.' || format('%I', c.attname)), ', ' ORDER BY c.attnum),
           string_agg(format('__pgt_k%s', c.n), ', ' ORDER BY c.attnum),
           string_agg(CASE WHEN c.by_value THEN format('__pgt_k%s', c.n) ELSE format('__pgt_k%s::%s', c.n, c.type) END, ', ' ORDER BY c.attnum)
      INTO cols, new_ids, old_ids, old_row, keys, rebuilt
      FROM pgtrickle.identity_columns(st.pgt_relid) c;
    diff := format($sql$
             diff AS (
                 SELECT %3$s, count(*) - 2 * count(__pgt_ctid) AS __pgt_d, count(__pgt_ctid) AS __pgt_stored,
                        min(__pgt_ctid) AS __pgt_victim
                   FROM (SELECT %4$s, NULL::tid AS __pgt_ctid FROM (%1$s) q(%2$s)
                          WHERE %7$s
                         UNION ALL
                         SELECT %5$s, s.ctid FROM %6$s s) u
                  GROUP BY %3$s
                 HAVING count(*) <> 2 * count(__pgt_ctid))$sql$,
        st.defining_query, cols, keys, new_ids, old_ids, target,
        CASE WHEN read_only THEN 'true' ELSE '(SELECT __pgt_filled FROM __pgt_state)' END);
    victims := format($sql$
                     SELECT diff.__pgt_victim FROM diff WHERE diff.__pgt_d < 0 AND diff.__pgt_stored = 1
                     UNION ALL
                     SELECT c.__pgt_ctid FROM (
                         SELECT s.__pgt_ctid, m.__pgt_d, row_number() OVER (PARTITION BY m.__pgt_id) AS __pgt_copy
                           FROM (SELECT s.ctid AS __pgt_ctid, ROW(%3$s) AS __pgt_id FROM %2$s s) s
                           JOIN (SELECT ROW(%1$s) AS __pgt_id, diff.__pgt_d FROM diff
                                  WHERE diff.__pgt_d < 0 AND diff.__pgt_stored > 1) m ON m.__pgt_id = s.__pgt_id
                          WHERE EXISTS (SELECT FROM diff WHERE diff.__pgt_d < 0 AND diff.__pgt_stored > 1)) c
                      WHERE c.__pgt_copy <= -c.__pgt_d$sql$, keys, target, old_row);
    IF read_only THEN
        -- what to delete (ctids) and insert (rows of the table's type) as text, and the snapshot
        RETURN format($sql$
        WITH %1$s
        SELECT ARRAY(%2$s)::text, ARRAY(SELECT ROW(%3$s)::%4$s FROM diff CROSS JOIN LATERAL generate_series(1, diff.__pgt_d)
                                  WHERE diff.__pgt_d > 0)::text,
               pg_current_snapshot()::text
        $sql$, diff, victims, rebuilt, target);
    END IF;
    RETURN format($sql$
        WITH __pgt_state AS (SELECT EXISTS (SELECT FROM %3$s) AS __pgt_filled),%4$s,
             deleted AS (
                 DELETE FROM %3$s t WHERE t.ctid = ANY (ARRAY(%5$s))
                 RETURNING 1),
             inserted AS (
                 INSERT INTO %3$s (%2$s)
                 SELECT %6$s FROM diff CROSS JOIN LATERAL generate_series(1, diff.__pgt_d) WHERE diff.__pgt_d > 0
                 RETURNING 1),
             filled AS (
                 INSERT INTO %3$s (%2$s)
                 SELECT * FROM (%1$s) q WHERE NOT (SELECT __pgt_filled FROM __pgt_state)
                 RETURNING 1)%7$s
        -- deleted first: the old copy of a row must be gone before its new copy is inserted, or a
        -- unique index on the stream table rejects the new copy (initplans run in this order)
        SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM inserted) + (SELECT count(*) FROM filled),
               pg_current_snapshot()::text
        $sql$, st.defining_query, cols, target, diff, victims, rebuilt,
        -- running totals and derived tables are refilled from scratch in the same statement (and snapshot)
        pgtrickle.refill_ctes(st.state_table, st.state_sql, st.derived));
END
$fn$;

-- The difference a FULL refresh applies to a stream table with a unique index on plain columns
-- (the user's: one created on the stream table, not partial, not deferred, default operator
-- classes; the one of fewest columns), as a query that writes nothing, as full_refresh_sql(st, true)
-- returns it: the stored rows to delete (ctids) and the rows to insert (of the table's type), as
-- text, the snapshot, and whether the pairing below held. The query's rows are paired with the
-- stored ones by that key in a hash (or merge) FULL JOIN, where full_refresh_sql groups both sides
-- by every column: PostgreSQL's hash join of 1M rows a side took a third to half of its hash
-- aggregate (docs/benchmarks/full-refresh-candidates.md), and as a query that writes nothing it
-- may run in parallel, as REFRESH MATERIALIZED VIEW does. A pair whose rows differ (by the
-- columns' identity forms, as full_refresh_sql compares them: 1.0 and 1.00 differ) is the stored
-- row deleted and the new one inserted, a stored row without a partner is deleted, a new one
-- inserted: the counts are full_refresh_sql's.
--
-- The pairing is exact only when every key is in one pair at most, and with NULLs in no key (`=`
-- never pairs them). The stored rows' keys are unique (the index), so what can break it is the
-- query returning a key twice: then a stored row is in two pairs, which the query counts (pairs
-- with a stored row against the stored rows). A key twice among rows without a stored partner is
-- inserted twice, which the index refuses, as it refuses the query's rows whichever way they are
-- written. Keys are compared under COLLATE "C" where they have a collation: finer than any
-- collation's equality, so of two rows the index deems equal at most one pairs, and the other
-- meets the index. When the pairing did not hold (or a key was NULL), full_refresh applies the
-- difference of all columns instead. NULL when the stream table has no such index.
CREATE OR REPLACE FUNCTION pgtrickle.full_refresh_keyed_sql(st pgtrickle.pgt_stream_tables) RETURNS text
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    target  text := format('%I.%I', st.pgt_schema, st.pgt_name);
    key     int2[];
    cols    text;   -- the stream table's columns
    q_cols  text;   -- the same of the query's row, j
    changed text;   -- whether a pair's rows differ
    pairing text;   -- the join condition on the key
    nulls   text;   -- whether a row of either side has a NULL in its key
BEGIN
    SELECT i.indkey::int2[] INTO key
      FROM pg_index i
     WHERE i.indrelid = st.pgt_relid AND i.indisunique AND i.indisvalid AND i.indimmediate
       AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = i.indnatts
       AND NOT EXISTS (SELECT FROM unnest(i.indkey::int2[], i.indclass::oid[]) AS k(att, opclass)
                        JOIN pg_opclass o ON o.oid = k.opclass
                       WHERE k.att = 0 OR NOT o.opcdefault)
     ORDER BY i.indnkeyatts, i.indexrelid
     LIMIT 1;
    IF key IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(format('%I', c.attname), ', ' ORDER BY c.attnum),
           string_agg(format('j.%I', c.attname), ', ' ORDER BY c.attnum),
           -- a key column of a type whose equality is identity is equal in every pair
           CASE WHEN bool_or(NOT (c.by_value AND c.attnum = ANY (key)))
                THEN format('ROW(%s) IS DISTINCT FROM ROW(%s)',
                            string_agg(replace(c.ident, '$', 'q.' || format('%I', c.attname)), ', ' ORDER BY c.attnum)
                                FILTER (WHERE NOT (c.by_value AND c.attnum = ANY (key))),
                            string_agg(replace(c.ident, '$', 's.' || format('%I', c.attname)), ', ' ORDER BY c.attnum)
                                FILTER (WHERE NOT (c.by_value AND c.attnum = ANY (key))))
                ELSE 'false' END,
           string_agg(format('q.%1$I = s.%1$I%2$s', c.attname, CASE WHEN c.attcollation <> 0 THEN ' COLLATE "C"' ELSE '' END), ' AND ')
               FILTER (WHERE c.attnum = ANY (key)),
           string_agg(format('(s.%1$I IS NULL AND s.ctid IS NOT NULL) OR (q.%1$I IS NULL AND q.__pgt_present)', c.attname), ' OR ')
               FILTER (WHERE c.attnum = ANY (key))
      INTO cols, q_cols, changed, pairing, nulls
      FROM pgtrickle.identity_columns(st.pgt_relid) c;
    RETURN format($sql$
        SELECT p.victims::text, p.rows::text, pg_current_snapshot()::text,
               p.paired = (SELECT count(*) FROM %2$s) AND NOT p.null_keys
          FROM (SELECT count(j.__pgt_ctid) AS paired,
                       coalesce(bool_or(j.__pgt_null_key), false) AS null_keys,
                       array_agg(j.__pgt_ctid) FILTER (WHERE j.__pgt_ctid IS NOT NULL AND j.__pgt_changed) AS victims,
                       array_agg(ROW(%3$s)::%2$s) FILTER (WHERE j.__pgt_present AND j.__pgt_changed) AS rows
                  FROM (SELECT q.*, s.ctid AS __pgt_ctid,
                               s.ctid IS NULL OR q.__pgt_present IS NULL OR %4$s AS __pgt_changed, %6$s AS __pgt_null_key
                          FROM (SELECT q0.*, true AS __pgt_present FROM (%1$s) q0(%7$s)) q
                          FULL JOIN %2$s s ON %5$s) j) p
        $sql$, st.defining_query, target, q_cols, changed, pairing, nulls, cols);
END
$fn$;

-- The statement of a FULL refresh: recompute the query, apply the difference to the stored rows.
CREATE OR REPLACE FUNCTION pgtrickle.full_refresh_sql(st pgtrickle.pgt_stream_tables) RETURNS text
    LANGUAGE sql STABLE
    RETURN pgtrickle.full_refresh_sql(st, false);

-- Runs a FULL refresh as the stream table's owner and returns {deleted, inserted, snapshot}.
--
-- Usually full_refresh_sql's statement, with enough work_mem for its hash aggregate to stay in
-- memory: one entry per distinct row of both sides, measured at about twice the stream table's
-- heap when nothing changed, and hash_mem_multiplier (2 by default) doubles work_mem for hashing:
-- so twice the heap, for room, up to pg_trickle.full_refresh_work_mem megabytes (default 128; 0
-- leaves work_mem alone). Never lowers the session's work_mem, and puts it back afterwards.
--
-- When most rows change, deleting and inserting them one by one (each insert checking the unique
-- indexes against the copy it replaces) costs several times rebuilding the table. So a swap
-- instead: TRUNCATE and INSERT the query's rows, when the changes pending in the sources' buffers
-- (pending; an UPDATE is two) reach pg_trickle.full_refresh_swap_ratio (default 0: never) of
-- the sources' estimated rows, and the stream table is not small (8 MB or more; below that the
-- difference is cheap). Its counts are every old row deleted and every new row inserted, not the
-- difference. Opt-in, because readers of a stream table expect never to wait for a refresh and
-- subscribers to be told the difference. TRUNCATE takes an ACCESS EXCLUSIVE lock until the refresh commits, as REFRESH
-- MATERIALIZED VIEW does: readers wait, and a transaction whose snapshot predates the refresh sees
-- the stream table empty. Indexes (the row index pgt_<id>_row_hash, the user's), grants and
-- triggers stay. Not taken when a foreign key references the stream table or the session may not
-- TRUNCATE it.
CREATE OR REPLACE FUNCTION pgtrickle.full_refresh(st pgtrickle.pgt_stream_tables, pending bigint DEFAULT 0) RETURNS text[]
    LANGUAGE plpgsql
AS $fn$
DECLARE
    cap      bigint := pgtrickle.setting_number('pg_trickle.full_refresh_work_mem', 128, 'megabytes')::bigint * 1024;
    ratio    double precision := pgtrickle.setting_ratio('pg_trickle.full_refresh_swap_ratio', 0);
    before   text := current_setting('work_mem');
    size     bigint := pg_relation_size(st.pgt_relid);
    estimate double precision;
    wanted   bigint;
    res      text[];
    old_rows text[];
    applied  text[];
    keyed    text;
BEGIN
    PERFORM pgtrickle.grant_plan_tables(st);
    IF ratio > 0 AND pending > 0 AND size >= 8 * 1024 * 1024
       AND has_table_privilege(st.pgt_relid, 'TRUNCATE')
       AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.confrelid = st.pgt_relid) THEN
        estimate := pgtrickle.source_row_estimate(st.pgt_id);
        IF estimate IS NOT NULL AND pending >= ratio * greatest(estimate, 1) THEN
            old_rows := pgtrickle.execute_as_owner(st, format('SELECT count(*) FROM %s', st.pgt_relid::regclass), NULL);
            EXECUTE format('TRUNCATE %s', st.pgt_relid::regclass);
            res := pgtrickle.execute_as_owner(st, format($sql$
                WITH filled AS (INSERT INTO %1$s SELECT * FROM (%2$s) q RETURNING 1)%3$s
                SELECT count(*), pg_current_snapshot()::text FROM filled
                $sql$, st.pgt_relid::regclass, st.defining_query,
                pgtrickle.refill_ctes(st.state_table, st.state_sql, st.derived)), NULL);
            RETURN ARRAY[old_rows[1], res[1], res[2]];
        END IF;
    END IF;
    wanted := least(cap, 2 * size / 1024);
    IF wanted > pg_size_bytes(before) / 1024 THEN
        PERFORM set_config('work_mem', wanted || 'kB', true);
    END IF;
    -- The difference computed by a query that writes nothing, which PostgreSQL may run in parallel
    -- as REFRESH MATERIALIZED VIEW does, then applied by a second statement. Same snapshot as far
    -- as the stream table goes: only refreshes write it, and this one holds its catalog row. The
    -- difference travels as text. Not for a stream table that refills running totals or derived
    -- tables in the same statement, nor an empty one (everything would travel).
    IF st.state_table IS NULL AND st.derived IS NULL AND size > 0 THEN
        -- Paired by a unique key where the stream table has one (full_refresh_keyed_sql): false
        -- in its fourth column when the pairing did not hold, and the difference of all columns
        -- decides. Only while what travels is small: a result of at most 1 MB, or pending changes
        -- of at most a tenth of the sources' estimated rows. Every row of 1M changed took 22 times
        -- REFRESH MATERIALIZED VIEW as text, where the one statement below writes them directly.
        keyed := CASE WHEN size <= 1024 * 1024 OR (pending > 0 AND pending <= 0.1 * pgtrickle.source_row_estimate(st.pgt_id))
                      THEN pgtrickle.full_refresh_keyed_sql(st) END;
        IF keyed IS NOT NULL THEN
            res := pgtrickle.execute_as_owner(st, '/*pgtrickle plan once*/' || keyed, NULL);
            IF NOT res[4]::boolean THEN
                res := NULL;
            END IF;
        END IF;
        -- Without one, for a small result of large sources (an aggregate, a selective filter): at
        -- most 1 MB, since all of it may travel; sources below min_parallel_table_scan_size get no
        -- workers, so the one statement below is cheaper for them.
        IF res IS NULL AND size <= 1024 * 1024 AND current_setting('max_parallel_workers_per_gather')::int > 0
           AND (SELECT sum(c.relpages) FROM pgtrickle.pgt_dependencies d JOIN pg_class c ON c.oid = d.source_relid
                 WHERE d.pgt_id = st.pgt_id) * current_setting('block_size')::bigint
               >= pg_size_bytes(current_setting('min_parallel_table_scan_size')) THEN
            res := pgtrickle.execute_as_owner(st, '/*pgtrickle plan once*/' || pgtrickle.full_refresh_sql(st, true), NULL);
        END IF;
    END IF;
    IF res IS NOT NULL THEN
        PERFORM set_config('work_mem', before, true);
        IF coalesce(res[1], '{}') = '{}' AND coalesce(res[2], '{}') = '{}' THEN
            RETURN ARRAY['0', '0', res[3]];
        END IF;
        -- rows of the table's own type: unnest's columns are the table's, in order
        applied := pgtrickle.execute_as_owner(st, format($sql$
            WITH deleted AS (DELETE FROM %1$s t WHERE t.ctid = ANY (%2$L::tid[]) RETURNING 1),
                 inserted AS (INSERT INTO %1$s SELECT * FROM unnest(%3$L::%1$s[])
                               WHERE (SELECT count(*) FROM deleted) >= 0 RETURNING 1)
            SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM inserted)
            $sql$, st.pgt_relid::regclass, coalesce(res[1], '{}'), coalesce(res[2], '{}')), NULL);
        RETURN ARRAY[applied[1], applied[2], res[3]];
    END IF;
    res := pgtrickle.execute_as_owner(st, '/*pgtrickle plan once*/' || pgtrickle.full_refresh_sql(st), NULL);
    PERFORM set_config('work_mem', before, true);
    RETURN res;
END
$fn$;

-- Stores the engine's plan for a stream table's defining query: the differential statement, or
-- NULL and the reason it cannot have one (the stream table then runs FULL), and for plans that keep
-- running totals their table and refill query: the next refresh is then FULL, which fills it. A plan
-- made for a query the stream table no longer has is ignored. Returns whether the plan was stored.
DROP FUNCTION IF EXISTS pgtrickle.set_refresh_plan(bigint, text, text, text, text, text);
CREATE OR REPLACE FUNCTION pgtrickle.set_refresh_plan(pgt_id bigint, planned_query text, delta_sql text, reason text,
                                           state_table text DEFAULT NULL, state_sql text DEFAULT NULL,
                                           derived jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st     pgtrickle.pgt_stream_tables;
    filled boolean := false;
BEGIN
    SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = set_refresh_plan.pgt_id FOR UPDATE;
    -- Running totals and derived tables must match the stored rows, i.e. the sources at the
    -- frontier. With no change since the frontier the sources now are the sources then: fill them
    -- now, in one statement with the check. Otherwise the next refresh runs FULL, which fills them.
    -- So does a plan with temporal filters: the stored rows are of the clock at the last refresh,
    -- and a clock's derived table filled now would hold the time now.
    IF (set_refresh_plan.state_sql IS NOT NULL OR set_refresh_plan.derived IS NOT NULL) AND st.frontier ? 'snapshot'
       AND st.defining_query = planned_query AND position('/*pgtrickle clock*/' IN coalesce(set_refresh_plan.delta_sql, '')) = 0 THEN
        EXECUTE format('WITH pending AS (SELECT coalesce(sum(pgtrickle.pending_change_count(d.source_relid::regclass, $1)), 0) AS n'
                       '                   FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = $2)%s'
                       ' SELECT (SELECT n FROM pending) = 0',
                       pgtrickle.refill_ctes(set_refresh_plan.state_table, set_refresh_plan.state_sql, set_refresh_plan.derived,
                                             '(SELECT n FROM pending) = 0'))
           INTO filled USING (st.frontier ->> 'snapshot')::pg_snapshot, st.pgt_id;
    END IF;
    UPDATE pgtrickle.pgt_stream_tables s
       SET delta_sql = set_refresh_plan.delta_sql,
           state_table = set_refresh_plan.state_table,
           state_sql = set_refresh_plan.state_sql,
           derived = CASE WHEN set_refresh_plan.delta_sql IS NOT NULL THEN set_refresh_plan.derived END,
           frontier = CASE WHEN (set_refresh_plan.state_sql IS NOT NULL OR set_refresh_plan.derived IS NOT NULL)
                                AND NOT filled AND s.frontier IS NOT NULL
                           THEN s.frontier || '{"full_next": true}' ELSE s.frontier END - 'derived' - 'stale'
                      -- the last differential refresh's time was its old statement's
                      #- '{timing,d}',
           refresh_mode = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN 'FULL' ELSE s.refresh_mode END,
           refresh_mode_reason = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN set_refresh_plan.reason ELSE s.refresh_mode_reason END,
           effective_refresh_mode = CASE WHEN set_refresh_plan.delta_sql IS NULL THEN 'FULL' ELSE s.effective_refresh_mode END,
           updated_at = now()
     WHERE s.pgt_id = set_refresh_plan.pgt_id AND s.defining_query = planned_query AND s.refresh_mode = 'DIFFERENTIAL';
    RETURN FOUND;
END
$fn$;

-- Records a refresh that failed (called in a new transaction after the failed one rolled back):
-- a FAILED history row, the error on the stream table, and SUSPENDED once consecutive_errors
-- reaches max_consecutive_errors. Returns the stream table's status.
CREATE OR REPLACE FUNCTION pgtrickle.record_refresh_failure(pgt_id bigint, error text, max_consecutive_errors integer,
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

-- The change buffers of `live` whose changes in the window matter to the stream table: those whose
-- rows do not all cancel once the delete and the insert of an update that agree, by text form, on
-- every column its statements read (pgt_dependencies.columns_used) are paired. An UPDATE of columns
-- the stream table does not read (a balance, a comment, a timestamp), or one that set what was
-- there, is captured for every reader of the source but changes nothing here; a buffer left out
-- of `live` is left out of the differential statement's plan (live_legs, the gates of $2), which
-- for TPC-H's Q8 took 47 ms to plan with the customers' and suppliers' updated balances and 3.5 ms
-- without. run_refresh asks only of buffers whose window has as many inserts as deletes
-- (pending_changes' `balanced`): any other has a change that matters. A window of more than
-- 10,000 rows is kept unjudged: grouping it costs more than planning its terms saves. The
-- statement judges a buffer left out again, in its own snapshot and by the columns it reads
-- (DeltaPlanner.truncated): a change that matters after all makes the refresh run it again with
-- every term. `counts`: rows in the window per source, as the probe (pending_changes) counted them.
-- The window is the probe's: rows not visible in `since` that are visible in `upto`, the probe's
-- snapshot, which a refresh that runs no statement takes as its frontier. Rows committed since the
-- probe are the next refresh's; judged with this one, a change the probe saw (r1 -> r0) and one
-- it did not (r0 -> r1) would cancel, and the first be passed over unapplied.
DROP FUNCTION IF EXISTS pgtrickle.relevant_buffers(bigint, text[], jsonb, pg_snapshot);
CREATE OR REPLACE FUNCTION pgtrickle.relevant_buffers(pgt_id bigint, live text[], counts jsonb, since pg_snapshot,
                                                      upto pg_snapshot) RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    src     record;
    matters boolean;
    kept    text[] := '{}';
    -- the columns read, of the window's rows (b)
    columns text;
BEGIN
    FOR src IN SELECT l.buffer, d.columns_used, (counts ->> d.source_relid::text)::bigint AS n
                 FROM unnest(live) WITH ORDINALITY AS l(buffer, i)
                 LEFT JOIN pgtrickle.pgt_dependencies d ON d.pgt_id = relevant_buffers.pgt_id
                       AND d.source_type IN ('TABLE', 'STREAM_TABLE')
                       AND pgtrickle.tracked_change_buffer(d.source_relid::regclass)::text = l.buffer
                ORDER BY l.i LOOP
        matters := true;
        -- every column read, as the buffer has it (a column it lacks: not judged)
        SELECT CASE WHEN bool_and(a.attname IS NOT NULL) THEN string_agg('b.' || quote_ident(u.c), ', ' ORDER BY u.i) END
          INTO columns
          FROM unnest(src.columns_used) WITH ORDINALITY AS u(c, i)
          LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(src.buffer) AND a.attname = u.c AND NOT a.attisdropped;
        IF columns IS NOT NULL AND src.n <= 10000 THEN
            -- OR evaluates its subqueries in order, up to the first true: a TRUNCATE; then, exactly,
            -- the window's rows counted per text (inserted x, x, y and deleted x, y, y matter). One
            -- sort or hash of the window, whatever the planner believes of its size: an anti-join
            -- of inserted rows against deleted ones, which could stop at the first new row, was
            -- planned as a nested loop on the buffer's statistics of an older window (1 row
            -- expected, 300 found) and took 20-40 ms for TPC-H's orders where this takes 1.
            EXECUTE format('SELECT EXISTS (SELECT FROM %1$s b WHERE b.xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(b.xid, $1)'
                           '               AND pg_visible_in_snapshot(b.xid, $2) AND b.action = ''T'')'
                           '    OR EXISTS (SELECT FROM %1$s b WHERE b.xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(b.xid, $1)'
                           '               AND pg_visible_in_snapshot(b.xid, $2) AND b.action <> ''T'' GROUP BY ROW(%2$s)::text'
                           '               HAVING sum(CASE WHEN b.action = ''I'' THEN 1 ELSE -1 END) <> 0)',
                           src.buffer, columns)
               INTO matters USING since, upto;
        END IF;
        IF matters THEN
            kept := kept || src.buffer;
        END IF;
    END LOOP;
    RETURN kept;
END
$fn$;

-- The differential statement without the pieces that only changes of sources without any in the
-- window would make worth running (the planner marks them, in a statement that starts with
-- /*pgt:marks*/: Legs.java). `live`: the change buffers with changes; NULL (not known) keeps the
-- statement whole. PostgreSQL would exclude those pieces by their gates while planning, but spends
-- time on each first: TPC-H Q8 planned in 7 ms with 63 of its 65 terms excluded, and in 1.2 ms
-- without them. Marks may nest; a piece is left out with everything inside it.
CREATE OR REPLACE FUNCTION pgtrickle.live_legs(statement text, live text[]) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- string_to_array by a constant: a regular expression over a statement of 200 kB took 2 ms
    pieces text[];
    piece  text;
    close  int;
    mark   text;
    needs  text[];
    kept   text[];
    killed boolean[] := '{}';
    dead   int := 0;
    gone   boolean;
BEGIN
    IF live IS NULL OR statement IS NULL OR NOT starts_with(statement, '/*pgt:marks') THEN
        RETURN statement;
    END IF;
    pieces := string_to_array(statement, '/*pgt:');
    kept := ARRAY[pieces[1]];
    -- pieces[2] is the header ('marks*/...'), which opens nothing
    kept := kept || substr(pieces[2], strpos(pieces[2], '*/') + 2);
    FOR i IN 3 .. cardinality(pieces) LOOP
        piece := pieces[i];
        close := strpos(piece, '*/');
        mark := left(piece, close - 1);
        IF close = 0 OR (mark <> 'end' AND NOT (starts_with(mark, 'live ') AND strpos(mark, ';') > 0)) OR (mark = 'end' AND cardinality(killed) = 0) THEN
            RAISE EXCEPTION 'pgtrickle: malformed mark /*pgt:%... in a marked statement (mark % of %)',
                left(piece, 20), i - 2, cardinality(pieces) - 2
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Marks are /*pgt:live all;any*/ ... /*pgt:end*/, in pairs, after a /*pgt:marks*/ header.';
        END IF;
        IF mark = 'end' THEN
            IF killed[cardinality(killed)] THEN
                dead := dead - 1;
            END IF;
            killed := trim_array(killed, 1);
        ELSE
            -- 'live a,b;c,d': every one of a, b and, unless none is named, one of c, d
            needs := string_to_array(substr(mark, 6), ';');
            gone := dead = 0 AND NOT (string_to_array(needs[1], ',') <@ live
                                      AND (needs[2] = '' OR string_to_array(needs[2], ',') && live));
            killed := killed || gone;
            IF gone THEN
                dead := dead + 1;
            END IF;
        END IF;
        IF dead = 0 THEN
            kept := kept || substr(piece, close + 2);
        END IF;
    END LOOP;
    IF cardinality(killed) > 0 THEN
        RAISE EXCEPTION 'pgtrickle: % mark(s) /*pgt:live ...*/ without their /*pgt:end*/ in a marked statement', cardinality(killed)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN array_to_string(kept, '');
END
$fn$;

-- The statement as this refresh runs it: without what the sources it found no changes in
-- (pgtrickle.live_buffers, set by run_refresh) would make worth running.
CREATE OR REPLACE FUNCTION pgtrickle.live_statement(statement text) RETURNS text
    LANGUAGE sql STABLE
    RETURN pgtrickle.live_legs(statement, nullif(current_setting('pgtrickle.live_buffers', true), '')::text[]);

-- Runs a refresh statement as the current user (execute_as_owner's: the stream table's owner) and
-- returns its one row as text, columns in order. Its parameters: $1 the frontier, $2 the change
-- buffers with changes (pgtrickle.live_buffers). Its body is also that of each stream table's
-- runner pgt_<id>_refresh, which runs as an owner who may not use the schema pgtrickle: so it
-- names nothing of pgtrickle's.
--
-- Statements are prepared once per session and executed from then on, since parsing and
-- planning were much of a refresh:
-- - one that starts with /*pgtrickle plan once*/ (a FULL refresh's) takes no parameter, so the plan
--   PostgreSQL would make for it each time is always the same: kept (pgtrickle_once_<md5>). TPC-H
--   Q2 at SF 0.1 planned 6.3 ms and ran 1.5, where REFRESH MATERIALIZED VIEW took 3.2 in all.
-- - a differential one (with a frontier; not an EXPLAIN) is parsed once (pgtrickle_each_<md5>) and
--   planned at every execution for its parameters' values (plan_cache_mode force_custom_plan, as
--   a statement run once is): for the window's true size (refresh_change_statistics), and without
--   the terms of sources without changes, $2 being a constant to the planner. A plan kept from a
--   small window was 240 times slower than recomputing on a large one. Parsing TPC-H Q9's took
--   5-6 ms, planning it 7-9.
-- PostgreSQL parses and plans one again when a table it reads changes (DDL; ANALYZE for a kept
-- plan) or search_path does. At most 50 per session, the oldest deallocated first: a prepared
-- differential statement of TPC-H's size holds about 1 MB.
CREATE OR REPLACE FUNCTION pgtrickle.execute_statement(statement text, frontier pg_snapshot) RETURNS text[]
    LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan
AS $fn$
DECLARE
    result   record;
    live     text[] := nullif(current_setting('pgtrickle.live_buffers', true), '')::text[];
    once     boolean := starts_with(statement, '/*pgtrickle plan once*/');
    prepared text;
    oldest   text;
    run      text;
BEGIN
    IF NOT once AND (frontier IS NULL OR starts_with(statement, 'EXPLAIN')) THEN
        EXECUTE statement INTO result USING frontier, live;
    ELSE
        prepared := CASE WHEN once THEN 'pgtrickle_once_' ELSE 'pgtrickle_each_' END || md5(statement);
        -- pg_prepared_statements renders every statement the session holds (up to 50 of up to 1 MB
        -- each): asking it whether one is there took 0.3 ms of every refresh. The names this
        -- function prepared are listed in a session setting instead. One it lacks is looked up
        -- there (a PREPARE whose transaction rolled back is kept, the setting is not); one it lists
        -- that is gone (DEALLOCATE by the session's user) is prepared again when its EXECUTE fails.
        IF strpos(coalesce(current_setting('pgtrickle.prepared_statements', true), ''), prepared) = 0 THEN
            IF NOT EXISTS (SELECT FROM pg_prepared_statements p WHERE p.name = prepared) THEN
                SELECT p.name INTO oldest FROM pg_prepared_statements p
                 WHERE p.name LIKE 'pgtrickle\_once\_%' OR p.name LIKE 'pgtrickle\_each\_%'
                 ORDER BY p.prepare_time OFFSET 49 LIMIT 1;
                IF oldest IS NOT NULL THEN
                    SELECT p.name INTO oldest FROM pg_prepared_statements p
                     WHERE p.name LIKE 'pgtrickle\_once\_%' OR p.name LIKE 'pgtrickle\_each\_%'
                     ORDER BY p.prepare_time LIMIT 1;
                    EXECUTE format('DEALLOCATE %I', oldest);
                END IF;
                EXECUTE format(CASE WHEN once THEN 'PREPARE %I AS %s' ELSE 'PREPARE %I(pg_snapshot, text[]) AS %s' END, prepared, statement);
            END IF;
            PERFORM set_config('pgtrickle.prepared_statements',
                               (SELECT string_agg(p.name, ',') FROM pg_prepared_statements p
                                 WHERE p.name LIKE 'pgtrickle\_once\_%' OR p.name LIKE 'pgtrickle\_each\_%'), false);
        END IF;
        run := CASE WHEN once THEN format('EXECUTE %I', prepared)
                    ELSE format('EXECUTE %I(%L::pg_snapshot, %L::text[])', prepared, frontier, live) END;
        BEGIN
            EXECUTE run INTO result;
        EXCEPTION WHEN invalid_sql_statement_name THEN
            EXECUTE format(CASE WHEN once THEN 'PREPARE %I AS %s' ELSE 'PREPARE %I(pg_snapshot, text[]) AS %s' END, prepared, statement);
            EXECUTE run INTO result;
        END;
    END IF;
    -- json, not jsonb: keeps the columns in order, duplicate names included
    RETURN ARRAY(SELECT value FROM json_each_text(row_to_json(result)));
END
$fn$;

-- Runs one of a refresh's data statements (it may use $1, the frontier) with the privileges of
-- the stream table's owner, and returns its one result row as text, column by column. A
-- differential statement also uses $2, the text[] of the change buffers the refresh found changes
-- in (setting pgtrickle.live_buffers; NULL when unset): as a parameter it is a constant to
-- PostgreSQL's planner, which leaves out the statement's terms for the other sources unplanned;
-- and it is rendered without those terms first (live_statement).
CREATE OR REPLACE FUNCTION pgtrickle.execute_as_owner(st pgtrickle.pgt_stream_tables, statement text, frontier pg_snapshot)
    RETURNS text[]
    LANGUAGE plpgsql
AS $fn$
DECLARE
    owner    oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = st.pgt_relid);
    -- beside the stream table, like its row index pgt_<id>_row_hash: the owner may create there
    -- (it must to own the table), and may not in pgtrickle_changes
    runner   text := format('%I.%I', st.pgt_schema, 'pgt_' || st.pgt_id || '_refresh');
    found    regprocedure;
    -- execute_statement's own body and settings: the owner may not use the schema pgtrickle
    body     text;
    config   text[];
    answer   text[];
BEGIN
    statement := pgtrickle.live_statement(statement);
    IF owner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN pgtrickle.execute_statement(statement, frontier);
    END IF;
    SELECT p.prosrc, p.proconfig INTO body, config FROM pg_proc p WHERE p.oid = 'pgtrickle.execute_statement(text, pg_snapshot)'::regprocedure;
    found := to_regprocedure(runner || '(text, pg_snapshot)');
    IF found IS NULL OR (SELECT p.proowner FROM pg_proc p WHERE p.oid = found) <> owner
                     OR NOT has_function_privilege(found, 'EXECUTE')
                     -- made by an engine that passed the frontier only
                     OR NOT (SELECT p.prosrc LIKE '%pgtrickle.live_buffers%' FROM pg_proc p WHERE p.oid = found)
                     -- made by another version of the engine: made again where this role may,
                     -- used as it is where not
                     OR ((SELECT p.prosrc IS DISTINCT FROM body OR p.proconfig IS DISTINCT FROM config FROM pg_proc p WHERE p.oid = found)
                         AND pg_has_role(current_user, owner, 'MEMBER')) THEN
        -- setting it up takes a role that may act as the owner
        IF NOT pg_has_role(current_user, owner, 'MEMBER') THEN
            RAISE EXCEPTION 'pgtrickle: stream table %.% is refreshed with the privileges of its owner %, which % may not assume',
                st.pgt_schema, st.pgt_name, owner::regrole, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Refresh it as %s or as the role that owns the pgtrickle catalog, or GRANT %s TO %s.',
                                    owner::regrole, owner::regrole, current_user);
        END IF;
        EXECUTE format('DROP FUNCTION IF EXISTS %s(text, pg_snapshot)', runner);
        EXECUTE format('CREATE FUNCTION %s(statement text, frontier pg_snapshot) RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER%s AS %L',
                       runner, (SELECT string_agg(format(' SET %s = %L', split_part(c, '=', 1), substr(c, strpos(c, '=') + 1)), '')
                                  FROM unnest(config) c), body);
        EXECUTE format('REVOKE ALL ON FUNCTION %s(text, pg_snapshot) FROM PUBLIC', runner);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s(text, pg_snapshot) TO %s', runner,
                       (SELECT n.nspowner::regrole FROM pg_namespace n WHERE n.nspname = 'pgtrickle'));
        EXECUTE format('ALTER FUNCTION %s(text, pg_snapshot) OWNER TO %s', runner, owner::regrole);
    END IF;
    EXECUTE format('SELECT %s($1, $2)', runner) INTO answer USING statement, frontier;
    RETURN answer;
END
$fn$;

-- Grants a stream table's owner what its refresh statement uses in pgtrickle_changes. Refreshes
-- running at once would otherwise update the same ACL together and fail ("tuple concurrently
-- updated"): grants are serialised, and the second finds the first's done. Once per owner and
-- object, so the lock is rare.
CREATE OR REPLACE FUNCTION pgtrickle.grant_to_owner(owner oid, privileges text, object regclass) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgtrickle.grant_to_owner'));
    IF NOT has_schema_privilege(owner, 'pgtrickle_changes', 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA pgtrickle_changes TO %s', owner::regrole);
    END IF;
    IF NOT has_table_privilege(owner, object, privileges) THEN
        EXECUTE format('GRANT %s ON %s TO %s', privileges, object, owner::regrole);
    END IF;
END
$fn$;

-- Whether the owner of a stream table may read everything the change buffers of its sources hold
-- (every row and column of each source): then the differential statement runs as the owner, who
-- is granted what it reads in pgtrickle_changes. Otherwise the refresh recomputes the query as
-- the owner, under the owner's column privileges and row-level security.
CREATE OR REPLACE FUNCTION pgtrickle.owner_reads_changes(st pgtrickle.pgt_stream_tables) RETURNS boolean
    LANGUAGE plpgsql
AS $fn$
DECLARE
    owner  oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = st.pgt_relid);
    src    record;
BEGIN
    IF owner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
       AND (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = owner) THEN
        RETURN true;
    END IF;
    FOR src IN SELECT d.source_relid, pgtrickle.change_buffer(d.source_relid::regclass) AS buffer
                 FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id LOOP
        IF NOT has_table_privilege(owner, src.source_relid, 'SELECT') OR pgtrickle.row_security_applies(owner, src.source_relid) THEN
            RETURN false;
        END IF;
        IF src.buffer IS NOT NULL AND NOT has_table_privilege(owner, src.buffer, 'SELECT') THEN
            PERFORM pgtrickle.grant_to_owner(owner, 'SELECT', src.buffer);
        END IF;
    END LOOP;
    PERFORM pgtrickle.grant_plan_tables(st);
    RETURN true;
END
$fn$;

-- Whether row-level security filters what a role reads from a table.
CREATE OR REPLACE FUNCTION pgtrickle.row_security_applies(role oid, relid oid) RETURNS boolean
    LANGUAGE sql STABLE
AS $fn$
    SELECT c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls AND (c.relowner <> r.oid OR c.relforcerowsecurity)
      FROM pg_class c, pg_roles r WHERE c.oid = relid AND r.oid = role
$fn$;

-- Refreshes one stream table in the caller's transaction and returns the refresh history id.
-- Refused for a SUSPENDED stream table and for one whose source was dropped.
-- wait = false: when another session is refreshing it, return NULL at once (the scheduler's way
-- of never refreshing one stream table twice at the same time, across containers).
-- notify_coalesce_ms: the container's coalescing window for subscriptions, used where neither the
-- stream table nor the database sets one (see pgtrickle.notify_coalesce_ms).
CREATE OR REPLACE FUNCTION pgtrickle.run_refresh(pgt_id bigint, initiated_by text, wait boolean DEFAULT true,
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
    page_cost double precision;
    estimate  double precision;
    truncated boolean;
    missing   bigint;
    del2      bigint;
    ins2      bigint;
    setting   record;
    restore   jsonb := '{}';
    res       text[];
    readable  boolean;
    why       text;
    counts    jsonb;
    live      text[];
    cost      jsonb;
    derived_at text[];
    explore   boolean := false;
    measured  boolean := false;
    way       text;
    t0        timestamptz;
    took      double precision;
    -- AUTO's measured or cost rule chose FULL (or tries it), not a window too large for once: the
    -- FULL refresh leaves the running totals and derived tables alone (stale), and the first
    -- refresh that would be differential refills them instead
    steady    boolean := false;
    stale     boolean;
    refilled  boolean := false;
    lean      pgtrickle.pgt_stream_tables;
    -- a plan with temporal filters (the engine's TemporalFilters): the clock moves without any
    -- source changing, so its statement runs at every refresh
    clock     boolean;
    -- nothing to do: no source changed since the frontier, and no clock moves the result
    idle      boolean;
    -- change buffers with changes, none of which matter to the plan (relevant_buffers)
    irrelevant text[];
    relevant_counts jsonb;
    -- buffers whose window has as many inserts as deletes (pending_changes)
    balanced  text[];
    -- relevant_buffers' verdicts per buffer, and the balanced buffers asked of it this time and not
    judged    jsonb;
    asked     text[];
    unasked   text[];
    -- the probe counted each buffer only up to this (pending_changes), and a buffer reached it:
    -- pending is then at least this, no more is known
    cap       bigint;
    capped    boolean := false;
    -- the buffers with changes as the probe found them, before relevant_buffers leaves any out
    probed    text[];
BEGIN
    -- A transaction that wrote before it refreshes has an id already; the lock below gives one to
    -- every other, which writes nothing this refresh must read back (see written_by below).
    own := pg_current_xact_id_if_assigned();
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
    stale := coalesce((st.frontier ->> 'stale')::boolean, false);
    -- A plan that finds the stored rows by a unique index of the stream table (pgtrickle.row_key)
    -- would read all of them per changed row without it: an index dropped or changed since, or a
    -- key column made nullable, and the plan is made again, after this refresh recomputes.
    IF st.delta_sql IS NOT NULL AND position('/*pgtrickle row_key ' IN st.delta_sql) > 0
       AND substring(st.delta_sql FROM '/\*pgtrickle row_key ([0-9,]*)\*/') IS DISTINCT FROM array_to_string(pgtrickle.row_key(st.pgt_relid), ',') THEN
        UPDATE pgtrickle.pgt_stream_tables s SET needs_reinit = true, delta_sql = NULL, updated_at = now() WHERE s.pgt_id = st.pgt_id;
        st.needs_reinit := true;
        st.delta_sql := NULL;
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
    -- sources (no tables, or views over catalogs, matviews, foreign tables), or whose result moves
    -- without its sources (now(), volatile functions: recompute_reason), is always recomputed;
    -- unless that is only the transaction's clock, compared in WHERE, which its plan maintains
    -- (then the probe's snapshot and counts serve the differential statement, which always runs).
    clock := st.refresh_mode = 'DIFFERENTIAL' AND position('/*pgtrickle clock*/' IN coalesce(st.delta_sql, '')) > 0;
    SELECT bool_and(d.source_type IN ('TABLE', 'STREAM_TABLE')) INTO captured
      FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = st.pgt_id;
    IF st.is_populated AND NOT st.needs_reinit AND st.frontier ? 'snapshot' AND coalesce(captured, false)
       AND (st.recompute_reason IS NULL OR clock) THEN
        -- AUTO's remembered verdict for FULL holds for every window from its floor up
        -- (differential_cost_fallback): counted that far only. Not while the measured rule may
        -- decide, which it does once a differential refresh was timed (timing -> 'd').
        IF st.requested_refresh_mode = 'AUTO' AND st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL
           AND NOT coalesce(st.frontier -> 'timing' ? 'd', false) AND coalesce((st.frontier -> 'cost' ->> 'uses')::int, 50) < 50 THEN
            cap := pgtrickle.cost_verdict_floor(st.frontier -> 'cost');
        END IF;
        SELECT p.total, p.counts, p.buffers, p.balanced, p.snapshot, p.capped INTO pending, counts, live, balanced, snapshot, capped
          FROM pgtrickle.pending_changes(st.pgt_id, pgtrickle.oldest_frontier(st.frontier), cap) p;
        IF capped THEN
            SELECT r.why, r.verdict INTO why, cost
              FROM pgtrickle.differential_cost_fallback(st, (st.frontier ->> 'snapshot')::pg_snapshot, pending, st.frontier -> 'cost', live, true) r;
            fallback := why IS NOT NULL;
            steady := fallback;
            IF NOT fallback THEN
                -- not held after all (the rule turned off, other buffers with changes): all of it
                capped := false;
                cost := NULL;
                SELECT p.total, p.counts, p.buffers, p.balanced, p.snapshot INTO pending, counts, live, balanced, snapshot
                  FROM pgtrickle.pending_changes(st.pgt_id, pgtrickle.oldest_frontier(st.frontier)) p;
            END IF;
        END IF;
        probed := live;
    END IF;
    idle := pending = 0 AND snapshot IS NOT NULL AND NOT clock;
    -- Nothing to do, in a transaction that wrote nothing before: the history row and the frontier
    -- at the probe's snapshot, and nothing else (what follows below would only find, statement by
    -- statement, that there is nothing to do). The frontier keeps all else it holds, as the
    -- refresh's UPDATE below does for NO_DATA.
    IF idle AND own IS NULL THEN
        PERFORM set_config('pgtrickle.notify_coalesce_default', coalesce(run_refresh.notify_coalesce_ms::text, ''), true);
        INSERT INTO pgtrickle.pgt_refresh_history
               (pgt_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted, delta_row_count, status,
                initiated_by, was_full_fallback)
        VALUES (st.pgt_id, now(), started, clock_timestamp(), 'NO_DATA', 0, 0, 0, 'COMPLETED', run_refresh.initiated_by, false)
        RETURNING refresh_id INTO id;
        -- (the lock above gave this transaction an id: counted as in progress, see below)
        UPDATE pgtrickle.pgt_stream_tables s
           SET frontier = st.frontier || jsonb_build_object('snapshot',
                              pgtrickle.in_progress_too(snapshot::pg_snapshot, pg_current_xact_id_if_assigned())::text),
               data_timestamp = now(), last_refresh_at = now(), consecutive_errors = 0,
               status = CASE WHEN s.status = 'INITIALIZING' THEN 'ACTIVE' ELSE s.status END, updated_at = now()
         WHERE s.pgt_id = st.pgt_id;
        PERFORM set_config('pgtrickle.refresh_id', id::text, true);
        RETURN id;
    END IF;

    -- A transaction that wrote to a source before refreshing: its rows are consumed now and, as it
    -- is still in progress, again by the next refresh (see below). FULL needs no such bookkeeping.
    IF own IS NOT NULL AND EXISTS (SELECT FROM pgtrickle.pgt_dependencies d
                                    WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')
                                      AND pgtrickle.written_by(d.source_relid::regclass, own)) THEN
        full_next := true;
    END IF;

    -- AUTO: a change too large for a differential refresh to beat recomputing runs FULL this once.
    -- Judged by buffered rows (an UPDATE is two) against the sources' estimated rows; a source never
    -- analysed has no estimate, and then the rule does not apply.
    IF st.requested_refresh_mode = 'AUTO' AND st.refresh_mode = 'DIFFERENTIAL' AND pending > 0 AND NOT capped THEN
        ratio := pgtrickle.setting_ratio('pg_trickle.differential_max_change_ratio', 0.5);
        estimate := pgtrickle.source_row_estimate(st.pgt_id);
        fallback := ratio > 0 AND estimate IS NOT NULL AND pending > ratio * greatest(estimate, 1);
        IF fallback THEN
            why := format('%s changed rows > pg_trickle.differential_max_change_ratio %s of %s source rows', pending, ratio, round(estimate::numeric));
        END IF;
    END IF;
    -- AUTO: what each way took the last times (pgtrickle.measured_choice, R__55_change_statistics.sql)
    IF st.requested_refresh_mode = 'AUTO' AND st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL AND pending > 0
       AND NOT fallback AND NOT full_next AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false) THEN
        SELECT m.why, m.explore, m.measured INTO why, explore, measured
          FROM pgtrickle.measured_choice(st.frontier -> 'timing', pending) m;
        fallback := why IS NOT NULL;
        -- a trial of FULL too: what it measures is then what FULL costs while it keeps winning
        steady := fallback;
    END IF;

    -- The differential statement reads the change buffers, which hold every column and every row
    -- of the sources: only for an owner who may read all of that. Otherwise recompute, as the owner.
    -- (Nothing of this for a refresh that has nothing to do: the no-op path stays a probe.)
    IF st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL AND NOT idle THEN
        readable := pgtrickle.owner_reads_changes(st);
    END IF;
    -- AUTO's cost rule, remembered verdict (R__55_change_statistics.sql): one for FULL needs
    -- neither relevant_buffers' pass over the window nor the change statistics (TPC-H Q20 at SF
    -- 0.1: 0.8 ms of a 5 ms refresh)
    IF readable AND snapshot IS NOT NULL AND pending > 0 AND NOT fallback AND NOT full_next
       AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false)
       AND st.requested_refresh_mode = 'AUTO' AND NOT measured AND NOT explore THEN
        SELECT r.why, r.verdict INTO why, cost
          FROM pgtrickle.differential_cost_fallback(st, (st.frontier ->> 'snapshot')::pg_snapshot, pending, st.frontier -> 'cost', probed, true) r;
        fallback := why IS NOT NULL;
        steady := fallback;
    END IF;

    -- The query runs under the settings of the session that set it (TimeZone, DateStyle, ...), so
    -- the container and psql compute the same rows. Only around the statements that run it: a
    -- refresh from SQL runs in its caller's transaction, and a changed search_path makes plpgsql
    -- plan this function's statements again.
    FOR setting IN SELECT * FROM jsonb_each_text(coalesce(st.query_settings, '{}')) WHERE NOT idle LOOP
        IF current_setting(setting.key) IS DISTINCT FROM setting.value THEN
            restore := restore || jsonb_build_object(setting.key, current_setting(setting.key));
            PERFORM set_config(setting.key, setting.value, true);
        END IF;
    END LOOP;
    -- The buffers with changes, for the differential statement to plan only their terms ($2 of
    -- pgtrickle.execute_as_owner). Its statement checks them again in its own snapshot. (None, when
    -- only the clock moved: its derived table's statement adds its buffer, pgtrickle.maintain_derived.)
    -- Of those, the ones whose changes matter to the plan (an update of columns it does not read
    -- does not): the others are left out of the statement, and out of the statistics.
    -- Only a window with as many inserts as deletes can be all such updates.
    IF cardinality(balanced) > 0 AND readable AND st.delta_sql IS NOT NULL AND NOT fallback AND NOT full_next
       AND NOT stale AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false) THEN
        -- Judging costs a pass over the window (about 2 us a row: 3-5 ms for the 2,000 rows of a
        -- thousand updates), which pays only where it leaves something out. A buffer whose last
        -- two judgements found changes that matter (updates of the columns read, new rows) is
        -- judged again only after 16 refreshes that passed it over. `judged` (in the frontier):
        -- per buffer, [judgements in a row that it mattered, times passed over since].
        judged := coalesce(st.frontier -> 'judged', '{}');
        unasked := ARRAY(SELECT b FROM unnest(balanced) b
                          WHERE coalesce((judged -> b ->> 0)::int, 0) >= 2 AND coalesce((judged -> b ->> 1)::int, 0) < 16);
        asked := ARRAY(SELECT b FROM unnest(balanced) b WHERE b <> ALL (unasked));
        irrelevant := '{}';
        IF cardinality(asked) > 0 THEN
            irrelevant := ARRAY(SELECT unnest(asked) EXCEPT SELECT unnest(pgtrickle.relevant_buffers(st.pgt_id, asked, counts,
                                                                                               pgtrickle.oldest_frontier(st.frontier),
                                                                                               snapshot::pg_snapshot)));
        END IF;
        judged := judged || (SELECT jsonb_object_agg(b, CASE WHEN b = ANY (unasked)
                                                             THEN jsonb_build_array((judged -> b ->> 0)::int, coalesce((judged -> b ->> 1)::int, 0) + 1)
                                                             WHEN b = ANY (irrelevant) THEN '[0, 0]'::jsonb
                                                             ELSE jsonb_build_array(coalesce((judged -> b ->> 0)::int, 0) + 1, 0) END)
                               FROM unnest(balanced) b);
        IF cardinality(irrelevant) > 0 THEN
            live := ARRAY(SELECT b FROM unnest(live) WITH ORDINALITY AS l(b, i) WHERE b <> ALL (irrelevant) ORDER BY i);
            -- (counts stays whole: pruning passes what this refresh consumed, mattering or not)
            relevant_counts := coalesce((SELECT jsonb_object_agg(c.key, c.value) FROM jsonb_each(counts) c
                                          WHERE pgtrickle.tracked_change_buffer(c.key::oid::regclass)::text <> ALL (irrelevant)), '{}');
        END IF;
    END IF;
    IF pending > 0 OR (clock AND snapshot IS NOT NULL) THEN
        PERFORM set_config('pgtrickle.live_buffers', coalesce(live, '{}')::text, true);
    END IF;
    -- A differential statement finds the rows the changes join, and the groups they touch, by
    -- index: pages the sources' recent writes and earlier refreshes keep in memory. At
    -- PostgreSQL's default random_page_cost (4, a disk seek) a hundred keys of a dozen rows each
    -- cost it as much as reading 60,000 rows, and it read all of TPC-H's orders for the customers
    -- a few hundred changed orders touched (22 ms against 3 by the index). So the statement, its
    -- statistics and AUTO's cost rule are planned at pg_trickle.differential_random_page_cost
    -- (default 1.1, what PostgreSQL's documentation suggests for data that is mostly cached; 0
    -- keeps the session's), never above the session's own.
    IF (pending > 0 OR clock) AND st.delta_sql IS NOT NULL THEN
        page_cost := pgtrickle.setting_ratio('pg_trickle.differential_random_page_cost', 1.1);
        IF page_cost > 0 AND page_cost < current_setting('random_page_cost')::double precision THEN
            -- a value restore holds already is the session's own
            restore := jsonb_build_object('random_page_cost', current_setting('random_page_cost')) || restore;
            PERFORM set_config('random_page_cost', page_cost::text, true);
        END IF;
    END IF;
    -- Before the differential statement is planned (under the query's settings, as it will be): true
    -- statistics of the changes, then AUTO's cost rule (R__55_change_statistics.sql) unless what
    -- each way took decided. May turn nested loops off until the statement has run. Timed from here
    -- for the measured rule: the statistics are part of what a differential refresh costs.
    t0 := clock_timestamp();
    IF readable AND snapshot IS NOT NULL AND pending > 0 AND NOT fallback AND NOT full_next
       AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false) THEN
        -- only a statement that reads a source depends on the window's estimate (delta_reads_sources)
        IF NOT fallback AND pgtrickle.delta_reads_sources(st) THEN
            restore := restore || pgtrickle.refresh_change_statistics((st.frontier ->> 'snapshot')::pg_snapshot,
                                                                           coalesce(relevant_counts, counts), st.pgt_id);
        END IF;
        IF st.requested_refresh_mode = 'AUTO' AND NOT measured AND NOT explore AND cost IS NULL THEN
            SELECT r.why, r.verdict INTO why, cost
              FROM pgtrickle.differential_cost_fallback(st, (st.frontier ->> 'snapshot')::pg_snapshot, pending, st.frontier -> 'cost', probed) r;
            fallback := why IS NOT NULL;
            steady := fallback;
            IF fallback THEN
                t0 := clock_timestamp();
            END IF;
        END IF;
    END IF;
    -- the guard on the stream table (R__40_guards.sql) lets this transaction's refresh writes through
    PERFORM set_config('pgtrickle.refreshing', 'on', true);
    IF idle THEN
        act := 'NO_DATA';
    ELSIF st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL AND snapshot IS NOT NULL AND NOT fallback AND readable
          AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false) AND NOT full_next AND NOT stale THEN
        act := 'DIFFERENTIAL';
        way := 'd';
        -- the plan's derived tables first: the statement below reads them and their changes
        IF st.derived IS NOT NULL THEN
            derived_at := pgtrickle.maintain_derived(st);
        END IF;
        IF st.derived IS NOT NULL AND derived_at IS NULL THEN
            res := ARRAY['0', '0', NULL, 'true', '0'];
        ELSIF cardinality(live) = 0 AND cardinality(irrelevant) > 0 AND st.derived IS NULL AND NOT clock THEN
            -- only changes that do not matter among those the probe saw (relevant_buffers judges
            -- the window up to the probe's snapshot): the stream table is as it would be at that
            -- snapshot, the frontier
            res := ARRAY['0', '0', snapshot, 'false', '0'];
        ELSE
            res := pgtrickle.execute_as_owner(st, st.delta_sql, (st.frontier ->> 'snapshot')::pg_snapshot);
        END IF;
        -- Nothing written: a TRUNCATE, or a source without changes at the probe has some now (a
        -- writer committed in between), whose terms were left out. Once more with all terms.
        IF res[4]::boolean AND current_setting('pgtrickle.live_buffers', true) <> '' AND res[3] IS NOT NULL THEN
            PERFORM set_config('pgtrickle.live_buffers', '', true);
            res := pgtrickle.execute_as_owner(st, st.delta_sql, (st.frontier ->> 'snapshot')::pg_snapshot);
        END IF;
        del := res[1]; ins := res[2]; snapshot := res[3]; truncated := res[4]; missing := res[5];
        -- A TRUNCATE in the window: the delta statement (or a derived table's) wrote nothing and said so.
        IF truncated THEN
            derived_at := NULL;
            act := 'FULL';
            way := NULL;
            res := pgtrickle.full_refresh(st, pending);
            del := res[1]; ins := res[2]; snapshot := res[3];
        -- Stored rows the delta should have removed were not there: the table no longer matches
        -- its change history (it was written to directly). Recompute it rather than drift further.
        ELSIF missing > 0 THEN
            RAISE WARNING 'pgtrickle: stream table %.% lacked % row(s) its delta deletes; recomputing it in full',
                st.pgt_schema, st.pgt_name, missing;
            act := 'FULL';
            way := NULL;
            derived_at := NULL;
            res := pgtrickle.full_refresh(st, pending);
            del2 := res[1]; ins2 := res[2]; snapshot := res[3];
            del := del + del2;
            ins := ins + ins2;
        END IF;
    ELSIF NOT st.is_populated AND st.state_table IS NULL AND st.derived IS NULL AND NOT pgtrickle.has_rows(st.pgt_relid::regclass) THEN
        -- The first fill of an empty table (create, a shadow build): nothing to compare with, so
        -- a plain INSERT, with the snapshot taken by the same statement.
        act := 'FULL';
        way := 'fill';
        res := pgtrickle.execute_as_owner(st, format('WITH filled AS (INSERT INTO %s SELECT * FROM (%s) q RETURNING 1)'
                       ' SELECT count(*), pg_current_snapshot()::text FROM filled', st.pgt_relid::regclass, st.defining_query), NULL);
        ins := res[1]; snapshot := res[2];
    ELSIF steady AND (st.state_table IS NOT NULL OR st.derived IS NOT NULL) THEN
        -- Refilling them was most of such a refresh (TPC-H Q22 at SF 1: 222 ms against REFRESH
        -- MATERIALIZED VIEW's 71), and kept it from the statement that writes nothing, which
        -- PostgreSQL may run in parallel. The stream table as if it had none (full_refresh's
        -- refill is its only use of them); the frontier says they are stale.
        act := 'FULL';
        way := 'f';
        lean := st;
        lean.state_table := NULL;
        lean.state_sql := NULL;
        lean.derived := NULL;
        res := pgtrickle.full_refresh(lean, CASE WHEN NOT capped THEN pending ELSE 0 END);
        del := res[1]; ins := res[2]; snapshot := res[3];
        stale := true;
    ELSE
        act := 'FULL';
        way := 'f';
        IF stale AND NOT fallback AND NOT full_next AND NOT coalesce((st.frontier ->> 'full_next')::boolean, false)
           AND st.refresh_mode = 'DIFFERENTIAL' AND st.delta_sql IS NOT NULL THEN
            -- differential but for the stale running totals or derived tables: this one refills
            -- them; not a FULL refresh's time (measured_choice), and what AUTO measured and meant to
            -- try stays for the next refresh, which is differential
            fallback := true;
            why := 'the running totals and derived tables were left as they were by FULL refreshes: refilled before a differential one';
            way := NULL;
            refilled := true;
        END IF;
        -- (a window counted only in part is no measure of what travels: full_refresh's choices by
        -- the window are not made)
        res := pgtrickle.full_refresh(st, CASE WHEN NOT capped THEN pending ELSE 0 END);
        del := res[1]; ins := res[2]; snapshot := res[3];
        stale := false;
    END IF;
    took := CASE WHEN way IS NOT NULL THEN 1000 * extract(epoch FROM clock_timestamp() - t0) END;
    PERFORM set_config('pgtrickle.refreshing', 'off', true);
    PERFORM set_config('pgtrickle.live_buffers', '', true);
    FOR setting IN SELECT * FROM jsonb_each_text(restore) LOOP
        PERFORM set_config(setting.key, setting.value, true);
    END LOOP;

    -- pg_current_snapshot() leaves the calling transaction out of its in-progress list, so a
    -- refresh run inside a transaction that has written would store a frontier that counts that
    -- transaction as consumed, and its later writes to a source would never be pending. Record it
    -- as in progress: once it commits, the next refresh picks up everything it wrote.
    own := pg_current_xact_id_if_assigned();
    IF own IS NOT NULL THEN
        snapshot := pgtrickle.in_progress_too(snapshot::pg_snapshot, own)::text;
        -- and the derived tables' frontiers, each by itself: one taken before any other transaction
        -- completed after this one began has it at its xmax, in progress already
        derived_at := CASE WHEN derived_at IS NOT NULL
                           THEN ARRAY(SELECT pgtrickle.in_progress_too(f.t::pg_snapshot, own)::text
                                        FROM unnest(derived_at) WITH ORDINALITY AS f(t, n) ORDER BY f.n) END;
    END IF;

    -- The history row is the refresh's event: triggers on pgt_refresh_history (the notify unit's
    -- subscriptions) act on it in this transaction, so they are heard of when it commits and never
    -- if it rolls back. The container's coalescing window travels with it as a local setting.
    PERFORM set_config('pgtrickle.notify_coalesce_default', coalesce(run_refresh.notify_coalesce_ms::text, ''), true);
    INSERT INTO pgtrickle.pgt_refresh_history
           (pgt_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted, delta_row_count, status,
            initiated_by, was_full_fallback, fallback_reason)
    VALUES (st.pgt_id, now(), started, clock_timestamp(), act, ins, del, ins + del, 'COMPLETED', run_refresh.initiated_by,
            fallback AND act = 'FULL', CASE WHEN fallback AND act = 'FULL' THEN why END)
    RETURNING refresh_id INTO id;


    UPDATE pgtrickle.pgt_stream_tables s
       SET frontier = jsonb_build_object('snapshot', snapshot)
                      || CASE WHEN full_next OR (act <> 'FULL' AND coalesce((st.frontier ->> 'full_next')::boolean, false))
                              THEN '{"full_next": true}' ELSE '{}' END::jsonb
                      -- the cost rule's last verdict (pgtrickle.differential_cost_fallback)
                      || jsonb_strip_nulls(jsonb_build_object('cost', coalesce(cost, st.frontier -> 'cost')))
                      -- what each way took (pgtrickle.next_timing), for AUTO's measured rule
                      || CASE WHEN act <> 'NO_DATA' AND NOT refilled
                              THEN jsonb_build_object('timing', pgtrickle.next_timing(st.frontier -> 'timing', way, took, pending, explore))
                              WHEN st.frontier ? 'timing' THEN jsonb_build_object('timing', st.frontier -> 'timing')
                              ELSE '{}' END::jsonb
                      -- running totals and derived tables left by a steady FULL refresh (see steady)
                      || CASE WHEN stale THEN '{"stale": true}' ELSE '{}' END::jsonb
                      || jsonb_strip_nulls(jsonb_build_object('judged', coalesce(judged, st.frontier -> 'judged')))
                      -- the derived tables' own frontiers (pgtrickle.maintain_derived): those of
                      -- their statements in a DIFFERENTIAL refresh, the stream table's otherwise
                      || CASE WHEN act = 'DIFFERENTIAL' AND derived_at IS NOT NULL THEN jsonb_build_object('derived', to_jsonb(derived_at))
                              WHEN act = 'NO_DATA' AND st.frontier ? 'derived' THEN jsonb_build_object('derived', st.frontier -> 'derived')
                              ELSE '{}' END::jsonb,
           data_timestamp = now(), last_refresh_at = now(), is_populated = true, needs_reinit = false,
           consecutive_errors = 0, status = CASE WHEN s.status = 'INITIALIZING' THEN 'ACTIVE' ELSE s.status END,
           updated_at = now()
     WHERE s.pgt_id = st.pgt_id;

    -- A refresh that read no changes passes none: what it lets go of (rows its old frontier saw
    -- as in progress) the next refresh that reads changes prunes. Likewise a source without changes
    -- in this refresh's window (the probe's counts): of the rows its frontier passes there, those
    -- no other reader needs are pruned by the next refresh that reads changes of that source (the
    -- last reader to pass a row has it in its window). A pruning costs a statement planned per
    -- source (0.3 ms); refreshes without a probe (no frontier yet, recomputed queries) prune all.
    IF act <> 'NO_DATA' THEN
        PERFORM pgtrickle.prune_change_buffer(d.source_relid::regclass)
           FROM pgtrickle.pgt_dependencies d
          WHERE d.pgt_id = st.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')
            AND (counts IS NULL OR counts ? d.source_relid::text);
    END IF;
    -- for a caller that reads the history row in the same round trip (the engine's StreamTableRefresher)
    PERFORM set_config('pgtrickle.refresh_id', id::text, true);
    RETURN id;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.refresh_stream_table(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgtrickle.run_refresh((pgtrickle.find_stream_table(name)).pgt_id, 'MANUAL');
END
$fn$;

CREATE OR REPLACE TRIGGER pgt_classify_query BEFORE INSERT OR UPDATE OF defining_query ON pgtrickle.pgt_stream_tables
    FOR EACH ROW EXECUTE FUNCTION pgtrickle.classify_query();
