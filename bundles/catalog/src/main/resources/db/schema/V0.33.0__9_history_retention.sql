-- Refresh history retention. A stream table on a one-second schedule adds 86,400 rows a day to
-- pgt_refresh_history (most of them NO_DATA); without a limit the audit log outgrows everything
-- else in the catalog. pg_trickle's setting, history_retention_days (default 90, 0 keeps all),
-- read where the pruning runs; the refresh scheduler prunes a batch at a time, about once a minute.

CREATE FUNCTION pgtrickle.history_retention_days() RETURNS integer
    LANGUAGE sql STABLE
AS $fn$
    SELECT pgtrickle.setting_number('pg_trickle.history_retention_days', 90, 'days')
$fn$;

-- Deletes up to max_rows refresh history rows that started more than history_retention_days ago,
-- oldest first, and returns how many. A stream table's newest row always stays (it is its last
-- refresh: pgt_status and get_refresh_history show it). Rows another session holds are skipped.
CREATE FUNCTION pgtrickle.prune_refresh_history(max_rows integer DEFAULT 10000) RETURNS bigint
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
