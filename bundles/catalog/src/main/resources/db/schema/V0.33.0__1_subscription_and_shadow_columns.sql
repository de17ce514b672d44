-- pgtrickle catalog 0.33.0, part 1: reactive subscriptions and zero-downtime ALTER QUERY.
CREATE TABLE pgtrickle.pgt_subscriptions (
    -- by pgt_id, not by name: a subscription follows its stream table through a rename and goes
    -- with it when it is dropped
    pgt_id                   bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    channel                  text NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    created_by               name NOT NULL DEFAULT current_user,
    -- delivery state: the last notification sent on the channel, which opens a coalescing window ...
    last_notified_refresh_id bigint,
    last_notified_at         timestamptz,
    -- ... and the refreshes folded since, to be announced when the window closes
    pending_refreshes        integer NOT NULL DEFAULT 0,
    pending_first_refresh_id bigint,
    pending_last_refresh_id  bigint,
    pending_inserted         bigint NOT NULL DEFAULT 0,
    pending_deleted          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (pgt_id, channel)
);

ALTER TABLE pgtrickle.pgt_stream_tables
    ADD COLUMN in_shadow_build boolean NOT NULL DEFAULT false,
    ADD COLUMN shadow_table_name text,
    -- set on the catalog row of a shadow (0.33.0-evolution.sql): the stream table it will replace
    ADD COLUMN shadow_of bigint REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE;

-- What the user asked for (AUTO included) and why the effective refresh_mode differs from it.
ALTER TABLE pgtrickle.pgt_stream_tables
    ADD COLUMN requested_refresh_mode text NOT NULL DEFAULT 'AUTO'
        CHECK (requested_refresh_mode IN ('AUTO', 'FULL', 'DIFFERENTIAL')),
    ADD COLUMN refresh_mode_reason text;
-- Stream tables created before 0.33.0 asked for the mode they run in.
UPDATE pgtrickle.pgt_stream_tables SET requested_refresh_mode = refresh_mode WHERE refresh_mode IN ('FULL', 'DIFFERENTIAL');

-- The differential refresh statement the engine planned for defining_query ($1: the frontier
-- snapshot); NULL until planned, and whenever the stream table runs FULL.
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN delta_sql text;
-- Running totals of a GROUP BY stream table maintained by adjustment (the engine's RUNNING_TOTALS
-- plans): the table holding them and the query a FULL refresh refills it with.
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN state_table text, ADD COLUMN state_sql text;
-- Per stream table: the NOTIFY coalescing window in ms, overriding pg_trickle.notify_coalesce_ms.
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN notify_coalesce_ms integer CHECK (notify_coalesce_ms >= 0);
