-- pgtrickle catalog 0.33.0, part 6: reactive subscriptions.
--
-- After every committed refresh that changed its stream table, each subscribed channel is told
-- with pg_notify, inside the refresh transaction: a refresh that rolls back announces nothing, and
-- one that commits is never missed. Payload (JSON, always far below NOTIFY's 8000 bytes):
--   {"name": "<schema.table>", "refresh_id": N, "inserted_count": N, "deleted_count": N}
-- Coalescing: at most one notification per (stream table, channel) per window. A refresh inside
-- the window after a notification is folded into the subscription's pending counts; the window's
-- end sends them as one notification (refresh_id = the latest, plus "refreshes" and
-- "first_refresh_id"), from the next refresh or from flush_notifications(), which the engine calls
-- on every scheduler tick. The state lives in pgt_subscriptions, so a restart forgets nothing.

-- The channel a subscription may use: an identifier as LISTEN takes it unquoted.
CREATE FUNCTION pgtrickle.check_channel(channel text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF channel IS NULL OR channel !~ '^[A-Za-z_][A-Za-z0-9_$]*$' OR octet_length(channel) > 63 THEN
        RAISE EXCEPTION 'pgtrickle: invalid channel name %', coalesce(quote_literal(channel), 'NULL')
            USING ERRCODE = 'invalid_name',
                  HINT = 'A channel is a PostgreSQL identifier of at most 63 bytes: a letter or _, then letters, digits, _ or $.';
    END IF;
    RETURN lower(channel);
END
$fn$;

CREATE FUNCTION pgtrickle.subscribe(stream_table text, channel text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(stream_table);
    ch text := pgtrickle.check_channel(channel);
BEGIN
    -- notifications carry counts of the table's changes: only its readers may ask for them
    IF NOT has_table_privilege(st.pgt_relid, 'SELECT') THEN
        RAISE EXCEPTION 'pgtrickle: permission denied to subscribe to %: SELECT on it is required', stream_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO pgtrickle.pgt_subscriptions (pgt_id, channel) VALUES (st.pgt_id, ch)
    ON CONFLICT ON CONSTRAINT pgt_subscriptions_pkey DO NOTHING;
END
$fn$;

CREATE FUNCTION pgtrickle.unsubscribe(stream_table text, channel text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    st pgtrickle.pgt_stream_tables := pgtrickle.find_stream_table(stream_table);
BEGIN
    IF NOT has_table_privilege(st.pgt_relid, 'SELECT') THEN
        RAISE EXCEPTION 'pgtrickle: permission denied to unsubscribe from %: SELECT on it is required', stream_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM pgtrickle.pgt_subscriptions s
     WHERE s.pgt_id = st.pgt_id AND s.channel = pgtrickle.check_channel(unsubscribe.channel);
END
$fn$;

CREATE FUNCTION pgtrickle.list_subscriptions()
    RETURNS TABLE (stream_table text, channel text, created_at timestamptz, created_by name,
                   last_notified_refresh_id bigint, last_notified_at timestamptz,
                   pending_refreshes integer, pending_inserted bigint, pending_deleted bigint)
    LANGUAGE sql STABLE
AS $fn$
    SELECT format('%I.%I', n.nspname, c.relname), s.channel, s.created_at, s.created_by,
           s.last_notified_refresh_id, s.last_notified_at, s.pending_refreshes, s.pending_inserted, s.pending_deleted
      FROM pgtrickle.pgt_subscriptions s
      JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = s.pgt_id
      JOIN pg_class c ON c.oid = st.pgt_relid JOIN pg_namespace n ON n.oid = c.relnamespace
     ORDER BY 1, 2
$fn$;

-- The coalescing window of a stream table in ms: its own notify_coalesce_ms, else the database's
-- (or role's, or session's) pg_trickle.notify_coalesce_ms, else the container's (passed in by the
-- engine), else 250.
CREATE FUNCTION pgtrickle.notify_coalesce_ms(pgt_id bigint, container_default integer DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    own     integer;
    setting text := nullif(btrim(current_setting('pg_trickle.notify_coalesce_ms', true)), '');
BEGIN
    SELECT s.notify_coalesce_ms INTO own FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = notify_coalesce_ms.pgt_id;
    IF own IS NOT NULL THEN
        RETURN own;
    END IF;
    IF setting IS NOT NULL THEN
        IF setting !~ '^\d+$' THEN
            RAISE WARNING 'pgtrickle: ignoring pg_trickle.notify_coalesce_ms = %: not a number of milliseconds', setting;
        ELSE
            RETURN setting::integer;
        END IF;
    END IF;
    RETURN coalesce(container_default, 250);
END
$fn$;

-- evolution: the notification of a shadow evolution's swap (0.33.0-evolution.sql), marked as such.
CREATE FUNCTION pgtrickle.notification_payload(pgt_id bigint, refresh_id bigint, inserted bigint, deleted bigint,
                                               refreshes integer DEFAULT 1, first_refresh_id bigint DEFAULT NULL,
                                               evolution boolean DEFAULT false)
    RETURNS text
    LANGUAGE sql STABLE
AS $fn$
    SELECT CASE WHEN evolution
                THEN json_build_object('name', format('%I.%I', n.nspname, c.relname), 'refresh_id', refresh_id,
                                       'inserted_count', inserted, 'deleted_count', deleted, 'evolution', true)
                WHEN refreshes > 1
                THEN json_build_object('name', format('%I.%I', n.nspname, c.relname), 'refresh_id', refresh_id,
                                       'inserted_count', inserted, 'deleted_count', deleted,
                                       'refreshes', refreshes, 'first_refresh_id', first_refresh_id)
                ELSE json_build_object('name', format('%I.%I', n.nspname, c.relname), 'refresh_id', refresh_id,
                                       'inserted_count', inserted, 'deleted_count', deleted) END::text
      FROM pgtrickle.pgt_stream_tables st
      JOIN pg_class c ON c.oid = st.pgt_relid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE st.pgt_id = notification_payload.pgt_id
$fn$;

-- One notification of a subscription, sent in the caller's transaction: NOTIFY on its channel, the
-- same to the channel's sinks through the outbox (durably), and the subscription's state says so
-- (notified now, of refresh_id; nothing pending).
CREATE FUNCTION pgtrickle.send_notification(sub pgtrickle.pgt_subscriptions, refresh_id bigint, first_refresh_id bigint,
                                            refreshes integer, inserted bigint, deleted bigint, evolution boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    payload text := pgtrickle.notification_payload(sub.pgt_id, refresh_id, inserted, deleted, refreshes, first_refresh_id, evolution);
BEGIN
    PERFORM pg_notify(sub.channel, payload);
    PERFORM pgtrickle.enqueue_notification(sub.pgt_id, sub.channel, refresh_id, first_refresh_id, refreshes, inserted, deleted, payload);
    UPDATE pgtrickle.pgt_subscriptions s
       SET last_notified_refresh_id = send_notification.refresh_id, last_notified_at = clock_timestamp(),
           pending_refreshes = 0, pending_first_refresh_id = NULL, pending_last_refresh_id = NULL,
           pending_inserted = 0, pending_deleted = 0
     WHERE s.pgt_id = sub.pgt_id AND s.channel = sub.channel;
END
$fn$;

-- Called by run_refresh, inside the refresh transaction, for a refresh that changed rows: notifies
-- (or folds into the window) every subscription of the stream table. Returns notifications sent.
CREATE FUNCTION pgtrickle.announce_refresh(pgt_id bigint, refresh_id bigint, inserted bigint, deleted bigint,
                                           container_default integer DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    win     integer := pgtrickle.notify_coalesce_ms(pgt_id, container_default);
    sub     pgtrickle.pgt_subscriptions;
    sent    integer := 0;
BEGIN
    FOR sub IN SELECT * FROM pgtrickle.pgt_subscriptions s WHERE s.pgt_id = announce_refresh.pgt_id ORDER BY s.channel FOR UPDATE LOOP
        IF win = 0 OR sub.last_notified_at IS NULL OR clock_timestamp() >= sub.last_notified_at + win * interval '1 ms' THEN
            PERFORM pgtrickle.send_notification(sub, refresh_id, coalesce(sub.pending_first_refresh_id, refresh_id),
                        sub.pending_refreshes + 1, sub.pending_inserted + inserted, sub.pending_deleted + deleted);
            sent := sent + 1;
        ELSE
            UPDATE pgtrickle.pgt_subscriptions s
               SET pending_refreshes = s.pending_refreshes + 1,
                   pending_first_refresh_id = coalesce(s.pending_first_refresh_id, refresh_id),
                   pending_last_refresh_id = refresh_id,
                   pending_inserted = s.pending_inserted + inserted, pending_deleted = s.pending_deleted + deleted
             WHERE s.pgt_id = sub.pgt_id AND s.channel = sub.channel;
        END IF;
    END LOOP;
    RETURN sent;
END
$fn$;

-- Sends the folded notifications whose window has closed (the trailing notification), each with
-- its own state update in the caller's transaction. Subscriptions another session is flushing or
-- announcing are skipped. Returns notifications sent.
CREATE FUNCTION pgtrickle.flush_notifications(container_default integer DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    sub     pgtrickle.pgt_subscriptions;
    sent    integer := 0;
BEGIN
    FOR sub IN SELECT * FROM pgtrickle.pgt_subscriptions s
                WHERE s.pending_refreshes > 0
                  AND clock_timestamp() >= s.last_notified_at
                                           + pgtrickle.notify_coalesce_ms(s.pgt_id, container_default) * interval '1 ms'
                ORDER BY s.pgt_id, s.channel
                  FOR UPDATE SKIP LOCKED LOOP
        PERFORM pgtrickle.send_notification(sub, sub.pending_last_refresh_id, sub.pending_first_refresh_id,
                    sub.pending_refreshes, sub.pending_inserted, sub.pending_deleted);
        sent := sent + 1;
    END LOOP;
    RETURN sent;
END
$fn$;
