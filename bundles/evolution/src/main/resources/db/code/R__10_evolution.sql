-- Zero-downtime ALTER QUERY (unit io.pgtrickle.evolution, repeatable): shadow build, catch-up,
-- atomic swap that carries what depends on the live table, rollback, evolution status.

-- pg_trickle.shadow_convergence_timeout: an interval ('30min') or milliseconds; default 1 hour.
CREATE OR REPLACE FUNCTION pgtrickle.shadow_convergence_timeout() RETURNS interval
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v text := nullif(btrim(current_setting('pg_trickle.shadow_convergence_timeout', true)), '');
BEGIN
    IF v IS NULL THEN
        RETURN interval '1 hour';
    ELSIF v ~ '^\d{1,12}$' THEN
        RETURN v::bigint * interval '1 ms';
    END IF;
    BEGIN
        RETURN v::interval;
    EXCEPTION WHEN OTHERS THEN
        PERFORM pgtrickle.warn_invalid_setting('pg_trickle.shadow_convergence_timeout', v, 'an interval or a number of milliseconds',
                                               '1 hour');
        RETURN interval '1 hour';
    END;
END
$fn$;

-- The rows of a table as a multiset, compared with another: (only in a, only in b).
CREATE OR REPLACE FUNCTION pgtrickle.multiset_difference(a regclass, b regclass, OUT only_in_a bigint, OUT only_in_b bigint)
    LANGUAGE plpgsql
AS $fn$
BEGIN
    EXECUTE format($sql$
        WITH x AS (SELECT ROW(t.*)::text AS k, count(*) AS n FROM %s t GROUP BY 1),
             y AS (SELECT ROW(t.*)::text AS k, count(*) AS n FROM %s t GROUP BY 1)
        SELECT coalesce(sum(greatest(coalesce(x.n, 0) - coalesce(y.n, 0), 0)), 0),
               coalesce(sum(greatest(coalesce(y.n, 0) - coalesce(x.n, 0), 0)), 0)
          FROM x FULL JOIN y USING (k)$sql$, a, b)
       INTO only_in_a, only_in_b;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.evolution_blockers(relid oid, new_shape oid) RETURNS text
    LANGUAGE sql STABLE
AS $fn$
    WITH carried(rel) AS (
             SELECT relid
             UNION
             SELECT v.view_oid FROM pgtrickle.evolution_dependent_views(relid) v),
         refs(classid, objid) AS (
             SELECT 'pg_class'::regclass::oid, c.rel FROM carried c
             UNION
             SELECT 'pg_type'::regclass::oid, k.reltype FROM carried c JOIN pg_class k ON k.oid = c.rel),
         dependents AS (
             SELECT DISTINCT d.classid, d.objid, d.objsubid, d.deptype
               FROM refs JOIN pg_depend d ON d.refclassid = refs.classid AND d.refobjid = refs.objid)
    SELECT string_agg(what, '; ' ORDER BY what) FROM (
        SELECT pgtrickle.evolution_dependent_name(d.classid, d.objid, d.objsubid) AS what
          FROM dependents d
         WHERE NOT (
               -- the table's indexes, its TOAST table and those of its views
               (d.classid = 'pg_class'::regclass
                AND (EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = relid)
                     OR EXISTS (SELECT FROM carried c JOIN pg_class k ON k.oid = c.rel WHERE k.reltoastrelid = d.objid)))
               -- row types and their array types
            OR (d.classid = 'pg_type'::regclass AND d.deptype = 'i')
               -- the views, re-created
            OR (d.classid = 'pg_rewrite'::regclass
                AND EXISTS (SELECT FROM pg_rewrite r JOIN carried c ON c.rel = r.ev_class
                             WHERE r.oid = d.objid AND r.rulename = '_RETURN' AND r.ev_class <> relid))
            OR (d.classid = 'pg_constraint'::regclass
                AND EXISTS (SELECT FROM pg_constraint c WHERE c.oid = d.objid AND c.conrelid = relid AND c.contype IN ('p', 'u', 'n')))
               -- the engine's guards and capture; a foreign key's own triggers (its constraint is named)
            OR (d.classid = 'pg_trigger'::regclass
                AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = d.objid AND t.tgrelid = relid
                               AND (t.tgisinternal OR t.tgname LIKE 'pgt\_%')))
            OR (d.classid = 'pg_policy'::regclass
                AND EXISTS (SELECT FROM pg_policy p WHERE p.oid = d.objid AND p.polrelid = relid))
            OR (d.classid = 'pg_publication_rel'::regclass
                AND EXISTS (SELECT FROM pg_publication_rel p WHERE p.oid = d.objid AND p.prrelid = relid)))
        UNION
        SELECT format('%s reads column %I (%s), which the new query drops or retypes',
                      pgtrickle.evolution_dependent_name(d.classid, d.objid, d.objsubid), a.attname, format_type(a.atttypid, a.atttypmod))
          FROM pg_depend d JOIN pg_attribute a ON a.attrelid = relid AND a.attnum = d.refobjsubid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = relid AND d.refobjsubid > 0
           -- (a publication's column list and row filter are dependencies too)
           AND (d.classid IN ('pg_policy'::regclass, 'pg_publication_rel'::regclass)
                OR d.classid = 'pg_rewrite'::regclass
                   AND EXISTS (SELECT FROM pg_rewrite r JOIN carried c ON c.rel = r.ev_class WHERE r.oid = d.objid AND r.ev_class <> relid))
           AND NOT EXISTS (SELECT FROM pg_attribute b
                            WHERE b.attrelid = new_shape AND b.attname = a.attname AND NOT b.attisdropped
                              AND b.atttypid = a.atttypid AND b.atttypmod = a.atttypmod AND b.attcollation = a.attcollation)
        UNION
        SELECT format('security label of provider %s on %s', l.provider, c.rel::regclass)
          FROM carried c JOIN pg_seclabel l ON l.classoid = 'pg_class'::regclass AND l.objoid = c.rel) b
$fn$;

-- Comments and grants of a table or view, as statements that give them to target (the relation
-- that will carry its name): the relation's comment, and the comments and grants of those of its
-- columns that columns_of (the new storage) has too. The owner's own privileges are implied.
CREATE OR REPLACE FUNCTION pgtrickle.evolution_acl_sql(rel oid, target text, columns_of oid) RETURNS text[]
    LANGUAGE sql STABLE
AS $fn$
    SELECT coalesce(array_agg(stmt ORDER BY ord, stmt), '{}') FROM (
        SELECT 1 AS ord, format('COMMENT ON %s %s IS %L', CASE WHEN c.relkind = 'v' THEN 'VIEW' ELSE 'TABLE' END, target,
                                obj_description(rel, 'pg_class')) AS stmt
          FROM pg_class c WHERE c.oid = rel AND obj_description(rel, 'pg_class') IS NOT NULL
        UNION ALL
        SELECT 2, format('COMMENT ON COLUMN %s.%I IS %L', target, a.attname, col_description(rel, a.attnum))
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND col_description(rel, a.attnum) IS NOT NULL
           AND EXISTS (SELECT FROM pg_attribute b WHERE b.attrelid = columns_of AND b.attname = a.attname AND NOT b.attisdropped)
        UNION ALL
        SELECT 3, format('GRANT %s ON TABLE %s TO %s%s', x.privilege_type, target,
                         CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
          FROM pg_class c, aclexplode(c.relacl) x
         WHERE c.oid = rel AND x.grantee <> c.relowner
        UNION ALL
        SELECT 4, format('GRANT %s (%I) ON TABLE %s TO %s%s', x.privilege_type, a.attname, target,
                         CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) x
         WHERE c.oid = rel AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner
           AND EXISTS (SELECT FROM pg_attribute b WHERE b.attrelid = columns_of AND b.attname = a.attname AND NOT b.attisdropped)) s
$fn$;

-- What the swap gives the new storage (new_shape, which will carry the stream table's name) of
-- what the user put on the old storage (relid) and on the views that read it: the statements, in
-- the order to run them once the new storage has the name, the views dropped and the indexes in
-- kept_indexes renamed. Read while the swap holds its exclusive lock. The search_path is the
-- minimal one so that pg_get_viewdef and pg_get_expr qualify every name they print; run the
-- statements under the same search_path.
CREATE OR REPLACE FUNCTION pgtrickle.evolution_carry_sql(relid oid, new_shape oid, kept_indexes text[]) RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    live    pg_class;
    shadow  pg_class;
    target  text;
    replica text;
    stmts   text[];
    pol     record;
    pub     record;
    v       record;
    toast   text;
BEGIN
    SELECT * INTO live FROM pg_class c WHERE c.oid = relid;
    SELECT * INTO shadow FROM pg_class c WHERE c.oid = new_shape;
    target := format('%I.%I', (SELECT n.nspname FROM pg_namespace n WHERE n.oid = live.relnamespace), live.relname);

    -- the owner first: the grants below are then granted in its name
    stmts := ARRAY[format('ALTER TABLE %s OWNER TO %I', target, pg_get_userbyid(live.relowner))];
    IF shadow.reloptions IS DISTINCT FROM live.reloptions THEN
        IF shadow.reloptions IS NOT NULL THEN
            stmts := stmts || format('ALTER TABLE %s RESET (%s)', target,
                                     (SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(shadow.reloptions) o));
        END IF;
        IF live.reloptions IS NOT NULL THEN
            stmts := stmts || format('ALTER TABLE %s SET (%s)', target, pgtrickle.reloption_list(live.reloptions));
        END IF;
    END IF;
    -- the TOAST table's parameters (toast.autovacuum_...), if the new storage has one to take them
    IF live.reltoastrelid <> 0 AND shadow.reltoastrelid <> 0 THEN
        SELECT pgtrickle.reloption_list(t.reloptions, 'toast.') INTO toast FROM pg_class t WHERE t.oid = live.reltoastrelid;
        IF toast IS NOT NULL THEN
            stmts := stmts || format('ALTER TABLE %s SET (%s)', target, toast);
        END IF;
    END IF;
    stmts := stmts || pgtrickle.evolution_acl_sql(relid, target, new_shape);

    IF live.relrowsecurity THEN
        stmts := stmts || format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    END IF;
    IF live.relforcerowsecurity THEN
        stmts := stmts || format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    END IF;
    FOR pol IN SELECT * FROM pg_policy p WHERE p.polrelid = relid ORDER BY p.polname LOOP
        stmts := stmts || format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', pol.polname, target,
                                 CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                 CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                               WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                 (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ')
                                    FROM unnest(pol.polroles) r),
                                 ' USING (' || pg_get_expr(pol.polqual, relid) || ')',
                                 ' WITH CHECK (' || pg_get_expr(pol.polwithcheck, relid) || ')');
        IF obj_description(pol.oid, 'pg_policy') IS NOT NULL THEN
            stmts := stmts || format('COMMENT ON POLICY %I ON %s IS %L', pol.polname, target, obj_description(pol.oid, 'pg_policy'));
        END IF;
    END LOOP;

    -- replica identity, which publications of updates and deletes need
    IF live.relreplident = 'f' THEN
        stmts := stmts || format('ALTER TABLE %s REPLICA IDENTITY FULL', target);
    ELSIF live.relreplident = 'n' THEN
        stmts := stmts || format('ALTER TABLE %s REPLICA IDENTITY NOTHING', target);
    ELSIF live.relreplident = 'i' THEN
        SELECT c.relname INTO replica FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = relid AND i.indisreplident;
        IF replica = ANY (kept_indexes) THEN
            stmts := stmts || format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', target, replica);
        ELSE
            RAISE NOTICE 'pgtrickle: the replica identity index % of % does not apply to the new query: the default replica identity is used',
                replica, target;
        END IF;
    END IF;
    FOR pub IN SELECT pb.pubname, pr.prattrs, pg_get_expr(pr.prqual, relid) AS filter
               FROM pg_publication_rel pr JOIN pg_publication pb ON pb.oid = pr.prpubid
              WHERE pr.prrelid = relid ORDER BY pb.pubname LOOP
        stmts := stmts || format('ALTER PUBLICATION %I ADD TABLE %s%s%s', pub.pubname, target,
                                 ' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                                            FROM unnest(pub.prattrs::int2[]) WITH ORDINALITY k(attnum, n)
                                            JOIN pg_attribute a ON a.attrelid = relid AND a.attnum = k.attnum) || ')',
                                 ' WHERE (' || pub.filter || ')');
    END LOOP;

    FOR v IN SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relowner, c.reloptions
               FROM pgtrickle.evolution_dependent_views(relid) d
               JOIN pg_class c ON c.oid = d.view_oid JOIN pg_namespace n ON n.oid = c.relnamespace
              ORDER BY d.depth, c.oid LOOP
        -- the options include check_option and security_barrier / security_invoker
        stmts := stmts || format('CREATE VIEW %s%s AS %s', v.name, ' WITH (' || pgtrickle.reloption_list(v.reloptions) || ')',
                                 regexp_replace(pg_get_viewdef(v.oid), ';\s*$', ''));
        stmts := stmts || format('ALTER VIEW %s OWNER TO %I', v.name, pg_get_userbyid(v.relowner));
        stmts := stmts || pgtrickle.evolution_acl_sql(v.oid, v.name, v.oid);
    END LOOP;
    RETURN stmts;
END
$fn$;

-- An object that depends on a stream table, named for a user (the table-like ones by their kind).
CREATE OR REPLACE FUNCTION pgtrickle.evolution_dependent_name(classid oid, objid oid, objsubid integer) RETURNS text
    LANGUAGE sql STABLE
AS $fn$
    SELECT coalesce(
        CASE classid
            WHEN 'pg_rewrite'::regclass THEN
                (SELECT CASE WHEN r.rulename <> '_RETURN' THEN format('rule %I on %s', r.rulename, r.ev_class::regclass)
                             WHEN k.relkind = 'm' THEN format('materialized view %s', r.ev_class::regclass)
                             WHEN k.relpersistence = 't' THEN format('temporary view %s', r.ev_class::regclass)
                             ELSE format('view %s', r.ev_class::regclass) END
                   FROM pg_rewrite r JOIN pg_class k ON k.oid = r.ev_class WHERE r.oid = objid)
            WHEN 'pg_constraint'::regclass THEN
                (SELECT format('constraint %I on %s', c.conname, c.conrelid::regclass) FROM pg_constraint c
                  WHERE c.oid = objid AND c.conrelid <> 0)
            WHEN 'pg_trigger'::regclass THEN
                (SELECT format('trigger %I on %s', t.tgname, t.tgrelid::regclass) FROM pg_trigger t WHERE t.oid = objid)
            WHEN 'pg_policy'::regclass THEN
                (SELECT format('policy %I on %s', p.polname, p.polrelid::regclass) FROM pg_policy p WHERE p.oid = objid)
            WHEN 'pg_publication_rel'::regclass THEN
                (SELECT format('publication %I', p.pubname) FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                  WHERE pr.oid = objid)
        END,
        pg_describe_object(classid, objid, objsubid))
$fn$;

-- The views that read a stream table's storage, directly or through other views, with their depth
-- (1: reads the table; n: reads a view of depth n - 1 and none deeper): re-created in that order.
-- Temporary views are not among them: they belong to another session, which alone can re-create them.
CREATE OR REPLACE FUNCTION pgtrickle.evolution_dependent_views(relid oid) RETURNS TABLE (view_oid oid, depth integer)
    LANGUAGE sql STABLE
AS $fn$
    WITH RECURSIVE up(view_oid, depth) AS (
        SELECT r.ev_class, 1
          FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = relid
           AND r.ev_class <> relid AND r.rulename = '_RETURN' AND c.relkind = 'v' AND c.relpersistence <> 't'
        UNION
        SELECT r.ev_class, up.depth + 1
          FROM up JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                                  AND d.refobjid = up.view_oid
          JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class
         WHERE r.ev_class <> up.view_oid AND r.rulename = '_RETURN' AND c.relkind = 'v' AND c.relpersistence <> 't')
    SELECT up.view_oid, max(up.depth) FROM up GROUP BY up.view_oid
$fn$;

-- A relation's storage parameters as the list of SET ( ... ), each under prefix ('' or 'toast.').
CREATE OR REPLACE FUNCTION pgtrickle.reloption_list(options text[], prefix text DEFAULT '') RETURNS text
    LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT string_agg(format('%s%I = %L', prefix, split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ')
      FROM unnest(options) o
$fn$;

-- Rebuilds on the shadow the live table's indexes (and the PRIMARY KEY and UNIQUE constraints
-- behind some of them) that still apply: those whose columns the new query still has. Each under
-- a temporary name; the swap gives it the original one. Records what was built and skipped.
-- Columns that are NOT NULL on the live table are made so on the shadow first (a replica identity
-- index needs them, and setting them under the swap's lock would scan the table there).
CREATE OR REPLACE FUNCTION pgtrickle.build_shadow_indexes(evolution_id bigint) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    ev      pgtrickle.pgt_evolutions;
    live    oid;
    shadow  regclass;
    idx     record;
    tmp     text;
    built   jsonb;
    skipped text[];
    not_null text;
BEGIN
    SELECT * INTO ev FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = build_shadow_indexes.evolution_id;
    SELECT s.pgt_relid INTO live FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id;
    shadow := ev.shadow_table::regclass;
    built := ev.indexes;
    skipped := ev.skipped_indexes;
    SELECT string_agg(format('ALTER COLUMN %I SET NOT NULL', a.attname), ', ' ORDER BY a.attnum) INTO not_null
      FROM pg_attribute a JOIN pg_attribute b ON b.attrelid = shadow AND b.attname = a.attname AND NOT b.attisdropped
     WHERE a.attrelid = live AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT b.attnotnull;
    IF not_null IS NOT NULL THEN
        BEGIN
            EXECUTE format('ALTER TABLE %s %s', shadow, not_null);
        EXCEPTION WHEN not_null_violation THEN
            RAISE NOTICE 'pgtrickle: the new query of % yields NULL in a column that is NOT NULL on it, which is not kept: %', live::regclass, SQLERRM;
        END;
    END IF;
    FOR idx IN SELECT i.indexrelid, c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, con.contype, con.conname
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = live AND con.contype IN ('p', 'u')
                WHERE i.indrelid = live
                  -- the engine's own (RefreshPlanner): the shadow has its own, handed over at the swap
                  AND c.relname::text <> format('pgt_%s_row_hash', ev.pgt_id)
                  AND c.relname::text NOT IN (SELECT b ->> 'name' FROM jsonb_array_elements(built) b)
                  AND NOT c.relname::text = ANY (skipped)
                ORDER BY c.relname LOOP
        tmp := left('__pgt_' || ev.evolution_id || '_' || idx.name, 63);
        BEGIN
            -- pg_get_indexdef: CREATE [UNIQUE] INDEX name ON [ONLY] table USING method (...) [...]
            EXECUTE format('CREATE %sINDEX %I ON %s USING %s',
                           CASE WHEN idx.def LIKE 'CREATE UNIQUE INDEX %' THEN 'UNIQUE ' ELSE '' END, tmp, shadow,
                           substring(idx.def FROM ' USING (.*)$'));
            IF idx.contype = 'p' THEN
                -- a primary key needs NOT NULL columns; set now, so that the swap checks nothing
                EXECUTE (SELECT format('ALTER TABLE %s %s', shadow,
                                       string_agg(format('ALTER COLUMN %I SET NOT NULL', a.attname), ', '))
                           FROM pg_index i JOIN pg_attribute a ON a.attrelid = live AND a.attnum = ANY (i.indkey)
                          WHERE i.indexrelid = idx.indexrelid);
            END IF;
            built := built || jsonb_build_array(jsonb_build_object('name', idx.name, 'shadow_name', tmp,
                                                                   'constraint', idx.conname, 'contype', idx.contype));
        EXCEPTION WHEN undefined_column OR unique_violation OR not_null_violation OR datatype_mismatch
                       OR undefined_function OR undefined_object OR feature_not_supported THEN
            RAISE NOTICE 'pgtrickle: index % of % does not apply to the new query and is not kept: %', idx.name, live::regclass, SQLERRM;
            skipped := skipped || idx.name::text;
        END;
    END LOOP;
    UPDATE pgtrickle.pgt_evolutions e SET indexes = built, skipped_indexes = skipped
     WHERE e.evolution_id = build_shadow_indexes.evolution_id;
END
$fn$;

-- Starts a shadow evolution of a stream table to a new query and returns its id. Validates
-- everything the build could fail on for reasons known now, in the caller's transaction: an error
-- leaves nothing behind. mode: the refresh mode the new query asks for (NULL: the current one).
CREATE OR REPLACE FUNCTION pgtrickle.start_evolution(name text, query text, mode text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st       pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
    flag     text := lower(btrim(coalesce(current_setting('pg_trickle.shadow_build_enabled', true), '')));
    running  pgtrickle.pgt_evolutions;
    prep     record;
    shadow   text;
    relid    oid;
    owner    name;
    id       bigint;
    ev       bigint;
    blockers text;
    lost     text;
    options  text[];
BEGIN
    IF flag NOT IN ('on', 'true', 'yes', '1') THEN
        RAISE EXCEPTION 'pgtrickle: shadow builds are disabled: set pg_trickle.shadow_build_enabled = on to use shadow_build'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'ALTER DATABASE ... SET pg_trickle.shadow_build_enabled = on (or SET it in the session), or alter the query without shadow_build.';
    END IF;
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'pgtrickle: a shadow build needs a non-empty query' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = st.pgt_id FOR UPDATE;
    SELECT * INTO running FROM pgtrickle.pgt_evolutions e WHERE e.pgt_id = st.pgt_id AND e.status = 'in_progress';
    IF FOUND THEN
        RAISE EXCEPTION 'pgtrickle: an evolution of % is already in progress (evolution %, %, started %)',
            name, running.evolution_id, running.phase, running.started_at
            USING ERRCODE = 'object_in_use',
                  HINT = format('Watch it with pgtrickle.view_evolution_status(%L), or cancel it with pgtrickle.cancel_evolution(%L).', name, name);
    END IF;
    mode := upper(btrim(coalesce(mode, st.requested_refresh_mode)));
    IF mode NOT IN ('AUTO', 'FULL', 'DIFFERENTIAL') THEN
        RAISE EXCEPTION 'pgtrickle: invalid refresh_mode ''%''', mode
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use AUTO, FULL or DIFFERENTIAL.';
    END IF;

    prep := pgtrickle.prepare_query(name, query, mode);
    IF EXISTS (SELECT FROM pgtrickle.query_sources(prep.view_oid) q WHERE q.relid = st.pgt_relid) THEN
        RAISE EXCEPTION 'pgtrickle: the new query of % reads % itself', name, name USING ERRCODE = 'invalid_recursion';
    END IF;
    blockers := pgtrickle.evolution_blockers(st.pgt_relid, prep.view_oid);
    IF blockers IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: cannot replace the storage of %: these depend on it and cannot be carried over to the new storage: %', name, blockers
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop them and re-create them after the evolution (or change the query so that it keeps the columns named), or alter the query without shadow_build.';
    END IF;
    -- Downstream stream tables keep reading the same columns: every column they can see must stay,
    -- with its type; new columns may be added.
    IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = st.pgt_relid) THEN
        SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) INTO lost
          FROM pg_attribute a
         WHERE a.attrelid = st.pgt_relid AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT EXISTS (SELECT FROM pg_attribute b WHERE b.attrelid = prep.view_oid AND b.attname = a.attname
                              AND b.atttypid = a.atttypid AND b.atttypmod = a.atttypmod AND NOT b.attisdropped);
        IF lost IS NOT NULL THEN
            RAISE EXCEPTION 'pgtrickle: the new query of % drops or retypes columns that other stream tables may read: %', name, lost
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Keep those columns (adding new ones is fine), or drop the dependent stream tables first.';
        END IF;
    END IF;

    shadow := '__pgt_shadow_' || st.pgt_name;
    IF octet_length(shadow) > 63 THEN
        shadow := '__pgt_shadow_' || st.pgt_id;
    END IF;
    IF to_regclass(format('%I.%I', st.pgt_schema, shadow)) IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: relation %.% already exists; the shadow of % needs that name', st.pgt_schema, shadow, name
            USING ERRCODE = 'duplicate_table', HINT = 'It is not pgtrickle''s: rename or drop it.';
    END IF;
    EXECUTE format('CREATE TABLE %I.%I AS SELECT * FROM pg_temp.pgt_validate_query WITH NO DATA', st.pgt_schema, shadow);
    relid := format('%I.%I', st.pgt_schema, shadow)::regclass;
    SELECT c.relowner::regrole::name, c.reloptions INTO owner, options FROM pg_class c WHERE c.oid = st.pgt_relid;
    IF owner <> current_user THEN
        EXECUTE format('ALTER TABLE %s OWNER TO %I', relid::regclass, owner);
    END IF;
    -- the build fills the shadow as the live table is filled (fillfactor)
    IF options IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s SET (%s)', relid::regclass, pgtrickle.reloption_list(options));
    END IF;
    PERFORM pgtrickle.guard_stream_table(relid);

    INSERT INTO pgtrickle.pgt_stream_tables
           (pgt_relid, pgt_name, pgt_schema, defining_query, original_query, schedule, refresh_mode,
            requested_refresh_mode, refresh_mode_reason, effective_refresh_mode, status, shadow_of)
    VALUES (relid, shadow, st.pgt_schema, prep.normalized, query, st.schedule, prep.effective,
            mode, prep.reason, prep.effective, 'ACTIVE', st.pgt_id)
    RETURNING pgt_id INTO id;
    -- sources only the new query reads are captured from now on: nothing written between the
    -- build and the swap is missed
    PERFORM pgtrickle.record_dependencies(id, prep.view_oid);
    DROP VIEW pg_temp.pgt_validate_query;

    INSERT INTO pgtrickle.pgt_evolutions (pgt_id, shadow_pgt_id, shadow_table, new_query)
    VALUES (st.pgt_id, id, format('%I.%I', st.pgt_schema, shadow), query)
    RETURNING evolution_id INTO ev;
    UPDATE pgtrickle.pgt_stream_tables s
       SET in_shadow_build = true, shadow_table_name = format('%I.%I', st.pgt_schema, shadow), updated_at = now()
     WHERE s.pgt_id = st.pgt_id;
    RAISE NOTICE 'pgtrickle: evolution % of % started: % is built in the background; watch it with pgtrickle.view_evolution_status(%)',
        ev, name, format('%I.%I', st.pgt_schema, shadow), quote_literal(name);
    RETURN ev;
END
$fn$;

-- One step of an evolution, in the caller's transaction (the evolution bundle commits each; an
-- error means: roll back, then fail_evolution). Returns the milliseconds until the next step is
-- due, or NULL when the evolution is no longer in progress.
CREATE OR REPLACE FUNCTION pgtrickle.evolution_step(evolution_id bigint) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    ev       pgtrickle.pgt_evolutions;
    throttle integer := pgtrickle.setting_number('pg_trickle.shadow_refresh_throttle_ms', 1000);
    timeout  interval := pgtrickle.shadow_convergence_timeout();
    live_f   pg_snapshot;
    shadow_f pg_snapshot;
    due      timestamptz;
BEGIN
    SELECT * INTO ev FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = evolution_step.evolution_id FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        -- another session is stepping it (or it does not exist)
        RETURN CASE WHEN EXISTS (SELECT FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = evolution_step.evolution_id
                                    AND e.status = 'in_progress') THEN greatest(throttle, 100) END;
    END IF;
    IF ev.status <> 'in_progress' THEN
        RETURN NULL;
    END IF;
    IF clock_timestamp() > ev.started_at + timeout THEN
        PERFORM pgtrickle.end_evolution(ev.evolution_id, 'failed',
            format('did not converge within pg_trickle.shadow_convergence_timeout (%s; phase %s)', timeout, ev.phase));
        RETURN NULL;
    END IF;

    IF ev.phase = 'BUILDING' THEN
        -- one statement fills the shadow (run_refresh's first FULL refresh of an empty table)
        PERFORM pgtrickle.run_refresh(ev.shadow_pgt_id, 'INITIAL');
        PERFORM pgtrickle.build_shadow_indexes(ev.evolution_id);
        -- statistics now, so that the first queries after the swap are planned on the new rows
        EXECUTE format('ANALYZE %s', ev.shadow_table);
        UPDATE pgtrickle.pgt_evolutions e
           SET phase = 'CATCHING_UP', built_at = clock_timestamp(), last_step_at = clock_timestamp(),
               build_rows = (SELECT h.rows_inserted FROM pgtrickle.pgt_refresh_history h
                              WHERE h.pgt_id = ev.shadow_pgt_id ORDER BY h.refresh_id DESC LIMIT 1)
         WHERE e.evolution_id = ev.evolution_id;
        RETURN throttle;
    END IF;

    IF ev.phase = 'CATCHING_UP' THEN
        -- While the engine has not planned the shadow, a catch-up would recompute it in full, and
        -- back-to-back steps would keep its row locked against the planner (which skips locked
        -- rows): the steps leave at least a scheduler interval free for it.
        IF EXISTS (SELECT FROM pgtrickle.pgt_stream_tables s
                    WHERE s.pgt_id = ev.shadow_pgt_id AND s.refresh_mode = 'DIFFERENTIAL' AND s.delta_sql IS NULL) THEN
            throttle := greatest(throttle, pgtrickle.setting_number('pg_trickle.scheduler_interval_ms', 1000));
        END IF;
        due := ev.last_step_at + throttle * interval '1 ms';
        IF clock_timestamp() < due THEN
            RETURN ceil(extract(epoch FROM due - clock_timestamp()) * 1000)::integer;
        END IF;
        PERFORM pgtrickle.run_refresh(ev.shadow_pgt_id, 'SCHEDULER');
        SELECT (s.frontier ->> 'snapshot')::pg_snapshot INTO shadow_f FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.shadow_pgt_id;
        SELECT (s.frontier ->> 'snapshot')::pg_snapshot INTO live_f FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id;
        -- Converged: the shadow has reached the live table's frontier, i.e. it has seen every
        -- transaction the live table had seen finish before its last refresh (it may have seen
        -- more). Both keep moving while sources change, so "the same snapshot" is not a state one
        -- can wait for; the swap's last catch-up then only has the changes of a refresh interval.
        UPDATE pgtrickle.pgt_evolutions e
           SET catch_up_refreshes = e.catch_up_refreshes + 1, last_step_at = clock_timestamp(),
               phase = CASE WHEN live_f IS NULL OR pg_snapshot_xmax(shadow_f) >= pg_snapshot_xmin(live_f)
                            THEN 'SWAPPING' ELSE e.phase END
         WHERE e.evolution_id = ev.evolution_id
        RETURNING * INTO ev;
        RETURN CASE WHEN ev.phase = 'SWAPPING' THEN 0 ELSE throttle END;
    END IF;

    -- SWAPPING; after a step whose lock tries all timed out, not before the backoff has passed
    IF ev.swap_attempts > 0 AND clock_timestamp() < ev.last_step_at + least(5000, 100 * power(2, least(ev.swap_attempts / 5 - 1, 6))) * interval '1 ms' THEN
        RETURN 50;
    END IF;
    RETURN pgtrickle.swap_evolution(ev);
END
$fn$;

-- The swap (phase SWAPPING), in the caller's transaction. Returns NULL when swapped, else the
-- milliseconds to wait before trying again (the exclusive lock was not granted in time).
CREATE OR REPLACE FUNCTION pgtrickle.swap_evolution(ev pgtrickle.pgt_evolutions) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    live      pgtrickle.pgt_stream_tables;
    sh        pgtrickle.pgt_stream_tables;
    live_rel  regclass;
    old_rel   oid;
    same      boolean;
    ins       bigint;
    del       bigint;
    n_old     bigint;
    n_new     bigint;
    blockers  text;
    wait_lock text := pgtrickle.setting_number('pg_trickle.shadow_swap_lock_timeout_ms', 50) || 'ms';
    prior     text := current_setting('lock_timeout');
    idx       jsonb;
    carry     text[];
    stmt      text;
    views     oid[];
    view_names text[];
    saved_path text;
    dep       record;
    down      bigint[];
    state     text;
    tries     integer := 0;
    id        bigint;
BEGIN
    -- The live table stops refreshing (its scheduler skips a locked row); readers are not affected.
    SELECT * INTO live FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id FOR UPDATE;
    live_rel := live.pgt_relid::regclass;
    old_rel := live.pgt_relid;
    blockers := pgtrickle.evolution_blockers(live.pgt_relid, ev.shadow_table::regclass);
    IF blockers IS NOT NULL THEN
        RAISE EXCEPTION 'pgtrickle: cannot replace the storage of %: these were added since the evolution started and cannot be carried over to the new storage: %',
            live_rel, blockers USING ERRCODE = 'dependent_objects_still_exist';
    END IF;
    -- the last catch-up, and indexes added to the live table since the build
    PERFORM pgtrickle.run_refresh(ev.shadow_pgt_id, 'SCHEDULER');
    PERFORM pgtrickle.build_shadow_indexes(ev.evolution_id);
    SELECT * INTO ev FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = ev.evolution_id;
    SELECT * INTO sh FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.shadow_pgt_id FOR UPDATE;

    -- What subscribers are told: the difference between the old and the new contents. Counted
    -- before the exclusive lock, so that the lock is held for catalog work only.
    SELECT coalesce(array_agg((a.attname, a.atttypid, a.atttypmod)::text ORDER BY a.attnum), '{}')
             = (SELECT coalesce(array_agg((b.attname, b.atttypid, b.atttypmod)::text ORDER BY b.attnum), '{}')
                  FROM pg_attribute b WHERE b.attrelid = sh.pgt_relid AND b.attnum > 0 AND NOT b.attisdropped)
      INTO same
      FROM pg_attribute a WHERE a.attrelid = live.pgt_relid AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)', live_rel, sh.pgt_relid::regclass) INTO n_old, n_new;
    IF same THEN
        SELECT d.only_in_a, d.only_in_b INTO del, ins FROM pgtrickle.multiset_difference(live_rel, sh.pgt_relid::regclass) d;
    ELSE
        del := n_old;
        ins := n_new;
    END IF;

    -- The exclusive lock, never queued for long: while this request waits, every later reader of
    -- the live table waits behind it. A few tries here, with pauses in between that block nobody
    -- but the live table's refresh (the catch-up and the count stay valid: the live table cannot
    -- change meanwhile, the shadow is ours); then the step ends and is retried with backoff.
    -- The views that read the live table are dropped under the same short wait (each waits for its
    -- own readers), after what the new storage is to carry over has been read: with the table
    -- locked, no view can start reading it. A view created on one of those views in between makes
    -- the drop fail like a lock timeout: the next try finds it.
    LOOP
        PERFORM set_config('lock_timeout', wait_lock, true);
        BEGIN
            EXECUTE format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE', live_rel, sh.pgt_relid::regclass);
            carry := pgtrickle.evolution_carry_sql(old_rel, sh.pgt_relid, ARRAY(SELECT i ->> 'name' FROM jsonb_array_elements(ev.indexes) i));
            SELECT coalesce(array_agg(c.oid ORDER BY v.depth DESC, c.oid), '{}'),
                   coalesce(array_agg(format('%I.%I', n.nspname, c.relname) ORDER BY v.depth DESC, c.oid), '{}')
              INTO views, view_names
              FROM pgtrickle.evolution_dependent_views(old_rel) v
              JOIN pg_class c ON c.oid = v.view_oid JOIN pg_namespace n ON n.oid = c.relnamespace;
            IF cardinality(views) > 0 THEN
                EXECUTE 'DROP VIEW ' || array_to_string(view_names, ', ');
            END IF;
            EXIT;
        EXCEPTION WHEN lock_not_available OR dependent_objects_still_exist THEN
            PERFORM set_config('lock_timeout', prior, true);
            tries := tries + 1;
            UPDATE pgtrickle.pgt_evolutions e SET swap_attempts = e.swap_attempts + 1, last_step_at = clock_timestamp()
             WHERE e.evolution_id = ev.evolution_id;
            IF tries >= 5 THEN
                -- exponential backoff with jitter, 100 ms to 5 s
                RETURN least(5000, 100 * power(2, least(ev.swap_attempts / 5, 6)))::integer + (random() * 100)::integer;
            END IF;
            PERFORM pg_sleep((50 * tries + random() * 50) / 1000.0);
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', prior, true);
    -- our own renames are not a user's DDL on a source (the refresh unit's R__40_guards.sql)
    PERFORM set_config('pgtrickle.evolving', 'on', true);

    -- Downstream stream tables read the live table through its capture: released on the old
    -- storage, set up on the new one below.
    SELECT coalesce(array_agg(d.pgt_id ORDER BY d.pgt_id), '{}') INTO down
      FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = old_rel;
    FOR i IN 1 .. cardinality(down) LOOP
        PERFORM pgtrickle.release_change_capture(live_rel, down[i]);
    END LOOP;

    EXECUTE format('DROP TABLE %s', live_rel);
    IF live.state_table IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', live.state_table);
    END IF;
    IF sh.state_table IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', sh.state_table);
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', sh.pgt_relid::regclass, live.pgt_name);
    -- The engine's row index of the shadow becomes the live one's (the old one went with the old
    -- storage): the next plan finds it and keeps it, rather than building it again under an
    -- exclusive lock that readers would wait on.
    EXECUTE format('ALTER INDEX IF EXISTS %I.%I RENAME TO %I', live.pgt_schema,
                   format('pgt_%s_row_hash', sh.pgt_id), format('pgt_%s_row_hash', live.pgt_id));
    FOR idx IN SELECT * FROM jsonb_array_elements(ev.indexes) LOOP
        IF idx ->> 'contype' IN ('p', 'u') THEN
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s USING INDEX %I', live.pgt_schema, live.pgt_name,
                           idx ->> 'constraint', CASE WHEN idx ->> 'contype' = 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
                           idx ->> 'shadow_name');
            -- the constraint renames its index to the constraint's name; the index had the original one
            IF idx ->> 'constraint' <> idx ->> 'name' THEN
                EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', live.pgt_schema, idx ->> 'constraint', idx ->> 'name');
            END IF;
        ELSE
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', live.pgt_schema, idx ->> 'shadow_name', idx ->> 'name');
        END IF;
    END LOOP;

    -- What the user put on the old storage and on the views that read it goes to the new storage
    -- (under its final name) and to the views, re-created. The statements qualify every name they
    -- use; they run under the search_path they were printed for.
    saved_path := current_setting('search_path');
    PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
    FOREACH stmt IN ARRAY carry LOOP
        EXECUTE stmt;
    END LOOP;
    PERFORM set_config('search_path', saved_path, true);
    -- stream tables that read those views know them by OID
    FOR i IN 1 .. cardinality(views) LOOP
        UPDATE pgtrickle.pgt_dependencies d
           SET source_relid = to_regclass(view_names[i]), source_stable_name = pgtrickle.source_stable_name(to_regclass(view_names[i]))
         WHERE d.source_relid = views[i];
    END LOOP;

    -- The catalog row (and with it the name, subscriptions, history) stays; it takes the new query,
    -- its storage and its frontier. The engine plans the new query again (the shadow's plan names
    -- the shadow's table).
    FOR dep IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = live.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')
                  AND d.source_relid NOT IN (SELECT x.source_relid FROM pgtrickle.pgt_dependencies x WHERE x.pgt_id = sh.pgt_id) LOOP
        PERFORM pgtrickle.release_change_capture(dep.source_relid::regclass, live.pgt_id);
    END LOOP;
    DELETE FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = live.pgt_id;
    UPDATE pgtrickle.pgt_dependencies d SET pgt_id = live.pgt_id WHERE d.pgt_id = sh.pgt_id;
    UPDATE pgtrickle.pgt_change_tracking t
       SET tracked_by_pgt_ids = CASE WHEN live.pgt_id = ANY (t.tracked_by_pgt_ids) THEN array_remove(t.tracked_by_pgt_ids, sh.pgt_id)
                                     ELSE array_replace(t.tracked_by_pgt_ids, sh.pgt_id, live.pgt_id) END
     WHERE sh.pgt_id = ANY (t.tracked_by_pgt_ids);
    DELETE FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = sh.pgt_id;
    -- the shadow's function for refreshing as its owner (the refresh unit's R__50_refresh.sql), if it got one
    EXECUTE format('DROP FUNCTION IF EXISTS %I.%I(text, pg_snapshot)', sh.pgt_schema, 'pgt_' || sh.pgt_id || '_refresh');
    -- the settings of the session that asked for the new query, not this one's (the trigger
    -- pgt_classify_query keeps them while pgtrickle.evolving is on)
    UPDATE pgtrickle.pgt_stream_tables s
       SET pgt_relid = sh.pgt_relid, defining_query = sh.defining_query, original_query = sh.original_query,
           query_settings = sh.query_settings,
           refresh_mode = sh.refresh_mode, effective_refresh_mode = sh.effective_refresh_mode,
           requested_refresh_mode = sh.requested_refresh_mode, refresh_mode_reason = sh.refresh_mode_reason,
           delta_sql = NULL, state_table = NULL, state_sql = NULL, frontier = sh.frontier,
           is_populated = true, needs_reinit = false, data_timestamp = sh.data_timestamp, last_refresh_at = now(),
           in_shadow_build = false, shadow_table_name = NULL, updated_at = now()
     WHERE s.pgt_id = live.pgt_id;

    -- downstream stream tables: capture on the new storage, and a full recompute at their next refresh
    FOR i IN 1 .. cardinality(down) LOOP
        UPDATE pgtrickle.pgt_dependencies d
           SET source_relid = sh.pgt_relid, source_stable_name = pgtrickle.source_stable_name(sh.pgt_relid::regclass)
         WHERE d.pgt_id = down[i] AND d.source_relid = old_rel;
        PERFORM pgtrickle.ensure_change_capture(sh.pgt_relid::regclass, down[i]);
        SELECT s.state_table INTO state FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = down[i];
        IF state IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', state);
        END IF;
        UPDATE pgtrickle.pgt_stream_tables s
           SET needs_reinit = true, delta_sql = NULL, state_table = NULL, state_sql = NULL, updated_at = now()
         WHERE s.pgt_id = down[i];
    END LOOP;

    -- the swap's history row is its event, marked as an evolution's for the triggers that announce it
    PERFORM set_config('pgtrickle.refresh_event', 'evolution', true);
    INSERT INTO pgtrickle.pgt_refresh_history
           (pgt_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted, delta_row_count, status, initiated_by)
    VALUES (live.pgt_id, now(), ev.started_at, clock_timestamp(), 'REINITIALIZE', ins, del, ins + del, 'COMPLETED', 'MANUAL')
    RETURNING refresh_id INTO id;
    PERFORM set_config('pgtrickle.refresh_event', '', true);

    UPDATE pgtrickle.pgt_evolutions e
       SET status = 'converged', phase = 'SWAPPED', converged_at = clock_timestamp(), ended_at = clock_timestamp(),
           last_step_at = clock_timestamp(), shadow_pgt_id = NULL, live_rows = n_old, shadow_rows = n_new,
           inserted_count = ins, deleted_count = del, refresh_id = id
     WHERE e.evolution_id = ev.evolution_id;
    RETURN NULL;
END
$fn$;

-- Ends an evolution that did not swap: drops the shadow, its catalog row and capture; the live
-- stream table is as it was. status: 'failed' or 'cancelled'.
CREATE OR REPLACE FUNCTION pgtrickle.end_evolution(evolution_id bigint, status text, reason text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    ev  pgtrickle.pgt_evolutions;
    sh  pgtrickle.pgt_stream_tables;
BEGIN
    SELECT * INTO ev FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = end_evolution.evolution_id FOR UPDATE;
    IF NOT FOUND OR ev.status <> 'in_progress' THEN
        RETURN;
    END IF;
    SELECT * INTO sh FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.shadow_pgt_id FOR UPDATE;
    IF FOUND THEN
        PERFORM pgtrickle.forget_stream_table(sh);
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %s', ev.shadow_table);
    UPDATE pgtrickle.pgt_stream_tables s SET in_shadow_build = false, shadow_table_name = NULL, updated_at = now()
     WHERE s.pgt_id = ev.pgt_id;
    UPDATE pgtrickle.pgt_evolutions e
       SET status = end_evolution.status, phase = upper(end_evolution.status), ended_at = clock_timestamp(),
           shadow_pgt_id = NULL, error = left(reason, 4000)
     WHERE e.evolution_id = ev.evolution_id;
    IF end_evolution.status = 'failed' THEN
        RAISE WARNING 'pgtrickle: evolution % of stream table % failed and was rolled back: %', ev.evolution_id,
            (SELECT format('%I.%I', s.pgt_schema, s.pgt_name) FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id), reason;
    END IF;
END
$fn$;

-- Called by the evolution bundle after a step failed (and rolled back).
CREATE OR REPLACE FUNCTION pgtrickle.fail_evolution(evolution_id bigint, error text) RETURNS void
    LANGUAGE sql
AS $fn$
    SELECT pgtrickle.end_evolution(evolution_id, 'failed', coalesce(error, 'unknown error'))
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.cancel_evolution(name text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(name);
    ev bigint;
BEGIN
    -- waits for a step in progress (a build runs until its statement ends)
    SELECT e.evolution_id INTO ev FROM pgtrickle.pgt_evolutions e
     WHERE e.pgt_id = st.pgt_id AND e.status = 'in_progress' FOR UPDATE;
    IF ev IS NULL THEN
        RAISE EXCEPTION 'pgtrickle: no evolution of % is in progress', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM pgtrickle.end_evolution(ev, 'cancelled', format('cancelled by %s', current_user));
END
$fn$;

-- pg_trickle's spelling: without shadow_build, the query is rebuilt in place (alter_stream_table).
CREATE OR REPLACE FUNCTION pgtrickle.alter_query(name text, query text, shadow_build boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgtrickle.alter_stream_table(name, query => query, shadow_build => coalesce(shadow_build, false));
END
$fn$;

-- Evolutions, newest first: the given stream table's latest one, or (no argument) all of them.
-- Row counts are live while in progress (a shadow being built counts 0 until its build commits;
-- build_progress estimates the build from the shadow's size on disk against the live table's),
-- and as they were at the swap once converged.
CREATE OR REPLACE FUNCTION pgtrickle.view_evolution_status(name text DEFAULT NULL)
    RETURNS TABLE (evolution_id bigint, stream_table text, status text, phase text, live_rows bigint, shadow_rows bigint,
                   build_progress numeric, catch_up_refreshes integer, swap_attempts integer, started_at timestamptz,
                   built_at timestamptz, converged_at timestamptz, ended_at timestamptz, inserted_count bigint,
                   deleted_count bigint, skipped_indexes text[], new_query text, error text)
    LANGUAGE plpgsql
AS $fn$
DECLARE
    only_pgt bigint;
    ev       pgtrickle.pgt_evolutions;
    st       pgtrickle.pgt_stream_tables;
    n_live   bigint;
    n_shadow bigint;
    progress numeric;
BEGIN
    IF name IS NOT NULL THEN
        only_pgt := (pgtrickle.find_stream_table(name)).pgt_id;
    END IF;
    FOR ev IN SELECT * FROM pgtrickle.pgt_evolutions e
               WHERE only_pgt IS NULL OR e.pgt_id = only_pgt
               ORDER BY e.evolution_id DESC
               LIMIT CASE WHEN only_pgt IS NULL THEN NULL ELSE 1 END LOOP
        SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id;
        n_live := NULL;
        n_shadow := NULL;
        progress := NULL;
        IF ev.status = 'in_progress' THEN
            BEGIN
                -- by name: a swap committing meanwhile leaves the name on the new storage
                EXECUTE format('SELECT count(*) FROM %I.%I', st.pgt_schema, st.pgt_name) INTO n_live;
                EXECUTE format('SELECT count(*) FROM %s', ev.shadow_table) INTO n_shadow;
                progress := CASE WHEN ev.phase = 'BUILDING'
                                 THEN least(0.99, round(pg_relation_size(ev.shadow_table::regclass)::numeric
                                                        / greatest(pg_relation_size(format('%I.%I', st.pgt_schema, st.pgt_name)::regclass), 1), 2))
                                 ELSE 1 END;
            EXCEPTION WHEN undefined_table THEN
                -- the evolution ended (swap, failure, cancel) while it was being counted: the shadow
                -- is gone, and the figures recorded at its end are the answer
                SELECT * INTO ev FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = ev.evolution_id;
                SELECT * INTO st FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ev.pgt_id;
                n_live := ev.live_rows;
                n_shadow := ev.shadow_rows;
                progress := CASE WHEN ev.built_at IS NOT NULL THEN 1 END;
            END;
        ELSE
            n_live := ev.live_rows;
            n_shadow := ev.shadow_rows;
            progress := CASE WHEN ev.built_at IS NOT NULL THEN 1 END;
        END IF;
        evolution_id := ev.evolution_id;
        stream_table := format('%I.%I', st.pgt_schema, st.pgt_name);
        status := ev.status;
        phase := ev.phase;
        live_rows := n_live;
        shadow_rows := n_shadow;
        build_progress := progress;
        catch_up_refreshes := ev.catch_up_refreshes;
        swap_attempts := ev.swap_attempts;
        started_at := ev.started_at;
        built_at := ev.built_at;
        converged_at := ev.converged_at;
        ended_at := ev.ended_at;
        inserted_count := ev.inserted_count;
        deleted_count := ev.deleted_count;
        skipped_indexes := ev.skipped_indexes;
        new_query := ev.new_query;
        error := ev.error;
        RETURN NEXT;
    END LOOP;
END
$fn$;
