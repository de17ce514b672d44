-- pgtrickle catalog 0.33.0, part 2: change capture.
--
-- One change buffer per captured source, pgtrickle_changes.changes_<stable name>, shared by every
-- stream table that reads the source. AFTER statement-level triggers with transition tables write
-- one row per changed source row, tagged with the writer's transaction id (xid8, never wraps):
-- INSERT -> 'I' (new values), DELETE -> 'D' (old values), UPDATE -> 'D' (old) + 'I' (new),
-- TRUNCATE -> one 'T' marker. Rows carry no order or id: a consumer reads them as a multiset.
-- Writers never NOTIFY (every notifying commit takes a global lock); the engine finds pending
-- changes by reading the buffers.
--
-- A consumer (refresh) owns a frontier: the pg_snapshot its last refresh ran under. It consumes
-- exactly the rows whose writer is visible in its own snapshot and not in the frontier, so a
-- transaction that stays open across many refreshes and commits late is picked up by the first
-- refresh that can see it, never skipped.

-- The buffer of a source (NULL when the source is not captured).
CREATE FUNCTION pgtrickle.change_buffer(source regclass) RETURNS regclass
    LANGUAGE sql STABLE STRICT
    RETURN to_regclass('pgtrickle_changes.' || quote_ident('changes_' || pgtrickle.source_stable_name(source)));

-- Starts capturing changes of a table for a consumer (a stream table's pgt_id). Idempotent per
-- consumer; the buffer and triggers are created for the first consumer only. Returns the buffer.
CREATE FUNCTION pgtrickle.ensure_change_capture(source regclass, consumer bigint) RETURNS regclass
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stable   text := pgtrickle.source_stable_name(source);
    buffer   text := 'changes_' || stable;
    capture  text := 'capture_' || stable;
    columns  text;
    names    text;
    old_cols text;
    new_cols text;
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

    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum),
           string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('o.%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('n.%I', a.attname), ', ' ORDER BY a.attnum)
      INTO columns, names, old_cols, new_cols
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';

    -- What writers pay for, per captured row: one heap row here and one entry in the xid index.
    -- Nothing else: no identity column (a sequence call per row; rows are a multiset, nothing
    -- orders by insertion), no CHECK (re-prepared in every statement; only the capture functions
    -- write here). The xid index is the access path for "writers not older than a frontier's
    -- xmin", which must stay cheap while a slow consumer holds many old rows back from pruning.
    EXECUTE format('CREATE TABLE pgtrickle_changes.%I ('
                   'xid xid8 NOT NULL DEFAULT pg_current_xact_id(), '
                   'action "char" NOT NULL, %s)', buffer, columns);
    EXECUTE format('CREATE INDEX ON pgtrickle_changes.%I (xid)', buffer);

    -- One capture function per event, each a single INSERT. SECURITY DEFINER: writers need no
    -- privilege on pgtrickle_changes, which is closed to PUBLIC. No SET search_path (a per-call
    -- GUC save and restore): instead the bodies resolve nothing through the writer's search_path
    -- (schema-qualified target, transition tables, which the parser looks up before any schema,
    -- column names and literals; no operator, function or type name), so a writer's search_path
    -- cannot redirect them.
    EXECUTE format($f$
        CREATE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO pgtrickle_changes.%2$I (action, %3$s) SELECT 'I', %5$s FROM pgt_new n;
            RETURN NULL;
        END
        $body$$f$,
        capture || '_ins', buffer, names, old_cols, new_cols);
    EXECUTE format($f$
        CREATE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO pgtrickle_changes.%2$I (action, %3$s)
                SELECT 'D', %4$s FROM pgt_old o UNION ALL SELECT 'I', %5$s FROM pgt_new n;
            RETURN NULL;
        END
        $body$$f$,
        capture || '_upd', buffer, names, old_cols, new_cols);
    EXECUTE format($f$
        CREATE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO pgtrickle_changes.%2$I (action, %3$s) SELECT 'D', %4$s FROM pgt_old o;
            RETURN NULL;
        END
        $body$$f$,
        capture || '_del', buffer, names, old_cols, new_cols);
    EXECUTE format($f$
        CREATE FUNCTION pgtrickle_changes.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO pgtrickle_changes.%2$I (action) VALUES ('T');
            RETURN NULL;
        END
        $body$$f$,
        capture || '_trunc', buffer);

    -- Transition tables allow one event per trigger, hence four triggers.
    EXECUTE format('CREATE TRIGGER pgt_capture_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS pgt_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle_changes.%I()', source, capture || '_ins');
    EXECUTE format('CREATE TRIGGER pgt_capture_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgt_old NEW TABLE AS pgt_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle_changes.%I()', source, capture || '_upd');
    EXECUTE format('CREATE TRIGGER pgt_capture_del AFTER DELETE ON %s REFERENCING OLD TABLE AS pgt_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle_changes.%I()', source, capture || '_del');
    EXECUTE format('CREATE TRIGGER pgt_capture_trunc AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle_changes.%I()', source, capture || '_trunc');

    INSERT INTO pgtrickle.pgt_change_tracking (source_relid, tracked_by_pgt_ids, source_stable_name)
    VALUES (source, ARRAY[consumer], stable);
    RETURN pgtrickle.change_buffer(source);
END
$fn$;

-- Stops capturing for a consumer; the last consumer's release drops the triggers, the capture
-- functions and the buffer. Releasing a consumer that does not hold the source is a no-op. Works
-- for a source that has been dropped too (by its OID): its buffer and functions still go.
CREATE FUNCTION pgtrickle.release_change_capture(source regclass, consumer bigint) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- the name recorded at set-up: a dropped source has no name to hash any more
    stable    text := (SELECT t.source_stable_name FROM pgtrickle.pgt_change_tracking t WHERE t.source_relid = source);
    remaining bigint[];
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
    IF EXISTS (SELECT FROM pg_class c WHERE c.oid = source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS pgt_capture_ins ON %s', source);
        EXECUTE format('DROP TRIGGER IF EXISTS pgt_capture_upd ON %s', source);
        EXECUTE format('DROP TRIGGER IF EXISTS pgt_capture_del ON %s', source);
        EXECUTE format('DROP TRIGGER IF EXISTS pgt_capture_trunc ON %s', source);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I(), pgtrickle_changes.%I(), pgtrickle_changes.%I(), pgtrickle_changes.%I()',
                   'capture_' || stable || '_ins', 'capture_' || stable || '_upd',
                   'capture_' || stable || '_del', 'capture_' || stable || '_trunc');
    EXECUTE format('DROP TABLE IF EXISTS pgtrickle_changes.%I', 'changes_' || stable);
    DELETE FROM pgtrickle.pgt_change_tracking WHERE source_relid = source;
END
$fn$;

-- The captured rows of a source a consumer at frontier `since` has not yet consumed, as the FROM
-- and WHERE of a query that takes `since` as $1. NULL `since` (never refreshed): every row. Cheap
-- when nothing is pending: the xid index bounds the scan to writers not older than the frontier's xmin.
CREATE FUNCTION pgtrickle.pending_rows(source regclass, since pg_snapshot) RETURNS text
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

-- How many of those rows there are, as seen by the calling statement's snapshot.
CREATE FUNCTION pgtrickle.pending_change_count(source regclass, since pg_snapshot) RETURNS bigint
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

-- Whether there is any (NULL `since`: whether the buffer holds any row at all). The scheduler's
-- probe: it stops at the first row, where the count reads them all.
CREATE FUNCTION pgtrickle.has_pending_changes(source regclass, since pg_snapshot) RETURNS boolean
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

-- Deletes buffered rows every consumer has passed: rows whose writer is older than the oldest
-- frontier's xmin (committed before every frontier, or aborted). Consumers that have never
-- refreshed do not hold rows back: their first refresh is a full one. Returns rows deleted.
CREATE FUNCTION pgtrickle.prune_change_buffer(source regclass) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    buffer  regclass := pgtrickle.change_buffer(source);
    horizon xid8;
    n       bigint;
BEGIN
    IF buffer IS NULL THEN
        RETURN 0;
    END IF;
    SELECT min(pg_snapshot_xmin((st.frontier ->> 'snapshot')::pg_snapshot))
      INTO horizon
      FROM pgtrickle.pgt_change_tracking t
      JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = ANY (t.tracked_by_pgt_ids)
     WHERE t.source_relid = source AND st.frontier ? 'snapshot';
    IF horizon IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format('DELETE FROM %s WHERE xid < $1', buffer) USING horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
