package io.pgtrickle.config;

import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * Every container setting the platform reads from {@code etc/pgtrickle.properties}, the environment
 * or system properties, and the ConfigAdmin property it lands in. {@code docs/configuration.md} lists
 * the same table; a test keeps the two in step.
 */
public enum Setting {
    JDBC_URL("pgtrickle.jdbc.url", Pids.DATASOURCE, "url", false),
    JDBC_USER("pgtrickle.jdbc.user", Pids.DATASOURCE, "user", false),
    JDBC_PASSWORD("pgtrickle.jdbc.password", Pids.DATASOURCE, "password", true),
    JDBC_POOL_SIZE("pgtrickle.jdbc.pool_size", Pids.DATASOURCE, "maxPoolSize", false),
    JDBC_CONNECT_TIMEOUT_SECONDS("pgtrickle.jdbc.connect_timeout_seconds", Pids.DATASOURCE, "connectTimeoutSeconds", false),
    JDBC_MAX_RETRY_DELAY_SECONDS("pgtrickle.jdbc.max_retry_delay_seconds", Pids.DATASOURCE, "maxRetryDelaySeconds", false),
    SCHEDULER_INTERVAL_MS("pg_trickle.scheduler_interval_ms", Pids.REFRESH, "schedulerIntervalMs", false),
    MAX_CONSECUTIVE_ERRORS("pg_trickle.max_consecutive_errors", Pids.REFRESH, "maxConsecutiveErrors", false),
    MAX_CONCURRENT_REFRESHES("pg_trickle.max_concurrent_refreshes", Pids.REFRESH, "workers", false),
    NOTIFY_COALESCE_MS("pg_trickle.notify_coalesce_ms", Pids.REFRESH, "notifyCoalesceMs", false),
    WAKE_INTERVAL_MS("pg_trickle.wake_interval_ms", Pids.REFRESH, "wakeIntervalMs", false),
    /** Read by the launcher only: where the embedded PostgreSQL listens when no URL is configured. */
    EMBEDDED_PORT("pgtrickle.embedded.port", null, null, false),
    /** Read by the launcher only: the embedded PostgreSQL's data directory. */
    EMBEDDED_DATA_DIR("pgtrickle.embedded.data_dir", null, null, false),
    /** Read by the launcher only: whether the container serves HTTP at all. */
    HTTP_ENABLED("pgtrickle.http.enabled", null, null, false),
    /** Read by the launcher only: the address the HTTP server binds. */
    HTTP_HOST("pgtrickle.http.host", null, null, false),
    /** Read by the launcher only: the HTTP port; 0 turns HTTP off. */
    HTTP_PORT("pgtrickle.http.port", null, null, false);

    private final String key;
    private final String pid;
    private final String property;
    private final boolean secret;

    Setting(String key, String pid, String property, boolean secret) {
        this.key = key;
        this.pid = pid;
        this.property = property;
        this.secret = secret;
    }

    /** The key as written in {@code etc/pgtrickle.properties} and as a {@code -D} system property. */
    public String key() {
        return key;
    }

    /** The environment variable: the key upper-cased, dots as underscores. */
    public String environmentVariable() {
        return key.toUpperCase(Locale.ROOT).replace('.', '_');
    }

    /** The ConfigAdmin PID this setting is pushed to, empty for launcher-only settings. */
    public Optional<String> pid() {
        return Optional.ofNullable(pid);
    }

    public String property() {
        return property;
    }

    /** Secret values are never logged. */
    public boolean secret() {
        return secret;
    }

    /** All spellings of a key compare equal: case and the choice of '.' or '_' do not matter. */
    static String normalize(String key) {
        return key.toLowerCase(Locale.ROOT).replace('_', '.');
    }

    static List<Setting> all() {
        return List.of(values());
    }

    /** ConfigAdmin PIDs the settings are pushed to. */
    public static final class Pids {
        public static final String DATASOURCE = "io.pgtrickle.datasource";
        public static final String REFRESH = "io.pgtrickle.refresh";

        private Pids() {
        }
    }
}
