package io.pgtrickle.notify;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sends the subscriptions' trailing notifications: refreshes folded into a coalescing window that has
 * closed since, with no refresh to carry them ({@code pgtrickle.flush_notifications}). A refresh only
 * writes its history row; the timer that ends a window is this bundle's, so while it is stopped the
 * folded ones wait (the next refresh of the stream table, or this timer once back, sends them).
 * Every container runs one: subscriptions being flushed elsewhere are skipped, not waited for.
 */
public final class TrailingNotifications implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(TrailingNotifications.class);

    private final DataSource dataSource;
    private final ScheduledExecutorService timer;
    private volatile boolean databaseDown;

    /** Public for the engine's tests in the refresh package; the package is not exported. */
    public TrailingNotifications(DataSource dataSource, long intervalMs) {
        this.dataSource = dataSource;
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "pgtrickle-trailing-notifications");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleWithFixedDelay(this::flush, intervalMs, intervalMs, TimeUnit.MILLISECONDS);
    }

    /** Never throws: a throwing task would end the schedule. */
    void flush() {
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT pgtrickle.flush_notifications()")) {
            rs.next();
            if (databaseDown) {
                LOG.info("Trailing notifications: the database is reachable again");
                databaseDown = false;
            }
        } catch (SQLException e) {
            if (!databaseDown) {
                LOG.warn("Trailing notifications: cannot reach the database, retrying: {}", e.getMessage());
                databaseDown = true;
            }
        } catch (RuntimeException e) {
            LOG.error("Trailing notifications: flush failed", e);
        }
    }

    @Override
    public void close() {
        timer.shutdownNow();
        try {
            timer.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
