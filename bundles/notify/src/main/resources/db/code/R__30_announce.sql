-- How a refresh reaches subscribers (unit io.pgtrickle.notify, repeatable). The refresh unit calls
-- nothing of ours: its pgt_refresh_history row is the event, and this trigger, in the refreshing
-- transaction, announces it to the stream table's subscriptions (NOTIFY, coalesced, and the sinks'
-- outbox). So subscribers hear of a refresh when it commits and never if it rolls back; without
-- this unit refreshes announce nothing, and once it is applied they do, whoever runs them (the
-- engine, or refresh_stream_table from psql), whether or not the notify bundle is running.
--
-- Two local settings travel with the row: pgtrickle.notify_coalesce_default, the refreshing
-- container's coalescing window (see notify_coalesce_ms), and pgtrickle.refresh_event =
-- 'evolution' on a shadow evolution's swap, which flushes what is folded and is never folded itself.
CREATE OR REPLACE FUNCTION pgtrickle.announce_refresh_event() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pgtrickle.pgt_subscriptions sub WHERE sub.pgt_id = NEW.pgt_id) THEN
        RETURN NULL;
    END IF;
    IF current_setting('pgtrickle.refresh_event', true) = 'evolution' THEN
        PERFORM pgtrickle.announce_evolution(NEW.pgt_id, NEW.refresh_id, NEW.rows_inserted, NEW.rows_deleted);
    ELSE
        PERFORM pgtrickle.announce_refresh(NEW.pgt_id, NEW.refresh_id, NEW.rows_inserted, NEW.rows_deleted,
                    nullif(current_setting('pgtrickle.notify_coalesce_default', true), '')::integer);
    END IF;
    RETURN NULL;
END
$fn$;

-- A refresh that changed rows, or an evolution's swap: nothing else costs more than the WHEN.
CREATE OR REPLACE TRIGGER pgt_announce_refresh AFTER INSERT ON pgtrickle.pgt_refresh_history
    FOR EACH ROW
    WHEN (NEW.status = 'COMPLETED'
          AND (NEW.rows_inserted + NEW.rows_deleted > 0 OR current_setting('pgtrickle.refresh_event', true) = 'evolution'))
    EXECUTE FUNCTION pgtrickle.announce_refresh_event();
