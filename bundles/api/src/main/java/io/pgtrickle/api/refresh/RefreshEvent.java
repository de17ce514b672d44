package io.pgtrickle.api.refresh;

import java.util.Objects;

/**
 * One refresh of one stream table, as its {@code pgtrickle.pgt_refresh_history} row records it.
 * Immutable; built by the refresh bundle (and by listeners' tests) through {@link #builder()}.
 *
 * <p>Counts are the rows the refresh applied to the stream table: a row whose values changed is
 * one deleted and one inserted row. A refresh that applied nothing is {@link #isEmpty() empty};
 * notifications are not sent for empty refreshes.
 */
public final class RefreshEvent {

    /** How the refresh brought the stream table up to date ({@code pgt_refresh_history.action}). */
    public enum Action {
        /** No source changed since the previous refresh; nothing was applied. */
        NO_DATA,
        /** The defining query was run in full and the result replaced the stored rows. */
        FULL,
        /** Only the rows touched by source changes were recomputed and applied. */
        DIFFERENTIAL,
        /** The stream table was rebuilt from scratch after its definition or a source changed shape. */
        REINITIALIZE
    }

    /** Who asked for the refresh ({@code pgt_refresh_history.initiated_by}). */
    public enum Initiator {
        /** The refresh bundle's scheduler, because the stream table was due. */
        SCHEDULER,
        /** {@link RefreshService#refresh(String)}: an operator or an application. */
        MANUAL,
        /** The first population of a new stream table. */
        INITIAL
    }

    private final long refreshId;
    private final long pgtId;
    private final String schema;
    private final String name;
    private final Action action;
    private final long rowsInserted;
    private final long rowsDeleted;
    private final Initiator initiatedBy;

    private RefreshEvent(Builder b) {
        this.refreshId = b.refreshId;
        this.pgtId = b.pgtId;
        this.schema = Objects.requireNonNull(b.schema, "schema");
        this.name = Objects.requireNonNull(b.name, "name");
        this.action = Objects.requireNonNull(b.action, "action");
        this.initiatedBy = Objects.requireNonNull(b.initiatedBy, "initiatedBy");
        if (b.rowsInserted < 0 || b.rowsDeleted < 0) {
            throw new IllegalArgumentException("row counts cannot be negative: inserted " + b.rowsInserted
                    + ", deleted " + b.rowsDeleted);
        }
        this.rowsInserted = b.rowsInserted;
        this.rowsDeleted = b.rowsDeleted;
    }

    /** A builder with no values set; schema, name, action and initiator are required. */
    public static Builder builder() {
        return new Builder();
    }

    /** {@code pgt_refresh_history.refresh_id}: unique, increasing, never reused. */
    public long refreshId() {
        return refreshId;
    }

    /** {@code pgt_stream_tables.pgt_id}: identifies the stream table across renames. */
    public long pgtId() {
        return pgtId;
    }

    /** The stream table's schema, unquoted, e.g. {@code public}. */
    public String schema() {
        return schema;
    }

    /** The stream table's name within its schema, unquoted, e.g. {@code order_totals}. */
    public String name() {
        return name;
    }

    /**
     * {@code schema.name}, unquoted, as notification payloads and pg_trickle's functions name a
     * stream table, e.g. {@code public.order_totals}. Not safe to splice into SQL; see
     * {@link #quotedName()}.
     */
    public String qualifiedName() {
        return schema + "." + name;
    }

    /** The name as a SQL identifier, every part double-quoted, e.g. {@code "public"."order_totals"}. */
    public String quotedName() {
        return quote(schema) + "." + quote(name);
    }

    private static String quote(String identifier) {
        return '"' + identifier.replace("\"", "\"\"") + '"';
    }

    public Action action() {
        return action;
    }

    /** Rows the refresh added to the stream table. */
    public long rowsInserted() {
        return rowsInserted;
    }

    /** Rows the refresh removed from the stream table. */
    public long rowsDeleted() {
        return rowsDeleted;
    }

    public Initiator initiatedBy() {
        return initiatedBy;
    }

    /** True when the refresh applied no row: nothing for subscribers to hear about. */
    public boolean isEmpty() {
        return rowsInserted == 0 && rowsDeleted == 0;
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof RefreshEvent)) {
            return false;
        }
        RefreshEvent e = (RefreshEvent) o;
        return refreshId == e.refreshId && pgtId == e.pgtId && rowsInserted == e.rowsInserted
                && rowsDeleted == e.rowsDeleted && schema.equals(e.schema) && name.equals(e.name)
                && action == e.action && initiatedBy == e.initiatedBy;
    }

    @Override
    public int hashCode() {
        return Objects.hash(refreshId, pgtId, schema, name, action, rowsInserted, rowsDeleted, initiatedBy);
    }

    @Override
    public String toString() {
        return "RefreshEvent[refreshId=" + refreshId + ", pgtId=" + pgtId + ", name=" + qualifiedName()
                + ", action=" + action + ", rowsInserted=" + rowsInserted + ", rowsDeleted=" + rowsDeleted
                + ", initiatedBy=" + initiatedBy + "]";
    }

    /** Collects the values of a {@link RefreshEvent}; not thread-safe, reusable. */
    public static final class Builder {
        private long refreshId;
        private long pgtId;
        private String schema;
        private String name;
        private Action action;
        private long rowsInserted;
        private long rowsDeleted;
        private Initiator initiatedBy;

        private Builder() {
        }

        public Builder refreshId(long refreshId) {
            this.refreshId = refreshId;
            return this;
        }

        public Builder pgtId(long pgtId) {
            this.pgtId = pgtId;
            return this;
        }

        /** The stream table's schema and name, both unquoted. */
        public Builder streamTable(String schema, String name) {
            this.schema = schema;
            this.name = name;
            return this;
        }

        public Builder action(Action action) {
            this.action = action;
            return this;
        }

        public Builder rowsInserted(long rowsInserted) {
            this.rowsInserted = rowsInserted;
            return this;
        }

        public Builder rowsDeleted(long rowsDeleted) {
            this.rowsDeleted = rowsDeleted;
            return this;
        }

        public Builder initiatedBy(Initiator initiatedBy) {
            this.initiatedBy = initiatedBy;
            return this;
        }

        /**
         * @throws NullPointerException     when the stream table, action or initiator is missing
         * @throws IllegalArgumentException when a count is negative
         */
        public RefreshEvent build() {
            return new RefreshEvent(this);
        }
    }
}
