-- pgtrickle catalog 0.33.0, part 5: guards.
--
-- 1. A stream table is written by its refreshes only. BEFORE statement-level triggers refuse a
--    user's INSERT, UPDATE, DELETE and TRUNCATE; pgtrickle.run_refresh sets the transaction-local
--    setting pgtrickle.refreshing to 'on' around its own writes (and back to 'off' right after
--    them, so that the caller's later writes in the same transaction are refused again). This
--    guards against mistakes, not against a determined user: anyone may set the setting.
-- 2. ALTER TABLE on a captured source (ADD, DROP, RENAME COLUMN, ALTER COLUMN TYPE, RENAME, SET
--    SCHEMA) would leave capture functions that name columns that are gone, or miss new ones. An
--    event trigger on ddl_command_end rebuilds the capture of such a source and makes every stream
--    table reading it recompute in full at its next refresh (needs_reinit) and be planned again
--    (delta_sql NULL). Creating an event trigger needs a superuser: when the migration runs as
--    another role it skips the event trigger with a NOTICE, and DDL on sources is then the
--    operator's business (drop and re-create the stream tables that read an altered source).

-- The trigger function of the guard. Qualified names only: it runs under the writer's search_path.
CREATE FUNCTION pgtrickle.refuse_direct_write() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    IF pg_catalog.current_setting('pgtrickle.refreshing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pgtrickle: % on stream table %.% is not allowed: only its refreshes write it',
        TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
        USING ERRCODE = 'feature_not_supported',
              HINT = 'A stream table holds the result of its query. Write to its sources instead; for rows of your own, '
                     'use another table (and a view combining the two if you need one).';
END
$fn$;

-- Puts the guard on a stream table's storage (create_stream_table calls it). Idempotent.
CREATE FUNCTION pgtrickle.guard_stream_table(storage regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = storage AND t.tgname = 'pgt_guard_write') THEN
        EXECUTE format('CREATE TRIGGER pgt_guard_write BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle.refuse_direct_write()', storage);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = storage AND t.tgname = 'pgt_guard_truncate') THEN
        EXECUTE format('CREATE TRIGGER pgt_guard_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle.refuse_direct_write()', storage);
    END IF;
END
$fn$;

-- Stream tables created before this migration.
SELECT pgtrickle.guard_stream_table(s.pgt_relid::regclass)
  FROM pgtrickle.pgt_stream_tables s WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = s.pgt_relid);

-- Brings the capture of a source in line with the source's columns and name after DDL: a new
-- buffer with the current non-generated columns, new capture functions and triggers (set up by
-- ensure_change_capture, so there is one definition of them), the old buffer's rows copied over
-- (xid, action, and the values of the columns that survive, renamed or cast to their new type;
-- NULL where a value does not convert), the consumers and owners kept. Every stream table reading
-- the source then recomputes in full at its next refresh and is planned again. Does nothing and
-- returns false when the capture is current. renamed_to: the new name of a column that an
-- ALTER TABLE ... RENAME COLUMN renamed (its buffer column is the one that lost its name).
-- SECURITY DEFINER: the owner of an altered source need not own the buffer or the capture functions.
CREATE FUNCTION pgtrickle.rebuild_change_capture(source regclass, renamed_to text DEFAULT NULL) RETURNS boolean
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

    SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) INTO wanted
      FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    SELECT array_agg(format('%I %s', b.attname, format_type(b.atttypid, b.atttypmod)) ORDER BY b.attnum) INTO have
      FROM pg_attribute b WHERE b.attrelid = old_buffer AND b.attnum > 2 AND NOT b.attisdropped;
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
            FOR obj IN SELECT DISTINCT t.tgfoid::regprocedure::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                        WHERE t.tgrelid = source AND p.pronamespace = 'pgtrickle_changes'::regnamespace LOOP
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

-- The event trigger: ALTER TABLE on a captured source (or on a parent of one) rebuilds its
-- capture when its columns or name changed. Cheap for every other ALTER TABLE: one probe of
-- pgt_change_tracking. The rebuild's own DDL (on pgtrickle_changes) fires it again, harmlessly:
-- buffers are not captured sources.
CREATE FUNCTION pgtrickle.on_source_ddl() RETURNS event_trigger
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
                  WHERE c.object_type IN ('table', 'table column') AND c.classid = 'pg_class'::regclass
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
END
$fn$;

DO $do$
BEGIN
    IF current_setting('is_superuser') <> 'on' THEN
        RAISE NOTICE 'pgtrickle: not a superuser, so the event trigger pgtrickle_source_ddl is not created: ALTER TABLE on a source of a stream table will not rebuild its change capture'
            USING HINT = 'Run the migration as a superuser, or drop and re-create the stream tables that read a source after altering its columns.';
    ELSIF NOT EXISTS (SELECT FROM pg_event_trigger e WHERE e.evtname = 'pgtrickle_source_ddl') THEN
        CREATE EVENT TRIGGER pgtrickle_source_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
            EXECUTE FUNCTION pgtrickle.on_source_ddl();
    END IF;
END
$do$;
