-- pgtrickle catalog 0.32.0: change buffers are named after a stable hash of the source's
-- schema-qualified name instead of its OID, so they survive dump/restore (pg_trickle v0.32).

-- The one definition of a source's stable name; the engine names buffers with it too.
CREATE FUNCTION pgtrickle.source_stable_name(source regclass) RETURNS text
    LANGUAGE sql STABLE STRICT
    RETURN (SELECT substr(md5(n.nspname || '.' || c.relname), 1, 16)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = source);

ALTER TABLE pgtrickle.pgt_dependencies ADD COLUMN source_stable_name text;
ALTER TABLE pgtrickle.pgt_change_tracking ADD COLUMN source_stable_name text;

-- Existing rows get the name their source has now; a source that no longer exists keeps NULL.
UPDATE pgtrickle.pgt_dependencies d
   SET source_stable_name = pgtrickle.source_stable_name(d.source_relid::regclass)
 WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = d.source_relid);
UPDATE pgtrickle.pgt_change_tracking t
   SET source_stable_name = pgtrickle.source_stable_name(t.source_relid::regclass)
 WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.source_relid);

CREATE INDEX pgt_refresh_history_start_idx ON pgtrickle.pgt_refresh_history (start_time DESC);
