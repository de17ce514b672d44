package io.pgtrickle.api.refresh;

import java.sql.Connection;
import java.sql.SQLException;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * Takes part in the refreshes of every stream table: register an implementation as an OSGi service
 * (whiteboard pattern) and the refresh bundle calls it after the refresh has been applied and its
 * history row written, <em>inside the refresh transaction</em>, before that transaction commits.
 * That covers every refresh the container runs: scheduled ones and those requested through
 * {@link RefreshService}. A refresh run by SQL alone, without the container (the initial population
 * inside {@code pgtrickle.create_stream_table}, {@code pgtrickle.refresh_stream_table}), is not seen.
 *
 * <p>Because the listener shares the refresh transaction, whatever it writes through
 * {@code connection} commits if and only if the refresh commits: a {@code pg_notify} sent here is
 * delivered only for a refresh that committed, and an outbox row written here exists exactly when
 * the refresh does. That is the reason for this contract; do work that must not be tied to the
 * refresh (network calls, slow I/O) elsewhere, e.g. from an outbox, and keep this call short: the
 * stream table's catalog row stays locked until it returns.
 *
 * <p>Rules:
 * <ul>
 *   <li>Use {@code connection} only during the call. Do not commit, roll back, change auto-commit,
 *       close it or keep it; the refresh fails if auto-commit is found switched on.</li>
 *   <li>Throwing rolls the whole refresh back: no history row, no change to the stream table, no
 *       change of its frontier, nothing any listener wrote. The refresh counts as failed (it is
 *       retried with backoff and the stream table is suspended after
 *       {@code pg_trickle.max_consecutive_errors} consecutive failures), so throw only when the
 *       refresh must not commit without your work. A listener that must never fail a refresh
 *       catches its own errors; if it does so around a failed SQL statement it must use a
 *       savepoint, because PostgreSQL refuses to commit a transaction in which a statement failed.</li>
 *   <li>Listeners are called one after another, in the order of their {@code service.ranking}
 *       (highest first; equal rankings in registration order), for every committed-to-be refresh,
 *       including those that applied nothing ({@link RefreshEvent#isEmpty()}).</li>
 *   <li>Calls for different stream tables may come from different threads at the same time; calls
 *       for one stream table never overlap, because its refreshes are serialised on its catalog row.</li>
 * </ul>
 */
@ConsumerType
public interface RefreshListener {

    /**
     * Called once per refresh, inside its transaction.
     *
     * @param event      what the refresh did; its {@link RefreshEvent#refreshId()} is the
     *                   {@code refresh_id} of the (not yet committed) history row
     * @param connection the refresh transaction's connection
     * @throws SQLException to roll the refresh back (a runtime exception does the same)
     */
    void refreshed(RefreshEvent event, Connection connection) throws SQLException;
}
