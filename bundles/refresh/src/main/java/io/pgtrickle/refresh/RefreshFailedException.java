package io.pgtrickle.refresh;

import java.sql.SQLException;

/**
 * A refresh that was rolled back. {@link #recorded()} tells whether the failure was written to the
 * catalog ({@code FAILED} history row, {@code consecutive_errors} + 1); failures caused by the
 * database connection or by the container stopping are not, because they say nothing about the
 * stream table. {@link #status()} is the stream table's status after recording, e.g.
 * {@code SUSPENDED}.
 */
final class RefreshFailedException extends SQLException {

    private static final long serialVersionUID = 1L;

    private final long pgtId;
    private final String status;
    private final boolean recorded;

    RefreshFailedException(long pgtId, String message, String sqlState, Throwable cause, boolean recorded, String status) {
        super(message, sqlState, cause);
        this.pgtId = pgtId;
        this.recorded = recorded;
        this.status = status;
    }

    long pgtId() {
        return pgtId;
    }

    boolean recorded() {
        return recorded;
    }

    /** The stream table's status after the failure was recorded; null when it was not. */
    String status() {
        return status;
    }
}
