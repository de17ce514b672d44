-- Each bundle owns its database part (a unit): its versioned migrations and its repeatable code.
-- The catalog bundle's migrator applies them and records here what it applied; the core unit's own
-- migrations stay in pgt_schema_version, where catalogs before 0.33.0.2 recorded them and where an
-- older container looks to refuse a newer catalog.

-- One row per unit: whether its database part is in place (READY), being applied (PENDING) or
-- could not be applied (FAILED, with the error), and by which version of its bundle.
CREATE TABLE pgtrickle.pgt_schema_unit (
    unit           text PRIMARY KEY,
    schema_version text,
    bundle_version text NOT NULL,
    state          text NOT NULL CHECK (state IN ('PENDING', 'READY', 'FAILED')),
    message        text,
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per applied script of a unit: versioned (V, applied once) or repeatable (R, applied again
-- whenever its checksum changes, unless a newer version of the unit applied it: containers of two
-- versions may share a database while they are upgraded one by one).
CREATE TABLE pgtrickle.pgt_schema_script (
    unit         text NOT NULL,
    script       text NOT NULL,
    kind         char(1) NOT NULL CHECK (kind IN ('V', 'R')),
    version      text,
    description  text,
    checksum     text NOT NULL,
    applied_by   text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms bigint NOT NULL,
    PRIMARY KEY (unit, script)
);
