-- pgtrickle catalog 0.31.0: the base catalog (pg_trickle's table and column names).
CREATE SCHEMA IF NOT EXISTS pgtrickle;
CREATE SCHEMA IF NOT EXISTS pgtrickle_changes;
-- Change buffers are written by capture triggers and read by the engine only.
REVOKE ALL ON SCHEMA pgtrickle_changes FROM PUBLIC;

CREATE TABLE pgtrickle.pgt_stream_tables (
    pgt_id                 bigserial PRIMARY KEY,
    pgt_relid              oid NOT NULL UNIQUE,
    pgt_name               text NOT NULL,
    pgt_schema             text NOT NULL,
    defining_query         text NOT NULL,
    original_query         text,
    schedule               text,
    refresh_mode           text NOT NULL DEFAULT 'DIFFERENTIAL'
                           CHECK (refresh_mode IN ('FULL', 'DIFFERENTIAL', 'IMMEDIATE')),
    status                 text NOT NULL DEFAULT 'INITIALIZING'
                           CHECK (status IN ('INITIALIZING', 'ACTIVE', 'SUSPENDED', 'ERROR')),
    is_populated           boolean NOT NULL DEFAULT false,
    data_timestamp         timestamptz,
    frontier               jsonb,
    last_refresh_at        timestamptz,
    consecutive_errors     integer NOT NULL DEFAULT 0,
    needs_reinit           boolean NOT NULL DEFAULT false,
    effective_refresh_mode text,
    last_error_message     text,
    last_error_at          timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX pgt_stream_tables_schema_name_idx ON pgtrickle.pgt_stream_tables (pgt_schema, pgt_name);

CREATE TABLE pgtrickle.pgt_dependencies (
    pgt_id       bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    source_relid oid NOT NULL,
    source_type  text NOT NULL DEFAULT 'TABLE'
                 CHECK (source_type IN ('TABLE', 'STREAM_TABLE', 'VIEW', 'MATVIEW', 'FOREIGN_TABLE')),
    columns_used text[],
    cdc_mode     text NOT NULL DEFAULT 'TRIGGER' CHECK (cdc_mode IN ('TRIGGER', 'TRANSITIONING', 'WAL')),
    PRIMARY KEY (pgt_id, source_relid)
);
CREATE INDEX pgt_dependencies_source_idx ON pgtrickle.pgt_dependencies (source_relid);

CREATE TABLE pgtrickle.pgt_refresh_history (
    refresh_id        bigserial PRIMARY KEY,
    pgt_id            bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    data_timestamp    timestamptz,
    start_time        timestamptz NOT NULL DEFAULT now(),
    end_time          timestamptz,
    action            text NOT NULL CHECK (action IN ('NO_DATA', 'FULL', 'DIFFERENTIAL', 'REINITIALIZE', 'SKIP')),
    rows_inserted     bigint NOT NULL DEFAULT 0,
    rows_deleted      bigint NOT NULL DEFAULT 0,
    delta_row_count   bigint,
    was_full_fallback boolean NOT NULL DEFAULT false,
    error_message     text,
    status            text NOT NULL DEFAULT 'RUNNING'
                      CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
    initiated_by      text NOT NULL DEFAULT 'SCHEDULER'
                      CHECK (initiated_by IN ('SCHEDULER', 'MANUAL', 'INITIAL'))
);
CREATE INDEX pgt_refresh_history_pgt_start_idx ON pgtrickle.pgt_refresh_history (pgt_id, start_time);

-- One row per captured source: which stream tables read its change buffer.
CREATE TABLE pgtrickle.pgt_change_tracking (
    source_relid       oid PRIMARY KEY,
    tracked_by_pgt_ids bigint[] NOT NULL DEFAULT '{}'
);
