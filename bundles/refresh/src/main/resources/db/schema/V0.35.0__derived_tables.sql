-- The derived tables of a stream table's differential plan: each aggregating subquery in FROM, or
-- WITH query that aggregates, kept as a table of its own (pgtrickle_changes.derived_<pgt_id>_<n>)
-- and maintained differentially before the stream table's statement reads it and its changes. A
-- JSON array, in the order they are maintained, of objects: table, buffer (its changes of the
-- current refresh), query (what fills it), delta_sql, and state_table and state_sql when its plan
-- keeps running totals. NULL when the plan has none. Set with the plan (set_refresh_plan); the
-- tables go when the plan does (pgtrickle.drop_derived_tables).
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN derived jsonb;
