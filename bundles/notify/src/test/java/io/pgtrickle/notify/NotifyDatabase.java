package io.pgtrickle.notify;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.MigratedDatabase;
import java.sql.SQLException;

/** A fresh database with the pgtrickle catalog migrated by the catalog bundle's own migrator. */
final class NotifyDatabase extends MigratedDatabase {

    NotifyDatabase(String prefix) throws SQLException {
        super(prefix, c -> new CatalogMigrator().migrate(c));
    }
}
