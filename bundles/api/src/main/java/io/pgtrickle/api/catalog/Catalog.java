package io.pgtrickle.api.catalog;

import javax.sql.DataSource;
import org.osgi.annotation.versioning.ProviderType;

/**
 * A database whose {@code pgtrickle} catalog has been migrated to {@link #version()}.
 *
 * <p>The catalog bundle registers one of these per configured database, only after every migration
 * it ships has committed. A component that needs the catalog takes a reference to this service
 * instead of to the {@link DataSource}, so it cannot run against a half-migrated or older schema.
 * To require a minimum version, filter on {@link #VERSION_PROPERTY}, e.g.
 * {@code @Reference(target = "(catalog.version>=0.33.0)")} (compared as an OSGi version).
 */
@ProviderType
public interface Catalog {

    /** Schema holding the catalog tables and the SQL API. */
    String SCHEMA = "pgtrickle";

    /** Schema holding the per-source change buffers. */
    String CHANGES_SCHEMA = "pgtrickle_changes";

    /** Service property: the catalog release version, as an {@code org.osgi.framework.Version}. */
    String VERSION_PROPERTY = "catalog.version";

    /** Service property: the JDBC URL of the migrated database (never carries a password). */
    String URL_PROPERTY = "catalog.url";

    /** The catalog release version, {@code major.minor.micro}, e.g. {@code 0.33.0}. */
    String version();

    /** The newest applied migration, e.g. {@code 0.33.0} or a step within a release such as {@code 0.33.0.1}. */
    String migrationVersion();

    /** Pooled connections to the migrated database. */
    DataSource dataSource();
}
