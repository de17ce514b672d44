-- The coalescing window a folded notification waits for, fixed by the refresh that folded it: the
-- trailing notification is sent by the notify bundle's own timer, which does not know the refreshing
-- container's default window (pgtrickle.notify_coalesce_default). NULL: folded before this column.
ALTER TABLE pgtrickle.pgt_subscriptions ADD COLUMN pending_window_ms integer;
