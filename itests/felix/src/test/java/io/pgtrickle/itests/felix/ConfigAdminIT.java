package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertAllBundlesActive;
import static io.pgtrickle.itests.felix.InFramework.assertCatalogMigrated;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.expectedVersion;
import static io.pgtrickle.itests.felix.InFramework.requiredSetting;
import static org.junit.Assert.assertEquals;
import static org.ops4j.pax.exam.CoreOptions.options;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.testing.TestDatabase;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.ServiceReference;

/**
 * The datasource configured straight through ConfigAdmin (as a Karaf {@code etc/*.cfg} or a FileInstall
 * file would): the pool comes up, the catalog is migrated and published.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class ConfigAdminIT {

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_cm");
        return options(FelixOptions.platform(), FelixOptions.databaseProperties(db), FelixOptions.datasourceConfiguration(db).asOption());
    }

    @Test
    public void everyBundleIsActive() {
        assertAllBundlesActive("io.pgtrickle.api", "io.pgtrickle.datasource", "io.pgtrickle.catalog",
                "org.postgresql.jdbc", "com.zaxxer.HikariCP", "org.apache.felix.scr");
    }

    @Test
    public void catalogServiceCarriesTheProjectVersion() {
        Catalog catalog = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS);
        assertEquals(expectedVersion(), catalog.version());

        ServiceReference<Catalog> ref = InFramework.context().getServiceReference(Catalog.class);
        assertEquals(expectedVersion(), String.valueOf(ref.getProperty(Catalog.VERSION_PROPERTY)));
        assertEquals(requiredSetting(ContainerSettings.DB_URL), ref.getProperty(Catalog.URL_PROPERTY));
    }

    @Test
    public void dataSourceServiceReachesTheMigratedCatalog() throws Exception {
        Catalog catalog = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS);
        DataSource dataSource = awaitService(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, SERVICE_TIMEOUT_MILLIS);

        ServiceReference<DataSource> ref = InFramework.context()
                .getServiceReferences(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET).iterator().next();
        assertEquals(requiredSetting(ContainerSettings.DB_URL), ref.getProperty(PgTrickleDataSource.URL_PROPERTY));
        assertCatalogMigrated(dataSource, catalog.migrationVersion());
    }
}
