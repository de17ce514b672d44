-- Each change buffer gains a partial index of its TRUNCATE markers (action 'T'), as
-- ensure_change_capture (R__10_capture.sql) now creates with every buffer: a differential statement
-- asks whether its window holds a marker, and without it read the whole window once more.
-- A buffer owned by a role the migrating one may not act as keeps working without it (its
-- statements read the window as before), and says so.
DO $migrate$
DECLARE
    buffer regclass;
BEGIN
    FOR buffer IN SELECT b.oid::regclass
                    FROM pgtrickle.pgt_change_tracking t
                    JOIN pg_class b ON b.relname = 'changes_' || t.source_stable_name
                                   AND b.relnamespace = 'pgtrickle_changes'::regnamespace
                   WHERE NOT EXISTS (SELECT FROM pg_class i WHERE i.relname = b.relname || '_truncated_idx'
                                        AND i.relnamespace = b.relnamespace) LOOP
        IF pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = buffer), 'USAGE') THEN
            EXECUTE format('CREATE INDEX %I ON %s (xid) WHERE action = %L',
                           (SELECT c.relname FROM pg_class c WHERE c.oid = buffer) || '_truncated_idx', buffer, 'T');
        ELSE
            RAISE NOTICE 'pgtrickle: change buffer % is owned by %, which % may not act as: it keeps reading its windows without an index of its TRUNCATE markers',
                buffer, (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = buffer), current_user;
        END IF;
    END LOOP;
END
$migrate$;
