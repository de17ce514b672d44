package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertAllBundlesActive;
import static io.pgtrickle.itests.felix.InFramework.assertCatalogMigrated;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.expectedVersion;
import static io.pgtrickle.itests.felix.InFramework.requiredSetting;
import static io.pgtrickle.itests.felix.InFramework.setting;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.ops4j.pax.exam.CoreOptions.frameworkProperty;
import static org.ops4j.pax.exam.CoreOptions.options;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.testing.TestDatabase;
import java.nio.file.Path;
import java.util.Dictionary;
import java.util.Properties;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * The operator's path on a plain Felix: settings in {@code etc/pgtrickle.properties} (the directory
 * named by the framework property {@code pgtrickle.etc}), turned into ConfigAdmin configuration by the
 * pgtrickle-config bundle, and from there into a pool and a migrated catalog. Nothing writes
 * ConfigAdmin directly here.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class ConfigBundleIT {

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_etc");
        Properties settings = new Properties();
        settings.setProperty("pgtrickle.jdbc.url", db.url());
        settings.setProperty("pgtrickle.jdbc.user", db.user());
        if (db.password() != null) {
            settings.setProperty("pgtrickle.jdbc.password", db.password());
        }
        settings.setProperty("pgtrickle.jdbc.pool_size", "3");
        Path etc = FelixOptions.etcDirectory(db.name(), settings);
        return options(
                FelixOptions.platform(),
                FelixOptions.configBundle(),
                frameworkProperty("pgtrickle.etc").value(etc.toString()),
                FelixOptions.databaseProperties(db));
    }

    @Test
    public void everyBundleIsActive() {
        assertAllBundlesActive("io.pgtrickle.api", "io.pgtrickle.config", "io.pgtrickle.datasource", "io.pgtrickle.catalog");
    }

    @Test
    public void propertiesFileBecomesTheDatasourceConfiguration() throws Exception {
        ConfigurationAdmin configurationAdmin = awaitService(ConfigurationAdmin.class, null, SERVICE_TIMEOUT_MILLIS);
        // The bridge writes the configuration when its component activates; it is immediate, so by the
        // time ConfigAdmin is up it is either done or about to be: wait for the datasource service instead
        // of polling ConfigAdmin, then read what was written.
        awaitService(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, SERVICE_TIMEOUT_MILLIS);
        var configurations = configurationAdmin.listConfigurations("(service.pid=" + FelixOptions.DATASOURCE_PID + ")");
        assertNotNull("no configuration " + FelixOptions.DATASOURCE_PID + " in ConfigAdmin", configurations);
        assertEquals(1, configurations.length);
        Dictionary<String, Object> p = configurations[0].getProperties();
        assertEquals(requiredSetting(ContainerSettings.DB_URL), p.get("url"));
        assertEquals(requiredSetting(ContainerSettings.DB_USER), p.get("user"));
        assertEquals(setting(ContainerSettings.DB_PASSWORD), p.get("password"));
        assertEquals("3", String.valueOf(p.get("maxPoolSize")));
    }

    @Test
    public void settingsAreMergedBackWhenSomeoneElseReplacesTheConfiguration() throws Exception {
        ConfigurationAdmin configurationAdmin = awaitService(ConfigurationAdmin.class, null, SERVICE_TIMEOUT_MILLIS);
        awaitService(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, SERVICE_TIMEOUT_MILLIS);
        org.osgi.service.cm.Configuration c = configurationAdmin.getConfiguration(FelixOptions.DATASOURCE_PID, "?");
        // what FileInstall does when it reads etc/io.pgtrickle.datasource.cfg: replace the whole dictionary
        java.util.Hashtable<String, Object> fromCfgFile = new java.util.Hashtable<>();
        fromCfgFile.put("url", "jdbc:postgresql://cfg-file-host/overridden");
        fromCfgFile.put("connectTimeoutSeconds", "7");
        c.update(fromCfgFile);

        long deadline = System.currentTimeMillis() + SERVICE_TIMEOUT_MILLIS;
        Dictionary<String, Object> p = c.getProperties();
        while (!requiredSetting(ContainerSettings.DB_URL).equals(p.get("url")) && System.currentTimeMillis() < deadline) {
            Thread.sleep(50);
            p = configurationAdmin.getConfiguration(FelixOptions.DATASOURCE_PID, "?").getProperties();
        }
        // the properties file's settings win again; the .cfg file's own property is kept
        assertEquals(requiredSetting(ContainerSettings.DB_URL), p.get("url"));
        assertEquals("3", String.valueOf(p.get("maxPoolSize")));
        assertEquals("7", String.valueOf(p.get("connectTimeoutSeconds")));
        awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS);
    }

    @Test
    public void catalogIsMigratedThroughTheConfiguredDatabase() throws Exception {
        Catalog catalog = awaitService(Catalog.class, "(" + Catalog.VERSION_PROPERTY + "=" + expectedVersion() + ")", SERVICE_TIMEOUT_MILLIS);
        assertEquals(expectedVersion(), catalog.version());
        ServiceReference<Catalog> ref = InFramework.context().getServiceReference(Catalog.class);
        assertEquals(requiredSetting(ContainerSettings.DB_URL), ref.getProperty(Catalog.URL_PROPERTY));

        DataSource dataSource = awaitService(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, SERVICE_TIMEOUT_MILLIS);
        assertCatalogMigrated(dataSource, catalog.migrationVersion());
    }
}
