package io.pgtrickle.refresh;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The scheduler's settings. The container's values (ConfigAdmin, PID {@code io.pgtrickle.refresh})
 * are defaults only: a value a DBA set the PostgreSQL way ({@code ALTER DATABASE d SET
 * pg_trickle.max_consecutive_errors = 5}, {@code ALTER ROLE}, {@code postgresql.conf}) wins, because
 * the database is where pg_trickle's operators expect to tune it and where every container sharing
 * the database sees the same value. The database values are read anew on every tick.
 *
 * @param schedulerIntervalMs  pause between two ticks
 * @param workers              refreshes that may run at once in this container (the database's
 *                             {@code pg_trickle.max_concurrent_refreshes} wins, and resizes the pool)
 * @param maxConsecutiveErrors failed refreshes in a row after which a stream table is suspended
 * @param notifyCoalesceMs     the subscriptions' NOTIFY coalescing window, where neither the stream table
 *                             nor the database sets one; the catalog's SQL applies that precedence
 * @param wakeIntervalMs       between ticks, how often to look whether a transaction has completed in the
 *                             database since the last tick began, and tick at once if one has (0: never,
 *                             only every schedulerIntervalMs)
 */
record EngineSettings(long schedulerIntervalMs, int workers, int maxConsecutiveErrors, int notifyCoalesceMs, long wakeIntervalMs) {

    static final String SCHEDULER_INTERVAL_GUC = "pg_trickle.scheduler_interval_ms";
    static final String MAX_CONSECUTIVE_ERRORS_GUC = "pg_trickle.max_consecutive_errors";
    static final String MAX_CONCURRENT_REFRESHES_GUC = "pg_trickle.max_concurrent_refreshes";
    static final String WAKE_INTERVAL_GUC = "pg_trickle.wake_interval_ms";

    /** Below this the tick loop would only burn CPU and connections. */
    static final long MIN_INTERVAL_MS = 10;

    static final int DEFAULT_NOTIFY_COALESCE_MS = 250;

    /**
     * A commit is seen within this many milliseconds (5 on average) at the cost of one query
     * ({@code pg_current_snapshot()}) per interval while nothing happens: about 1% of a core.
     */
    static final long DEFAULT_WAKE_INTERVAL_MS = 10;

    static final EngineSettings DEFAULTS = new EngineSettings(1000, 4, 3, DEFAULT_NOTIFY_COALESCE_MS, DEFAULT_WAKE_INTERVAL_MS);

    private static final Logger LOG = LoggerFactory.getLogger(EngineSettings.class);

    EngineSettings {
        if (schedulerIntervalMs < MIN_INTERVAL_MS) {
            throw new IllegalArgumentException("schedulerIntervalMs must be at least " + MIN_INTERVAL_MS + ", not " + schedulerIntervalMs);
        }
        if (workers < 1) {
            throw new IllegalArgumentException("workers must be at least 1, not " + workers);
        }
        if (maxConsecutiveErrors < 1) {
            throw new IllegalArgumentException("maxConsecutiveErrors must be at least 1, not " + maxConsecutiveErrors);
        }
        if (notifyCoalesceMs < 0) {
            throw new IllegalArgumentException("notifyCoalesceMs must be at least 0, not " + notifyCoalesceMs);
        }
        if (wakeIntervalMs < 0) {
            throw new IllegalArgumentException("wakeIntervalMs must be at least 0, not " + wakeIntervalMs);
        }
    }

    /** Without waking between ticks: the tests that tick by hand, or count ticks, use this. */
    EngineSettings(long schedulerIntervalMs, int workers, int maxConsecutiveErrors, int notifyCoalesceMs) {
        this(schedulerIntervalMs, workers, maxConsecutiveErrors, notifyCoalesceMs, 0);
    }

    EngineSettings(long schedulerIntervalMs, int workers, int maxConsecutiveErrors) {
        this(schedulerIntervalMs, workers, maxConsecutiveErrors, DEFAULT_NOTIFY_COALESCE_MS);
    }

    /** The values in effect for one tick: the database's where it sets them, else these defaults. */
    record Effective(long schedulerIntervalMs, int maxConsecutiveErrors, int workers, long wakeIntervalMs) {
    }

    /** This container's values, before any database override is read. */
    Effective containerDefaults() {
        return new Effective(schedulerIntervalMs, maxConsecutiveErrors, workers, wakeIntervalMs);
    }

    /**
     * Reads the database's overrides through {@code connection}. Invalid database values are ignored
     * (with one warning per distinct value): a typo by a DBA must not stop every refresh.
     */
    Effective effective(Connection connection, InvalidValueLog log) throws SQLException {
        String interval;
        String maxErrors;
        String maxConcurrent;
        String wake;
        try (Statement s = connection.createStatement();
             ResultSet rs = s.executeQuery("SELECT current_setting('" + SCHEDULER_INTERVAL_GUC + "', true), "
                     + "current_setting('" + MAX_CONSECUTIVE_ERRORS_GUC + "', true), "
                     + "current_setting('" + MAX_CONCURRENT_REFRESHES_GUC + "', true), "
                     + "current_setting('" + WAKE_INTERVAL_GUC + "', true)")) {
            rs.next();
            interval = rs.getString(1);
            maxErrors = rs.getString(2);
            maxConcurrent = rs.getString(3);
            wake = rs.getString(4);
        }
        return new Effective(
                parse(SCHEDULER_INTERVAL_GUC, interval, MIN_INTERVAL_MS, schedulerIntervalMs, log),
                (int) parse(MAX_CONSECUTIVE_ERRORS_GUC, maxErrors, 1, maxConsecutiveErrors, log),
                (int) parse(MAX_CONCURRENT_REFRESHES_GUC, maxConcurrent, 1, workers, log),
                parse(WAKE_INTERVAL_GUC, wake, 0, wakeIntervalMs, log));
    }

    private static long parse(String guc, String raw, long min, long fallback, InvalidValueLog log) {
        // NULL: never defined in this session; '': a placeholder GUC that was RESET
        if (raw == null || raw.isBlank()) {
            return fallback;
        }
        try {
            long v = Long.parseLong(raw.trim());
            if (v >= min && v <= Integer.MAX_VALUE) {
                return v;
            }
        } catch (NumberFormatException ignored) {
            // reported below like an out-of-range value
        }
        log.invalid(guc, raw, min, fallback);
        return fallback;
    }

    /** Warns once per GUC and invalid value, not on every tick. */
    static final class InvalidValueLog {
        private final Map<String, String> warned = new ConcurrentHashMap<>();

        void invalid(String guc, String raw, long min, long fallback) {
            if (!raw.equals(warned.put(guc, raw))) {
                LOG.warn("ignoring {} = '{}' set in the database: not an integer of at least {}; using {}", guc, raw, min, fallback);
            }
        }
    }
}
