package io.pgtrickle.datasource;

import java.util.regex.Pattern;

/** JDBC URL checks and log-safe rendering. */
final class JdbcUrls {

    // pgjdbc accepts password=... (and sslpassword=...) as URL parameters; neither may reach a log
    private static final Pattern SECRET_PARAMETER = Pattern.compile("(?i)((?:ssl)?password=)[^&;]*");

    private JdbcUrls() {
    }

    static String redact(String url) {
        return url == null ? null : SECRET_PARAMETER.matcher(url).replaceAll("$1********");
    }

    /** @throws IllegalArgumentException naming the URL (redacted) and the expected form */
    static void requirePostgresUrl(String url) {
        if (url == null || url.isBlank()) {
            throw new IllegalArgumentException("no JDBC URL configured: set PGTRICKLE_JDBC_URL (or url in PID io.pgtrickle.datasource)");
        }
        if (!url.startsWith("jdbc:postgresql:")) {
            throw new IllegalArgumentException("'" + redact(url)
                    + "' is not a PostgreSQL JDBC URL; expected jdbc:postgresql://host:port/database");
        }
    }
}
