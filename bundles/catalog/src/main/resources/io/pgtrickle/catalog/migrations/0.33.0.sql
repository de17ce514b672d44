-- pgtrickle catalog 0.33.0, part 1: reactive subscriptions and zero-downtime ALTER QUERY.
CREATE TABLE pgtrickle.pgt_subscriptions (
    stream_table text NOT NULL,
    channel      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_table, channel)
);

ALTER TABLE pgtrickle.pgt_stream_tables
    ADD COLUMN in_shadow_build boolean NOT NULL DEFAULT false,
    ADD COLUMN shadow_table_name text;
