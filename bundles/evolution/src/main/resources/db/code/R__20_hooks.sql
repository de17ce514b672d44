-- Where the evolution unit hangs off the refresh unit (repeatable). drop_stream_table does not know
-- about evolutions: dropping a stream table deletes its catalog row, and the foreign keys take its
-- evolutions and the catalog row of a shadow still being built (shadow_of) with it. That shadow's
-- capture, state table, refresh function and storage go here, in the same transaction: a shadow row
-- deleted while its live stream table still exists is an evolution's own doing (its swap or its
-- end), which has dealt with them already.
CREATE OR REPLACE FUNCTION pgtrickle.drop_orphaned_shadow() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
DECLARE
    dep record;
BEGIN
    IF EXISTS (SELECT FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = OLD.shadow_of) THEN
        RETURN OLD;
    END IF;
    FOR dep IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d
                WHERE d.pgt_id = OLD.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE', 'ONLY TABLE') LOOP
        PERFORM pgtrickle.release_change_capture(dep.source_relid::regclass, OLD.pgt_id);
    END LOOP;
    IF OLD.state_table IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', OLD.state_table);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS %I.%I(text, pg_snapshot)', OLD.pgt_schema, 'pgt_' || OLD.pgt_id || '_refresh');
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', OLD.pgt_schema, OLD.pgt_name);
    RETURN OLD;
END
$fn$;

CREATE OR REPLACE TRIGGER pgt_drop_orphaned_shadow BEFORE DELETE ON pgtrickle.pgt_stream_tables
    FOR EACH ROW WHEN (OLD.shadow_of IS NOT NULL)
    EXECUTE FUNCTION pgtrickle.drop_orphaned_shadow();
