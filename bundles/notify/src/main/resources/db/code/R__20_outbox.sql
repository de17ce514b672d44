-- Notification sinks (unit io.pgtrickle.notify, repeatable): the sink registry and the durable
-- outbox with leases and dead letters. Every notification a subscription sends is also written to
-- the outbox of each enabled sink whose channels match, in the same transaction.

CREATE OR REPLACE FUNCTION pgtrickle.register_sink(sink_id text, channels text[]) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    normalized text[];
BEGIN
    IF sink_id IS NULL OR btrim(sink_id) = '' OR length(sink_id) > 200 THEN
        RAISE EXCEPTION 'pgtrickle: a sink needs an id of 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF channels IS NULL OR cardinality(channels) = 0 THEN
        RAISE EXCEPTION 'pgtrickle: sink % needs at least one channel (''*'' for all)', sink_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(DISTINCT n.ch ORDER BY n.ch) INTO normalized
      FROM (SELECT CASE WHEN c = '*' THEN '*' ELSE pgtrickle.check_channel(c) END AS ch FROM unnest(channels) AS u(c)) n;
    INSERT INTO pgtrickle.pgt_sinks AS s (sink_id, channels) VALUES (register_sink.sink_id, normalized)
    ON CONFLICT ON CONSTRAINT pgt_sinks_pkey DO UPDATE
       SET channels = EXCLUDED.channels, updated_at = now()
     WHERE s.channels IS DISTINCT FROM EXCLUDED.channels;
END
$fn$;

-- Removes a sink and the notifications still queued for it (an operator's decision: a sink whose
-- container is merely down keeps its registration and its queue).
CREATE OR REPLACE FUNCTION pgtrickle.unregister_sink(sink_id text) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    dropped bigint;
BEGIN
    SELECT count(*) INTO dropped FROM pgtrickle.pgt_outbox o WHERE o.sink_id = unregister_sink.sink_id;
    DELETE FROM pgtrickle.pgt_sinks s WHERE s.sink_id = unregister_sink.sink_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrickle: no sink %', sink_id USING ERRCODE = 'undefined_object';
    END IF;
    -- its queue went with it (foreign key); its dead letters too, which could never be replayed
    DELETE FROM pgtrickle.pgt_dead_letters d WHERE d.sink_id = unregister_sink.sink_id;
    RETURN dropped;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.enable_sink(sink_id text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    UPDATE pgtrickle.pgt_sinks s SET enabled = true, disabled_reason = NULL, updated_at = now()
     WHERE s.sink_id = enable_sink.sink_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrickle: no sink %', sink_id USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.disable_sink(sink_id text, reason text) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    UPDATE pgtrickle.pgt_sinks s SET enabled = false, disabled_reason = reason, updated_at = now()
     WHERE s.sink_id = disable_sink.sink_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgtrickle: no sink %', sink_id USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.list_sinks()
    RETURNS TABLE (sink_id text, channels text[], enabled boolean, disabled_reason text, queued bigint, dead_letters bigint,
                   oldest_queued timestamptz)
    LANGUAGE sql STABLE
AS $fn$
    SELECT s.sink_id, s.channels, s.enabled, s.disabled_reason,
           (SELECT count(*) FROM pgtrickle.pgt_outbox o WHERE o.sink_id = s.sink_id),
           (SELECT count(*) FROM pgtrickle.pgt_dead_letters d WHERE d.sink_id = s.sink_id),
           (SELECT min(o.created_at) FROM pgtrickle.pgt_outbox o WHERE o.sink_id = s.sink_id)
      FROM pgtrickle.pgt_sinks s ORDER BY s.sink_id
$fn$;

-- Called where a notification is sent (announce_refresh, flush_notifications): one outbox row per
-- enabled sink that receives the channel. Returns rows written.
CREATE OR REPLACE FUNCTION pgtrickle.enqueue_notification(pgt_id bigint, channel text, refresh_id bigint, first_refresh_id bigint,
                                               refreshes integer, inserted bigint, deleted bigint, payload text)
    RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    n integer;
BEGIN
    INSERT INTO pgtrickle.pgt_outbox (sink_id, pgt_id, stream_table, channel, refresh_id, first_refresh_id, refreshes,
                                      inserted_count, deleted_count, payload)
    SELECT s.sink_id, enqueue_notification.pgt_id, payload::json ->> 'name', enqueue_notification.channel,
           enqueue_notification.refresh_id, enqueue_notification.first_refresh_id, enqueue_notification.refreshes,
           inserted, deleted, payload
      FROM pgtrickle.pgt_sinks s
     WHERE s.enabled AND (enqueue_notification.channel = ANY (s.channels) OR '*' = ANY (s.channels));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- Claims up to max_rows notifications due for a sink, for lease_ms: per stream table only the
-- oldest queued one (refresh order), skipping rows another session holds or has leased.
-- The stream tables with queued rows are found by skipping through the (sink_id, pgt_id, outbox_id)
-- index, one probe per stream table, and each one's oldest row by one more: the cost follows the
-- number of stream tables (and the delivered rows vacuum has not removed yet), not the backlog. A
-- subquery per queued row made one claim on a backlog of 5,000 take 35 ms.
CREATE OR REPLACE FUNCTION pgtrickle.claim_notifications(sink_id text, max_rows integer, lease_ms integer)
    RETURNS SETOF pgtrickle.pgt_outbox
    LANGUAGE sql
AS $fn$
    WITH RECURSIVE queued(pgt_id) AS (
        (SELECT q.pgt_id FROM pgtrickle.pgt_outbox q
          WHERE q.sink_id = claim_notifications.sink_id ORDER BY q.pgt_id LIMIT 1)
        UNION ALL
        SELECT (SELECT q.pgt_id FROM pgtrickle.pgt_outbox q
                 WHERE q.sink_id = claim_notifications.sink_id AND q.pgt_id > queued.pgt_id ORDER BY q.pgt_id LIMIT 1)
          FROM queued WHERE queued.pgt_id IS NOT NULL
    ),
    heads AS (
        SELECT (SELECT f.outbox_id FROM pgtrickle.pgt_outbox f
                 WHERE f.sink_id = claim_notifications.sink_id AND f.pgt_id = queued.pgt_id
                 ORDER BY f.outbox_id LIMIT 1) AS outbox_id
          FROM queued WHERE queued.pgt_id IS NOT NULL
    )
    UPDATE pgtrickle.pgt_outbox o
       SET claimed_until = clock_timestamp() + lease_ms * interval '1 ms', attempts = o.attempts + 1,
           claim_token = gen_random_uuid()
     WHERE o.outbox_id IN (
               SELECT h.outbox_id FROM pgtrickle.pgt_outbox h
                JOIN pgtrickle.pgt_sinks s ON s.sink_id = h.sink_id AND s.enabled
                WHERE h.outbox_id IN (SELECT heads.outbox_id FROM heads)
                  AND h.next_attempt_at <= clock_timestamp()
                  AND (h.claimed_until IS NULL OR h.claimed_until < clock_timestamp())
                ORDER BY h.outbox_id
                LIMIT max_rows
                  FOR UPDATE OF h SKIP LOCKED)
    RETURNING o.*
$fn$;

-- Delivered notifications: deleted, those whose claim the caller still holds (outbox_ids[i] with
-- claim_tokens[i]). Returns the ids deleted; an id missing from the answer was completed elsewhere
-- or claimed again after the caller's lease ran out, and will be delivered again. One call per
-- group of deliveries: a lane completes what its deliveries finished meanwhile in one statement
-- instead of one round trip each (docs/benchmarks/subscriptions.md).
CREATE OR REPLACE FUNCTION pgtrickle.complete_notifications(outbox_ids bigint[], claim_tokens uuid[]) RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $fn$
BEGIN
    IF cardinality(outbox_ids) IS DISTINCT FROM cardinality(claim_tokens) THEN
        RAISE EXCEPTION 'pgtrickle: complete_notifications needs one claim token per outbox id (% ids, % tokens)',
            coalesce(cardinality(outbox_ids), 0), coalesce(cardinality(claim_tokens), 0)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    DELETE FROM pgtrickle.pgt_outbox o
     USING unnest(outbox_ids, claim_tokens) AS c(outbox_id, claim_token)
     WHERE o.outbox_id = c.outbox_id AND o.claim_token = c.claim_token
    RETURNING o.outbox_id;
END
$fn$;

-- A failed delivery: retried after retry_in_ms, or, once max_attempts deliveries have failed,
-- moved to the dead letters. Returns 'RETRY' or 'DEAD', or NULL when the caller no longer holds
-- the claim (the row is gone or was claimed again): nothing changes then.
CREATE OR REPLACE FUNCTION pgtrickle.fail_notification(outbox_id bigint, claim_token uuid, error text, retry_in_ms integer,
                                            max_attempts integer)
    RETURNS text
    LANGUAGE plpgsql
AS $fn$
DECLARE
    r pgtrickle.pgt_outbox;
BEGIN
    SELECT * INTO r FROM pgtrickle.pgt_outbox o
     WHERE o.outbox_id = fail_notification.outbox_id AND o.claim_token = fail_notification.claim_token FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.attempts >= max_attempts THEN
        DELETE FROM pgtrickle.pgt_outbox o WHERE o.outbox_id = r.outbox_id;
        r.last_error := left(error, 4000);
        r.claimed_until := NULL;
        r.claim_token := NULL;
        INSERT INTO pgtrickle.pgt_dead_letters SELECT (r).*, now();
        RETURN 'DEAD';
    END IF;
    UPDATE pgtrickle.pgt_outbox o
       SET last_error = left(error, 4000), claimed_until = NULL, claim_token = NULL,
           next_attempt_at = clock_timestamp() + greatest(retry_in_ms, 0) * interval '1 ms'
     WHERE o.outbox_id = r.outbox_id;
    RETURN 'RETRY';
END
$fn$;

CREATE OR REPLACE FUNCTION pgtrickle.list_dead_letters(sink_id text DEFAULT NULL)
    RETURNS TABLE (outbox_id bigint, sink_id text, stream_table text, channel text, refresh_id bigint, attempts integer,
                   last_error text, created_at timestamptz, died_at timestamptz)
    LANGUAGE sql STABLE
AS $fn$
    SELECT d.outbox_id, d.sink_id, d.stream_table, d.channel, d.refresh_id, d.attempts, d.last_error, d.created_at, d.died_at
      FROM pgtrickle.pgt_dead_letters d
     WHERE list_dead_letters.sink_id IS NULL OR d.sink_id = list_dead_letters.sink_id
     ORDER BY d.outbox_id
$fn$;

-- Puts dead letters back in the outbox (all, a sink's, or the given ids) with fresh attempts; they
-- keep their ids, so receivers can still de-duplicate. Returns how many.
CREATE OR REPLACE FUNCTION pgtrickle.replay_dead_letters(sink_id text DEFAULT NULL, outbox_ids bigint[] DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    n integer;
BEGIN
    WITH moved AS (
        DELETE FROM pgtrickle.pgt_dead_letters d
         WHERE (replay_dead_letters.sink_id IS NULL OR d.sink_id = replay_dead_letters.sink_id)
           AND (outbox_ids IS NULL OR d.outbox_id = ANY (outbox_ids))
           AND EXISTS (SELECT FROM pgtrickle.pgt_sinks s WHERE s.sink_id = d.sink_id)
        RETURNING d.*)
    INSERT INTO pgtrickle.pgt_outbox (outbox_id, sink_id, pgt_id, stream_table, channel, refresh_id, first_refresh_id,
                                      refreshes, inserted_count, deleted_count, payload, created_at, attempts,
                                      next_attempt_at, claimed_until, last_error)
    SELECT m.outbox_id, m.sink_id, m.pgt_id, m.stream_table, m.channel, m.refresh_id, m.first_refresh_id, m.refreshes,
           m.inserted_count, m.deleted_count, m.payload, m.created_at, 0, now(), NULL, m.last_error
      FROM moved m;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
