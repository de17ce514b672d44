-- Why a refresh of a differentially maintained stream table ran FULL this once (AUTO's change-ratio
-- or cost rule, with its numbers), or NULL: it did not fall back, or ran before this column.
ALTER TABLE pgtrickle.pgt_refresh_history ADD COLUMN fallback_reason text;
