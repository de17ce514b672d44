package io.pgtrickle.api.jdbc;

/**
 * Properties of the pooled {@link javax.sql.DataSource} service the datasource bundle registers once
 * the configured database accepts connections. The service is not registered while the database is
 * unreachable, so a reference to it doubles as "the database is up".
 */
public final class PgTrickleDataSource {

    /** Service property naming the data source; the platform's own is {@value #DEFAULT_NAME}. */
    public static final String NAME_PROPERTY = "pgtrickle.datasource";

    /** Name of the data source configured through {@code PGTRICKLE_JDBC_URL} and friends. */
    public static final String DEFAULT_NAME = "default";

    /** Target filter that selects the platform's default data source. */
    public static final String DEFAULT_TARGET = "(" + NAME_PROPERTY + "=" + DEFAULT_NAME + ")";

    /** Service property: the JDBC URL (never carries a password). */
    public static final String URL_PROPERTY = "url";

    private PgTrickleDataSource() {
    }
}
