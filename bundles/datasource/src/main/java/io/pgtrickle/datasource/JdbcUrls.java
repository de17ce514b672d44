package io.pgtrickle.datasource;

import io.pgtrickle.api.jdbc.Redaction;

/** JDBC URL checks. */
final class JdbcUrls {

    private JdbcUrls() {
    }

    /** @throws IllegalArgumentException naming the URL (redacted) and the expected form */
    static void requirePostgresUrl(String url) {
        if (url == null || url.isBlank()) {
            throw new IllegalArgumentException("no JDBC URL configured: set PGTRICKLE_JDBC_URL (or url in PID io.pgtrickle.datasource)");
        }
        if (!url.startsWith("jdbc:postgresql:")) {
            throw new IllegalArgumentException("'" + Redaction.jdbcUrl(url)
                    + "' is not a PostgreSQL JDBC URL; expected jdbc:postgresql://host:port/database");
        }
    }
}
